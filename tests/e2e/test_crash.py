"""Durability: a server killed with SIGKILL in the middle of a create, and a
clean SIGTERM restart, keep every acknowledged function intact."""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import threading
import time
import zipfile
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from hearth_e2e import (
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

KILL_WAIT_S = 20  # bound on waiting for the in-flight upload to reach the server


def big_zip(mb: int = 20) -> bytes:
    """~`mb` MB zip of random (incompressible) data plus a handler."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("handler.py", PY_HANDLER)
        zf.writestr("nonce.txt", nonce())
        zf.writestr("data.bin", os.urandom(mb * 1024 * 1024))
    return buf.getvalue()


def read_chars(pid: int) -> int | None:
    """Bytes the process has read through read(2)-like calls (sockets included)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


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

    big = big_zip(20)
    inflight = "inflight"
    outcome: dict[str, object] = {}
    slow = srv.client(read_timeout=60, connect_timeout=10)

    def create_big():
        try:
            outcome["response"] = slow.create_function(
                FunctionName=inflight, Runtime=PY_RUNTIME, Role=ROLE, Handler="handler.handler",
                Code={"ZipFile": big})
        except Exception as e:  # the connection dies with the server
            outcome["error"] = e

    pid = srv.proc.pid
    body_len = (len(big) + 2) // 3 * 4  # the base64 of the zip dominates the JSON body
    before = read_chars(pid)
    t = threading.Thread(target=create_big, daemon=True)
    t.start()
    # Kill once the server has read most of the ~27 MB request body (it is
    # then decoding, hashing, unpacking or writing), or after a bound.
    deadline = time.monotonic() + KILL_WAIT_S
    if before is not None:
        while time.monotonic() < deadline and t.is_alive():
            now = read_chars(pid)
            if now is None or now - before >= body_len:
                break
            time.sleep(0.002)
    else:
        time.sleep(0.2)
    srv.kill9()
    t.join(timeout=90)
    assert not t.is_alive(), "the in-flight request did not end after the server died"

    srv.restart()
    lam = srv.client()

    for name, z in acked.items():
        conf = lam.get_function(FunctionName=name)["Configuration"]
        assert conf["CodeSha256"] == code_sha256(z), name
        assert conf["CodeSize"] == len(z), name
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAITER)
        assert_blob(srv.data_dir, z)

    # The kill must interrupt the create (or come after its success): an
    # answer refusing it would make this test prove nothing.
    err = outcome.get("error")
    assert not isinstance(err, ClientError), f"the 20 MB create was refused before the kill: {err}"
    if "response" in outcome:
        # Acknowledged before the kill: it must have survived.
        assert outcome["response"]["CodeSha256"] == code_sha256(big)
    try:
        conf = lam.get_function(FunctionName=inflight)["Configuration"]
    except ClientError as e:
        assert e.response["Error"]["Code"] == "ResourceNotFoundException", e.response
        assert "response" not in outcome, "an acknowledged create was lost"
        present = False
    else:
        present = True
        assert conf["CodeSha256"] == code_sha256(big)
        assert conf["CodeSize"] == len(big)
        lam.get_waiter("function_active_v2").wait(FunctionName=inflight, WaiterConfig=WAITER)
        assert_blob(srv.data_dir, big)

    names = {f["FunctionName"] for f in list_all_functions(lam)}
    assert names == set(acked) | ({inflight} if present else set())

    # The node still works after the crash: the name of the lost create is free
    # (or the function is there), and new creates succeed.
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
