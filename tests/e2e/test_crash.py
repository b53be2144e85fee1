"""Durability: a server killed with SIGKILL in the middle of a create, and a
clean SIGTERM restart, keep every acknowledged function intact."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import select
import sqlite3
import threading
import time
import zipfile
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from hearth_e2e import (
    DEV_KEY,
    DEV_SECRET,
    REGION,
    PY_HANDLER,
    PY_RUNTIME,
    ROLE,
    WAITER,
    blob_path,
    code_sha256,
    create_fn,
    expect_error,
    list_all_functions,
    nonce,
    py_zip,
    sha256_hex,
    unique_name,
)

KILL_WAIT_S = 60  # bound on sending the in-flight upload


def big_zip(mb: int = 20) -> bytes:
    """~`mb` MB zip of random (incompressible) data plus a handler."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("handler.py", PY_HANDLER)
        zf.writestr("nonce.txt", nonce())
        zf.writestr("data.bin", os.urandom(mb * 1024 * 1024))
    return buf.getvalue()


def integrity_check(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "\n".join(r[0] for r in rows)


def assert_blob(data_dir: Path, zip_bytes: bytes) -> None:
    p = blob_path(data_dir, zip_bytes)
    assert p.is_file(), f"code blob missing: {p}"
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    assert h.hexdigest() == sha256_hex(zip_bytes), f"blob {p} does not hash to its name"


def send_create_and_kill(srv, name: str, zip_bytes: bytes, kill_after_s: float) -> dict:
    """Sends a signed CreateFunction by hand (so we know when the whole body
    has left the client), waits `kill_after_s`, then SIGKILLs the server.
    Returns what the client saw: `status`/`body` if an answer came, else `error`."""
    outcome: dict[str, object] = {}
    sent = threading.Event()

    def run():
        body = json.dumps({
            "FunctionName": name, "Runtime": PY_RUNTIME, "Role": ROLE, "Handler": "handler.handler",
            "Code": {"ZipFile": base64.b64encode(zip_bytes).decode()},
        }).encode()
        req = AWSRequest(method="POST", url=srv.endpoint + "/2015-03-31/functions", data=body,
                         headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials(DEV_KEY, DEV_SECRET), "lambda", REGION).add_auth(req)
        headers = dict(req.prepare().headers)
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        try:
            conn.putrequest("POST", "/2015-03-31/functions", skip_host=True, skip_accept_encoding=True)
            headers.setdefault("Host", f"127.0.0.1:{srv.port}")
            headers["Content-Length"] = str(len(body))
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders()
            view = memoryview(body)
            for off in range(0, len(body), 1 << 20):
                conn.send(view[off:off + (1 << 20)])
            outcome["sent_all"] = True
            # Already answered (refused, or a very fast success)? Then read
            # that answer before the kill, which would otherwise reset it away.
            readable, _, _ = select.select([conn.sock], [], [], 0)
            outcome["answered_early"] = bool(readable)
            if not readable:
                sent.set()
            resp = conn.getresponse()
            outcome["status"] = resp.status
            outcome["body"] = resp.read()
        except (OSError, http.client.HTTPException) as e:  # the connection dies with the server
            outcome["error"] = e
        finally:
            sent.set()
            conn.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert sent.wait(timeout=KILL_WAIT_S), "the request could not be sent"
    if outcome.get("answered_early"):
        t.join(timeout=60)
    elif kill_after_s > 0:
        t.join(timeout=kill_after_s)  # returns early if the answer comes first
    srv.kill9()
    # The server was alive until now: it must have taken the whole body.
    assert outcome.get("sent_all"), f"the server dropped the upload before the kill: {outcome.get('error')!r}"
    t.join(timeout=90)
    assert not t.is_alive(), "the in-flight request did not end after the server died"
    # An answer refusing the create would make the crash prove nothing.
    status = outcome.get("status")
    assert status in (None, 201), f"the create was refused before the kill: {status} {outcome.get('body')!r}"
    return outcome


def check_store(srv, lam, acked: dict[str, bytes], maybe: dict[str, tuple[bytes, bool]]) -> set[str]:
    """Every acknowledged function is intact; each in-flight one is complete
    or absent (and present if it was acknowledged); no torn blob. Returns the
    in-flight names that survived."""
    for name, z in acked.items():
        conf = lam.get_function(FunctionName=name)["Configuration"]
        assert conf["CodeSha256"] == code_sha256(z), name
        assert conf["CodeSize"] == len(z), name
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAITER)
        assert_blob(srv.data_dir, z)

    survived = set()
    for name, (z, acknowledged) in maybe.items():
        try:
            conf = lam.get_function(FunctionName=name)["Configuration"]
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ResourceNotFoundException", e.response
            assert not acknowledged, f"the acknowledged create of {name} was lost"
            continue
        survived.add(name)
        assert conf["CodeSha256"] == code_sha256(z), name
        assert conf["CodeSize"] == len(z), name
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAITER)
        assert_blob(srv.data_dir, z)

    names = {f["FunctionName"] for f in list_all_functions(lam)}
    assert names == set(acked) | survived

    # No torn blob: every `<hex>.zip` in the store hashes to its name.
    blobs = sorted((srv.data_dir / "code" / "blobs").glob("*.zip"))
    assert blobs, "no blobs in the code store"
    for p in blobs:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        assert h.hexdigest() == p.stem, f"torn or misnamed blob after the crash: {p}"
    return survived


def test_kill9_during_create(start_server):
    srv = start_server(unique_name("crash"))
    lam = srv.client()

    acked: dict[str, bytes] = {}
    for i in range(5):
        name = f"acked-{i}"
        z = py_zip()
        resp = lam.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE,
                                   Handler="handler.handler", Code={"ZipFile": z})
        assert resp["CodeSha256"] == code_sha256(z)
        acked[name] = z

    # A 20 MB create must work at all, or the crashes below would prove nothing.
    # Its duration places the second kill in the middle of the server's work.
    big_ok = big_zip(20)
    started = time.monotonic()
    resp = srv.client(read_timeout=120).create_function(
        FunctionName="acked-big", Runtime=PY_RUNTIME, Role=ROLE, Handler="handler.handler",
        Code={"ZipFile": big_ok})
    took = time.monotonic() - started
    assert resp["CodeSha256"] == code_sha256(big_ok)
    acked["acked-big"] = big_ok

    # Kill as soon as the body is sent (reading, decoding, hashing), halfway
    # through a create's usual time (unpacking, writing), and near its end
    # (committing, or just after the answer: then activation is left to the
    # restarted server). Any of these may land a little earlier or later: each
    # outcome is checked for what it is.
    for round_no, delay in ((1, 0.0), (2, min(took * 0.5, 10.0)), (3, min(took * 0.9, 10.0))):
        name = f"inflight-{round_no}"
        big = big_zip(20)
        outcome = send_create_and_kill(srv, name, big, delay)
        acknowledged = outcome.get("status") == 201
        if acknowledged:
            assert json.loads(outcome["body"])["CodeSha256"] == code_sha256(big)
        srv.restart()
        lam = srv.client()
        survived = check_store(srv, lam, acked, {name: (big, acknowledged)})
        if survived:
            acked[name] = big

    # The node still works after the crashes.
    after = create_fn(lam, "after-crash")
    assert after["FunctionName"] == "after-crash"

    srv.stop()
    db = srv.data_dir / "registry.sqlite"
    assert db.is_file(), f"no registry at {db}"
    assert integrity_check(db) == "ok"


def test_clean_restart_keeps_everything(start_server):
    srv = start_server(unique_name("restart"))
    lam = srv.client()
    z1, z2 = py_zip(), py_zip()
    create_fn(lam, "keeper", zip_bytes=z1, Publish=True, MemorySize=256, Environment={"Variables": {"K": "v"}})
    lam.update_function_code(FunctionName="keeper", ZipFile=z2)
    lam.get_waiter("function_updated_v2").wait(FunctionName="keeper", WaiterConfig=WAITER)
    lam.publish_version(FunctionName="keeper")  # version 2
    lam.create_alias(FunctionName="keeper", Name="live", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    lam.put_function_concurrency(FunctionName="keeper", ReservedConcurrentExecutions=7)
    acct = srv.create_account("restart-tenant")
    other = srv.account_client(acct)
    create_fn(other, "tenant-fn")
    before = lam.get_function(FunctionName="keeper")

    rc = srv.stop()
    assert rc == 0, f"hearth serve exited with {rc} on SIGTERM\n{srv.log_tail()}"
    assert integrity_check(srv.data_dir / "registry.sqlite") == "ok"
    srv.restart()
    lam = srv.client()

    after = lam.get_function(FunctionName="keeper")
    assert after["Configuration"] == before["Configuration"]
    assert after.get("Concurrency") == {"ReservedConcurrentExecutions": 7}
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName="keeper")["Versions"]] == ["$LATEST", "1", "2"]
    assert lam.get_function(FunctionName="keeper", Qualifier="1")["Configuration"]["CodeSha256"] == code_sha256(z1)
    assert lam.get_function(FunctionName="keeper", Qualifier="2")["Configuration"]["CodeSha256"] == code_sha256(z2)
    alias = lam.get_alias(FunctionName="keeper", Name="live")
    assert alias["FunctionVersion"] == "1"
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.1}}
    # Publishing again is still idempotent after the restart.
    assert lam.publish_version(FunctionName="keeper")["Version"] == "2"
    # The tenant and its key survived too; the dev key still works.
    other = srv.account_client(acct)
    assert [f["FunctionName"] for f in other.list_functions()["Functions"]] == ["tenant-fn"]
    expect_error(other.get_function, FunctionName="keeper", code="ResourceNotFoundException", status=404)
    assert_blob(srv.data_dir, z1)
    assert_blob(srv.data_dir, z2)
