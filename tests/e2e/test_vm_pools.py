"""MicroVM pools behind the Lambda API (issue 11): WebAssembly functions
created and invoked with boto3 and the CLI run in Hearth's KVM microVMs,
drawn from the general VM pool, an account's dedicated VMs, provisioned
concurrency or a cold start, reset after each invocation, charged against
the memory budget by what they hold, and accounted for in µs.

The modules are WAT (compiled with `wat2wasm` from Debian's wabt, which
`scripts/test` installs) and C compiled with zig ($HEARTH_WASM_FIXTURES).
Every invocation is asked where its VM came from (`X-Hearth-Placement`) and
what it cost (`X-Hearth-Usage`); the REPORT line of its log tail says
whether it initialised one (Init Duration). The tests skip, saying why,
only where /dev/kvm is absent; CI has it. No assertion is on a duration;
every loop is bounded; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from hearth_e2e import (
    WAITER,
    HearthServer,
    Invocation,
    assert_log_frame,
    create_fn,
    invoke,
    invoke_error,
    invoke_ok,
    make_zip,
    nonce,
    py_zip,
    unique_name,
    wait_until,
)
from test_capacity import (  # noqa: F401 (servers is a fixture)
    Background,
    assert_throttled,
    cli_account,
    servers,
    throttled,
)

pytestmark = pytest.mark.skipif(
    not Path("/dev/kvm").exists(), reason="/dev/kvm is absent on this host: microVMs need KVM"
)

RUNTIME = "provided.al2023"
FILL_TIMEOUT_S = 60
PC_READY_TIMEOUT_S = 60
BLOCK_MS = 3000

# ---------------------------------------------------------------------------
# Modules (WAT). Each reads its event from stdin first: that is where the
# function snapshot is taken, so what follows runs on every invocation.

IMPORTS = """
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
"""

# Reads all of stdin to 0x10000 (at most 64 KiB); leaves its length at 0x20.
READ_ALL = """
  (func $read_all (local $total i32) (local $n i32)
    (block $eof (loop $more
      (i32.store (i32.const 0) (i32.add (i32.const 0x10000) (local.get $total)))
      (i32.store (i32.const 4) (i32.sub (i32.const 0x10000) (local.get $total)))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $n (i32.load (i32.const 8)))
      (br_if $eof (i32.eqz (local.get $n)))
      (local.set $total (i32.add (local.get $total) (local.get $n)))
      (br $more)))
    (i32.store (i32.const 0x20) (local.get $total)))
  (func $out (param $fd i32) (param $at i32) (param $len i32)
    (i32.store (i32.const 0x40) (local.get $at))
    (i32.store (i32.const 0x44) (local.get $len))
    (drop (call $write (local.get $fd) (i32.const 0x40) (i32.const 1) (i32.const 0x48))))
"""


def module(body: str, memory_pages: int = 4, data: str = "") -> str:
    return f"""(module {IMPORTS}
  (memory (export "memory") {memory_pages})
  {data}
  {READ_ALL}
  (func (export "_start") {body}))"""


# Echo: stdout is the event; one line on stderr.
ECHO = module("""
    (call $read_all)
    (call $out (i32.const 2) (i32.const 0x100) (i32.const 14))
    (call $out (i32.const 1) (i32.const 0x10000) (i32.load (i32.const 0x20)))""",
              data='(data (i32.const 0x100) "wat echo line\\n")')

# A line on stderr during the init (before the stdin read), then the echo.
INIT_PRINTS = module("""
    (call $out (i32.const 2) (i32.const 0x100) (i32.const 15))
    (call $read_all)
    (call $out (i32.const 1) (i32.const 0x10000) (i32.load (i32.const 0x20)))""",
                     data='(data (i32.const 0x100) "init: deployed\\n")')

# A global and a memory cell incremented after the event: after a reset
# both start again from the snapshot, so every invocation prints "1 1".
COUNTER = module("""
    (call $read_all)
    (global.set $g (i32.add (global.get $g) (i32.const 1)))
    (i32.store8 (i32.const 0x300) (i32.add (i32.load8_u (i32.const 0x300)) (i32.const 1)))
    (i32.store8 (i32.const 0x200) (i32.add (i32.const 48) (global.get $g)))
    (i32.store8 (i32.const 0x201) (i32.const 32))
    (i32.store8 (i32.const 0x202) (i32.add (i32.const 48) (i32.load8_u (i32.const 0x300))))
    (call $out (i32.const 1) (i32.const 0x200) (i32.const 3))""").replace(
    "(memory (export", "(global $g (mut i32) (i32.const 0))\n  (memory (export")

TRAP = module("(call $read_all) unreachable")
EXIT3 = module("(call $read_all) (call $exit (i32.const 3))")
LOOP = module("(call $read_all) (loop (br 0))")
# Grows its memory by 200 MiB: more than the 128 MB VM holds.
OOM = module("(call $read_all) (drop (memory.grow (i32.const 3200)))")
# Writes 7 MiB of zeros to stdout: more than a response may be.
BIG = module("(call $read_all) (call $out (i32.const 1) (i32.const 0x20000) (i32.const 7340032))",
             memory_pages=120)
# Ends without reading stdin: its one run is its answer.
EAGER = module("(call $out (i32.const 1) (i32.const 0x100) (i32.const 5))",
               data='(data (i32.const 0x100) "eager")')


def sleep_module(ms: int) -> str:
    """Sleeps `ms` (a WASI clock subscription), then echoes its event."""
    ns = ms * 1_000_000
    return module(f"""
    (call $read_all)
    (i64.store (i32.const 0x400) (i64.const 0))
    (i32.store8 (i32.const 0x408) (i32.const 0))
    (i32.store (i32.const 0x410) (i32.const 1))
    (i64.store (i32.const 0x418) (i64.const {ns}))
    (i64.store (i32.const 0x420) (i64.const 0))
    (i32.store16 (i32.const 0x428) (i32.const 0))
    (drop (call $poll (i32.const 0x400) (i32.const 0x480) (i32.const 1) (i32.const 0x4c0)))
    (call $out (i32.const 1) (i32.const 0x10000) (i32.load (i32.const 0x20)))""")


# Account A: keeps its event (a secret) in two places of its memory.
KEEP_SECRET = module("""
    (call $read_all)
    (memory.copy (i32.const 0x8000) (i32.const 0x10000) (i32.load (i32.const 0x20)))
    (memory.copy (i32.const 0x30000) (i32.const 0x10000) (i32.load (i32.const 0x20)))
    (call $out (i32.const 1) (i32.const 0x100) (i32.const 6))""",
                     memory_pages=16, data='(data (i32.const 0x100) "stored")')

# Account B: its event is A's secret (a JSON string) with every byte plus
# one; it keeps the decoded first 8 bytes only in a local, wipes the event
# (unless `wipe` is off: the positive control, whose event also carries the
# secret itself), grows its memory, and scans every byte offset of it for
# the secret.
def scan_secret(wipe: bool = True) -> str:
    fill = "(memory.fill (i32.const 0x10000) (i32.const 0) (i32.const 0x10000))" if wipe else ""
    return module(f"""
    (local $want i64) (local $i i32) (local $end i32)
    (call $read_all)
    (local.set $want (i64.sub (i64.load (i32.const 0x10001)) (i64.const 0x0101010101010101)))
    {fill}
    (drop (memory.grow (i32.const 16)))
    (local.set $end (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 8)))
    (block $done (loop $scan
      (br_if $done (i32.gt_u (local.get $i) (local.get $end)))
      (if (i64.eq (i64.load (local.get $i)) (local.get $want))
        (then (call $out (i32.const 1) (i32.const 0x110) (i32.const 5)) (return)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $scan)))
    (call $out (i32.const 1) (i32.const 0x100) (i32.const 5))""",
                  memory_pages=16, data='(data (i32.const 0x100) "clean") (data (i32.const 0x110) "FOUND")')


def wat2wasm(src: str) -> bytes:
    exe = shutil.which("wat2wasm")
    if exe is None:
        pytest.fail("wat2wasm is missing: ./scripts/test installs it (Debian package wabt)")
    with tempfile.TemporaryDirectory() as d:
        wat = Path(d) / "m.wat"
        wat.write_text(src)
        out = Path(d) / "m.wasm"
        cp = subprocess.run([exe, str(wat), "-o", str(out)],
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stderr
        return out.read_bytes()


def wasm_zip(src: str | bytes, name: str = "function.wasm") -> bytes:
    """A zip holding the module (WAT text compiled, or Wasm bytes) as `name`,
    plus a nonce so that every function gets code of its own."""
    wasm = src if isinstance(src, bytes) else wat2wasm(src)
    return make_zip({name: wasm, "nonce.txt": nonce()})


def create_wasm(client, src: str | bytes, name: str | None = None, *, handler: str = "function.wasm",
                **kw) -> str:
    name = name or unique_name("vm")
    kw.setdefault("Timeout", 30)
    create_fn(client, name, zip_bytes=wasm_zip(src, handler), runtime=RUNTIME, handler=handler, **kw)
    return name


def creds(account: dict) -> dict[str, str]:
    """`HearthServer.cli` arguments acting as `account`."""
    return {"access_key": account["AccessKeyId"], "secret": account["SecretAccessKey"]}


def usage_of(inv: Invocation) -> dict[str, float]:
    h = inv.response["ResponseMetadata"]["HTTPHeaders"].get("x-hearth-usage")
    assert h, f"no X-Hearth-Usage header: {inv.describe()}"
    return {k: float(v) for k, v in (kv.split("=") for kv in h.split(";"))}


def usage_line(inv: Invocation) -> str:
    lines = [ln for ln in (inv.log or "").splitlines() if ln.startswith("HEARTH_USAGE RequestId:")]
    assert lines, f"no HEARTH_USAGE line: {inv.log}"
    return lines[-1]


def vm_pools(srv: HearthServer) -> dict:
    return srv.pools()["MicroVm"]


def wait_vm_pools(srv: HearthServer, pred, timeout: float, what: str) -> dict:
    last: dict = {}

    def check():
        nonlocal last
        last = vm_pools(srv)
        return pred(last)

    assert wait_until(check, timeout=timeout, interval=0.1), f"{what}: pools were {json.dumps(last)[:3000]}"
    return last


def general_vms(p: dict, cls: int = 128) -> dict:
    return next(g for g in p["General"] if g["Profile"] == f"microvm:{cls}")


def fixtures_dir() -> Path:
    d = os.environ.get("HEARTH_WASM_FIXTURES")
    if not d:
        pytest.fail("HEARTH_WASM_FIXTURES is not set: run ./scripts/test, which builds the C module")
    return Path(d)


@pytest.fixture(scope="module")
def vmsrv(start_server) -> HearthServer:
    """A node whose general VM pool holds 2..8 VMs of 128 MB."""
    srv = start_server(unique_name("vm"), config="""
[microvm]
general = [ { memory_class_mb = 128, min = 2, max = 8 } ]
""")
    assert vm_pools(srv)["Available"], vm_pools(srv)
    wait_vm_pools(srv, lambda p: general_vms(p)["Idle"] >= 2, FILL_TIMEOUT_S, "the general VM pool fills")
    yield srv
    srv.stop()


@pytest.fixture
def acct(vmsrv, request):
    """A fresh account on the module's node and its client."""
    a = vmsrv.create_account()
    yield a, vmsrv.account_client(a)
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("\n" + vmsrv.log_tail(60))


# ---------------------------------------------------------------------------
# Functions whose code is Wasm run in microVMs; the rest keep their sandboxes


def test_wat_and_c_functions_run_in_microvms_from_the_general_pool(vmsrv):
    for src, line in ((ECHO, "wat echo line"), ((fixtures_dir() / "echo_c.wasm").read_bytes(), "echo: read")):
        # A fresh account each: an account may hold half the general pool.
        wait_vm_pools(vmsrv, lambda p: general_vms(p)["Idle"] >= 2, FILL_TIMEOUT_S, "the general VM pool refills")
        account = vmsrv.create_account()
        client = vmsrv.account_client(account)
        name = create_wasm(client, src)
        conf = client.get_function(FunctionName=name)["Configuration"]
        assert conf["Runtime"] == RUNTIME
        assert "hearth-microvm" in conf["RuntimeVersionConfig"]["RuntimeVersionArn"], conf
        raw = vmsrv.raw("GET", f"/2015-03-31/functions/{name}", access_key=account["AccessKeyId"],
                        secret=account["SecretAccessKey"]).json()
        assert raw["Configuration"]["HearthIsolation"] == "microvm", raw

        first = invoke_ok(client, name, {"hello": name})
        assert first.json() == {"hello": name}, first.describe()
        assert first.placement == "vm-general", first.describe()
        assert first.cold, first.report
        inside = assert_log_frame(first, memory_mb=128)
        assert any(line in ln for ln in inside), first.log
        assert usage_line(first).startswith(f"HEARTH_USAGE RequestId: {first.request_id}\t"), first.log
        u = usage_of(first)
        assert u["specialise"] > 0 and u["guest"] > 0 and u["cpu"] > 0 and u["exits"] >= 1, u

        second = invoke_ok(client, name, {"n": 2})
        assert second.json() == {"n": 2}
        assert second.placement == "vm-warm", second.describe()
        assert not second.cold, second.report
        assert usage_of(second)["specialise"] == 0
        assert_log_frame(second, memory_mb=128)


def test_the_function_snapshot_is_taken_when_the_function_is_deployed(vmsrv, acct):
    """A version turns Active (or its update Successful) once its function
    snapshot is taken, so its first invocation adopts it in a general VM
    (ADR 0019); the init's output is still in that invocation's log, once."""
    _, client = acct
    snapshots = vmsrv.data_dir / "vm" / "snapshots"

    def snapshots_of(name: str) -> list[str]:
        sha = base64.b64decode(client.get_function(FunctionName=name)["Configuration"]["CodeSha256"]).hex()
        return sorted(p.name for p in snapshots.glob(f"fn-{sha}-*.snap"))

    name = create_wasm(client, INIT_PRINTS)  # waits for Active
    taken = snapshots_of(name)
    assert len(taken) == 1, taken
    first = invoke_ok(client, name, {"first": 1})
    assert first.json() == {"first": 1} and first.placement == "vm-general", first.describe()
    assert_log_frame(first, memory_mb=128)
    assert first.log.count("init: deployed") == 1, first.log
    second = invoke_ok(client, name, {"second": 2})
    assert second.placement == "vm-warm" and "init: deployed" not in second.log, second.describe()
    assert snapshots_of(name) == taken  # adopted, not taken again

    # New code: its snapshot is there once the update is Successful.
    client.update_function_code(FunctionName=name, ZipFile=wasm_zip(ECHO, "function.wasm"))
    client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    assert len(snapshots_of(name)) == 1, snapshots_of(name)
    third = invoke_ok(client, name, {"third": 3})
    assert third.json() == {"third": 3} and "init: deployed" not in third.log, third.describe()

    # An init that never reaches its stdin read still deploys: its first
    # invocation runs it and reports how it ends, as before.
    broken = create_wasm(client, "(module (func (export \"_start\") unreachable))")
    assert client.get_function(FunctionName=broken)["Configuration"]["State"] == "Active"
    assert snapshots_of(broken) == []
    inv, body = invoke_error(client, broken, {})
    assert body["errorType"].startswith("Runtime."), body


def test_a_bootstrap_whose_bytes_are_wasm_runs_in_a_microvm(vmsrv, acct):
    _, client = acct
    name = unique_name("vmboot")
    create_fn(client, name, zip_bytes=make_zip({"bootstrap": wat2wasm(ECHO), "n": nonce()}),
              runtime="provided.al2", handler="anything.here")
    inv = invoke_ok(client, name, [1, 2, 3])
    assert inv.json() == [1, 2, 3] and inv.placement.startswith("vm-"), inv.describe()


def test_process_sandbox_functions_keep_their_path(vmsrv, acct):
    _, client = acct
    name = unique_name("py")
    create_fn(client, name, zip_bytes=py_zip())
    conf = client.get_function(FunctionName=name)["Configuration"]
    assert conf["RuntimeVersionConfig"]["RuntimeVersionArn"].endswith(":runtime:hearth-process"), conf
    inv = invoke_ok(client, name, {"x": 1})
    assert not inv.placement.startswith("vm-"), inv.describe()
    assert "x-hearth-usage" not in inv.response["ResponseMetadata"]["HTTPHeaders"]


def test_hearth_deploy_a_wasm_file_and_ls_shows_where_it_runs(vmsrv, acct, tmp_path):
    account, _ = acct
    wasm = tmp_path / "hello.wasm"
    wasm.write_bytes(wat2wasm(ECHO))
    name = unique_name("vmcli")
    env = creds(account)
    # Not the dev account: its function needs a role of its own, which
    # `hearth deploy` creates through IAM when given none.
    out = vmsrv.cli("deploy", str(wasm), "--name", name, "--json", **env).stdout
    conf = json.loads(out)
    assert conf["Role"] == f"arn:aws:iam::{account['AccountId']}:role/hearth-function", conf
    assert conf["Runtime"] == RUNTIME and conf["Handler"] == "hello.wasm", conf
    assert conf["HearthIsolation"] == "microvm", conf
    ok = wait_until(lambda: json.loads(vmsrv.cli("ls", "--json", **env).stdout)[0]["State"] == "Active",
                    timeout=30, interval=0.2)
    assert ok
    table = vmsrv.cli("ls", **env).stdout
    row = next(ln for ln in table.splitlines() if ln.startswith(name))
    assert "microvm" in row, table
    got = vmsrv.cli("invoke", name, "--payload", '{"via": "cli"}', **env).stdout
    assert json.loads(got) == {"via": "cli"}, got


# ---------------------------------------------------------------------------
# Invoke semantics


def test_errors_have_lambdas_shape_and_the_vm_is_reset_not_leaked(vmsrv, acct):
    _, client = acct
    cases = [
        (TRAP, "Runtime.Trap", "unreachable"),
        (EXIT3, "Runtime.ExitError", "exit status 3"),
        (OOM, "Runtime.OutOfMemory", ""),
        (BIG, "Function.ResponseSizeTooLarge", "Response payload size"),
    ]
    for src, etype, words in cases:
        name = create_wasm(client, src)
        for attempt in range(2):
            inv, body = invoke_error(client, name, {"attempt": attempt})
            assert body["errorType"] == etype, inv.describe()
            assert words in body["errorMessage"], inv.describe()
            if etype != "Function.ResponseSizeTooLarge":
                assert inv.request_id in body["errorMessage"], body
            assert_log_frame(inv, memory_mb=128)
        # The VM that failed was reset and serves the next one.
        assert inv.placement == "vm-warm", inv.describe()

    # A timeout: Sandbox.Timedout, and the VM is reset, not leaked.
    name = create_wasm(client, LOOP, Timeout=1)
    inv, body = invoke_error(client, name, {})
    assert body["errorType"] == "Sandbox.Timedout", inv.describe()
    assert "Task timed out after 1.00 seconds" in body["errorMessage"], body
    assert "Task timed out after 1.00 seconds" in inv.log
    again, _ = invoke_error(client, name, {})
    assert again.placement == "vm-warm", again.describe()
    wait_vm_pools(vmsrv, lambda p: p["Resetting"] == 0, 30, "no VM stays in reset")

    # A module that never reads its event: its one run is its answer.
    name = create_wasm(client, EAGER)
    inv = invoke_ok(client, name, {})
    assert inv.payload == b"eager", inv.describe()


def test_a_global_counter_is_the_same_on_every_invocation(vmsrv, acct):
    _, client = acct
    name = create_wasm(client, COUNTER)
    outs = [invoke_ok(client, name, {"i": i}) for i in range(6)]
    assert [o.payload for o in outs] == [b"1 1"] * 6, [o.describe() for o in outs]
    assert [o.placement for o in outs[1:]] == ["vm-warm"] * 5


def test_payload_limits_and_log_type_tail(vmsrv, acct):
    _, client = acct
    name = create_wasm(client, ECHO)
    big = {"x": "a" * (6 * 1024 * 1024)}
    with pytest.raises(ClientError) as e:
        client.invoke(FunctionName=name, Payload=json.dumps(big).encode())
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413, e.value.response
    # Without Tail, no log; `hearth logs` has the lines between START and END.
    r = client.invoke(FunctionName=name, Payload=b'{"k": 1}')
    assert "LogResult" not in r and json.loads(r["Payload"].read()) == {"k": 1}
    rid = r["ResponseMetadata"]["RequestId"]

    def logged():
        lines = client_logs(vmsrv, name, acct[0])
        return any(rid in ln and ln.startswith("HEARTH_USAGE") for ln in lines) and lines

    lines = wait_until(logged, timeout=15, interval=0.2)
    assert lines, "the invocation's lines never reached the log store"
    start = lines.index(next(ln for ln in lines if ln.startswith(f"START RequestId: {rid}")))
    assert lines[start + 1] == "wat echo line", lines[start:start + 6]


def client_logs(srv: HearthServer, name: str, account: dict) -> list[str]:
    return srv.cli("logs", name, **creds(account)).stdout.splitlines()


def test_async_events_run_in_microvms(vmsrv, acct):
    account, client = acct
    name = create_wasm(client, ECHO)
    ids = []
    for i in range(3):
        r = client.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"e": i}).encode())
        assert r["StatusCode"] == 202
        ids.append(r["ResponseMetadata"]["RequestId"])

    def all_ran():
        lines = client_logs(vmsrv, name, account)
        return all(any(ln.startswith(f"END RequestId: {i}") for ln in lines) for i in ids)

    assert wait_until(all_ran, timeout=60, interval=0.3), client_logs(vmsrv, name, account)[-30:]


# ---------------------------------------------------------------------------
# Provisioned concurrency and dedicated VMs


def test_provisioned_concurrency_parks_vms_at_the_stdin_read(vmsrv, acct):
    _, client = acct
    name = create_wasm(client, ECHO)
    version = client.publish_version(FunctionName=name)["Version"]
    client.put_provisioned_concurrency_config(FunctionName=name, Qualifier=version,
                                              ProvisionedConcurrentExecutions=2)

    def ready():
        c = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
        return c["Status"] == "READY" and c

    c = wait_until(ready, timeout=PC_READY_TIMEOUT_S, interval=0.2)
    assert c and c["AllocatedProvisionedConcurrentExecutions"] == 2, c
    p = vm_pools(vmsrv)
    parked = [x for x in p["Provisioned"] if x["FunctionName"] == name]
    assert parked and parked[0]["Idle"] == 2, p
    inv = invoke_ok(client, name, {"pc": 1}, qualifier=version)
    assert inv.placement == "vm-dedicated", inv.describe()
    assert not inv.cold, inv.report
    assert inv.json() == {"pc": 1}
    client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
    wait_vm_pools(vmsrv, lambda p: not [x for x in p["Provisioned"] if x["FunctionName"] == name], 30,
                  "the provisioned VMs go with their configuration")


def test_without_general_vm_pools_the_first_invoke_is_cold(servers):
    srv = servers("vmcold", config="[microvm]\ngeneral = []\n")
    client = srv.client()
    name = create_wasm(client, ECHO)
    first = invoke_ok(client, name, {"a": 1})
    assert first.placement == "vm-cold" and first.cold, first.describe()
    assert usage_of(first)["restore"] > 0
    second = invoke_ok(client, name, {"a": 2})
    assert second.placement == "vm-warm" and not second.cold, second.describe()
    assert vm_pools(srv)["General"] == []


# ---------------------------------------------------------------------------
# Capacity policies with VMs. The node's budget holds the general VM, the
# account's dedicated VM (each charged what it holds: a few MB) and one
# running VM (its whole 128 MB class): no second VM can run at once.

TIGHT_VM_CONFIG = """
[capacity]
memory_budget_mb = {budget}
sizer = "fixed"
general = []
[microvm]
general = [ {{ memory_class_mb = 128, min = 1, max = 1 }} ]
"""


def tight_vm_server(servers, prefix: str, policy: str, budget: int, max_wait_ms: int = 1000,
                    dedicated: int = 1):
    srv = servers(prefix, config=TIGHT_VM_CONFIG.format(budget=budget))
    wait_vm_pools(srv, lambda p: general_vms(p)["Idle"] == 1, FILL_TIMEOUT_S, "the general VM")
    acct = cli_account(srv)
    want = {"microvm:128": dedicated} if dedicated else {}
    stored = srv.put_capacity(acct["AccountId"], {"Dedicated": want, "Policy": policy,
                                                  "MaxWaitMs": max_wait_ms})
    assert stored["Dedicated"] == want and stored["Policy"] == policy, stored
    if dedicated:
        wait_vm_pools(srv, lambda p: any(d["AccountId"] == acct["AccountId"] and d["Idle"] == dedicated
                                         for d in p["Dedicated"]), FILL_TIMEOUT_S, "the account's dedicated VM")
    return srv, acct, srv.account_client(acct)


def running(srv: HearthServer, n: int) -> bool:
    """At least `n` VMs run: each is charged its whole class (129 MB), where
    pooled and idle ones hold a few MB."""
    return srv.pools()["MemoryUsedMb"] >= n * 129


def test_vm_policy_burst_uses_the_general_vm_then_429(servers):
    # No dedicated VMs: `burst` draws from the general pool (up to the
    # account's share of it: its one VM), then the budget has no room.
    srv, acct, client = tight_vm_server(servers, "vmburst", "burst", budget=200, dedicated=0)
    f1, f2 = (create_wasm(client, sleep_module(BLOCK_MS)) for _ in range(2))
    blocker = Background(lambda: invoke_ok(client, f1, {"n": 1}))
    assert wait_until(lambda: running(srv, 1), timeout=FILL_TIMEOUT_S, interval=0.05), \
        f"the blocker holds a VM: {srv.pools()}"
    assert not blocker.done, "the blocker ended before the probe: the host is too slow for this test"
    assert_throttled(lambda: invoke(client, f2, {}), "burst beyond the account's share, with no memory left")
    assert not blocker.done, "the blocker ended before the probe's 429"
    first = blocker.get()
    assert first.placement == "vm-general" and first.cold, first.describe()
    assert srv.pools()["MemoryUsedMb"] <= 200


def test_vm_policy_reject_never_bursts_into_the_general_pool(servers):
    srv, acct, client = tight_vm_server(servers, "vmnoburst", "reject", budget=200, dedicated=0)
    f1 = create_wasm(client, ECHO)
    first = invoke_ok(client, f1, {"n": 1})
    assert first.placement == "vm-cold", first.describe()
    assert general_vms(vm_pools(srv))["Idle"] == 1


def test_vm_policy_wait_queues_then_serves_or_times_out(servers):
    srv, acct, client = tight_vm_server(servers, "vmwait", "wait", budget=200, max_wait_ms=20000)
    f1 = create_wasm(client, sleep_module(BLOCK_MS))
    blocker = Background(lambda: invoke_ok(client, f1, {"b": 1}))
    assert wait_until(lambda: running(srv, 1), timeout=FILL_TIMEOUT_S, interval=0.05), \
        f"the blocker holds the dedicated VM: {srv.pools()}"
    assert not blocker.done, "the blocker ended before the probe was sent: the host is too slow for this test"
    probe = Background(lambda: invoke_ok(client, f1, {"p": 1}))
    queued = wait_until(lambda: blocker.done or srv.pools()["Queued"] >= 1, timeout=FILL_TIMEOUT_S, interval=0.05)
    assert queued and not blocker.done, "the waiting invocation never showed in Queued while the blocker ran"
    first, second = blocker.get(), probe.get()
    assert first.placement == "vm-dedicated", first.describe()
    assert second.placement == "queued", second.describe()
    assert usage_of(second)["queue"] > 0, second.describe()
    assert second.json() == {"p": 1}


def test_vm_policy_reject_answers_429_at_once(servers):
    srv, acct, client = tight_vm_server(servers, "vmreject", "reject", budget=200)
    f1, f2 = create_wasm(client, sleep_module(BLOCK_MS)), create_wasm(client, ECHO)
    blocker = Background(lambda: invoke_ok(client, f1, {}))
    assert wait_until(lambda: running(srv, 1), timeout=FILL_TIMEOUT_S, interval=0.05), \
        f"the blocker holds the dedicated VM: {srv.pools()}"
    assert not blocker.done, "the blocker ended before the probe was sent: the host is too slow for this test"
    assert general_vms(vm_pools(srv))["Idle"] == 1
    assert_throttled(lambda: invoke(client, f2, {}), "reject while the dedicated VM is busy")
    assert not blocker.done, "the blocker ended before the probe's 429"
    assert blocker.get().placement == "vm-dedicated"
    again = invoke_ok(client, f1, {"again": 1})
    assert again.placement == "vm-warm", again.describe()


# ---------------------------------------------------------------------------
# The memory budget under a concurrent load

VM_BUDGET_MB = 600
VM_BUDGET_CONFIG = f"""
[capacity]
memory_budget_mb = {VM_BUDGET_MB}
general = []
[microvm]
general = [ {{ memory_class_mb = 128, min = 1, max = 4 }} ]
"""


def test_the_memory_budget_is_never_exceeded_by_vms(servers):
    srv = servers("vmbudget", config=VM_BUDGET_CONFIG)
    wait_vm_pools(srv, lambda p: general_vms(p)["Idle"] >= 1, FILL_TIMEOUT_S, "a general VM")
    clients = [srv.client(), srv.account_client(srv.create_account())]
    fns = [(clients[i % 2], create_wasm(clients[i % 2], sleep_module(100 + 50 * (i % 3)))) for i in range(8)]
    jobs = [(c, n) for _ in range(3) for c, n in fns]
    stop = threading.Event()
    used: list[int] = []

    def sampler():
        deadline = time.monotonic() + 180
        while not stop.is_set() and time.monotonic() < deadline:
            used.append(srv.pools()["MemoryUsedMb"])
            time.sleep(0.02)

    results: list[object] = []
    lock = threading.Lock()
    it = iter(jobs)

    def worker():
        for _ in range(len(jobs)):
            with lock:
                job = next(it, None)
            if job is None:
                return
            c, n = job
            for _ in range(40):
                try:
                    r: object = invoke(c, n, {"n": n})
                except ClientError as e:
                    r = e
                with lock:
                    results.append(r)
                if not throttled(r):
                    break
                time.sleep(0.05)

    s = threading.Thread(target=sampler, daemon=True)
    s.start()
    workers = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=180)
    assert not any(w.is_alive() for w in workers), "the load did not end"
    stop.set()
    s.join(timeout=30)
    ok = [r for r in results if isinstance(r, Invocation)]
    for r in ok:
        assert r.status == 200 and r.function_error is None and r.placement.startswith(("vm-", "queued")), r.describe()
    for e in results:
        if isinstance(e, ClientError):
            assert throttled(e), e.response
    assert ok and used, (len(ok), len(used))
    print(f"vm budget test: {len(ok)} served, {len(results) - len(ok)} throttled, max MemoryUsedMb {max(used)}")
    assert max(used) <= VM_BUDGET_MB, f"MemoryUsedMb reached {max(used)} > {VM_BUDGET_MB}"
    # Idle VMs are charged what they hold, not their class.
    p = wait_vm_pools(srv, lambda p: p["Resetting"] == 0 and p["ActiveIdle"], 30, "the VMs are idle")
    for v in p["ActiveIdle"]:
        assert v["MemoryMb"] < 64, v


# ---------------------------------------------------------------------------
# One account per VM


def test_no_vm_serves_two_accounts_and_no_secret_crosses(vmsrv):
    a = vmsrv.create_account()
    b = vmsrv.create_account()
    ca, cb = vmsrv.account_client(a), vmsrv.account_client(b)
    keep = create_wasm(ca, KEEP_SECRET)
    scan = create_wasm(cb, scan_secret())
    control = create_wasm(cb, scan_secret(wipe=False))
    secret = ("S" + nonce())[:16].encode()
    shifted = bytes(x + 1 for x in secret)
    # B runs before A ever has, then after each of A's invocations.
    got = invoke_ok(cb, scan, raw_payload=b'"' + shifted + b'"')
    assert got.payload == b"clean", got.describe()
    for _ in range(3):
        assert invoke_ok(ca, keep, raw_payload=b'"' + secret + b'"').payload == b"stored"
        got = invoke_ok(cb, scan, raw_payload=b'"' + shifted + b'"')
        assert got.payload == b"clean", got.describe()
    # The scan finds the secret where it is: in the control's own event.
    found = invoke_ok(cb, control, raw_payload=b'"' + shifted[:8] + secret[:8] + b'"')
    assert found.payload == b"FOUND", found.describe()
    p = vm_pools(vmsrv)
    owners: dict[int, set[str]] = {}
    for x in p["Assignments"]:
        owners.setdefault(x["VmId"], set()).add(x["AccountId"])
    shared = {vm: accts for vm, accts in owners.items() if len(accts) > 1}
    assert not shared, f"VMs handed to more than one account: {shared}"
    mine = {x["VmId"] for x in p["Assignments"] if x["AccountId"] == a["AccountId"]}
    theirs = {x["VmId"] for x in p["Assignments"] if x["AccountId"] == b["AccountId"]}
    assert mine and theirs and not (mine & theirs), (mine, theirs)
    for v in p["ActiveIdle"]:
        if v["VmId"] in mine:
            assert v["AccountId"] == a["AccountId"], v


# ---------------------------------------------------------------------------
# Accounting


def test_usage_totals_equal_the_sum_of_the_invocations(vmsrv, acct):
    account, client = acct
    name = create_wasm(client, ECHO, MemorySize=256)
    invs = [invoke_ok(client, name, {"u": i}) for i in range(5)]
    cpu = sum(usage_of(i)["cpu"] for i in invs)
    wall = sum(usage_of(i)["guest"] for i in invs)
    env = creds(account)

    def totals():
        out = json.loads(vmsrv.cli("usage", "--function", name, "--json", **env).stdout)
        rows = out["Usage"]
        return rows and rows[0]["Invocations"] == 5 and out

    out = wait_until(totals, timeout=15, interval=0.2)
    assert out, vmsrv.cli("usage", "--json", **env).stdout
    row = out["Usage"][0]
    assert row["AccountId"] == account["AccountId"] and row["FunctionName"] == name
    # The header rounds each figure to 0.1 µs.
    assert abs(row["GuestCpuUs"] - cpu) <= 0.05 * 5 + 1e-6, (row, cpu)
    assert abs(row["GuestWallUs"] - wall) <= 0.05 * 5 + 1e-6, (row, wall)
    assert abs(row["GbUs"] - row["GuestCpuUs"] * 256 / 1024) < 1e-6, row
    # An account sees only its own; an admin sees every account's.
    other = vmsrv.create_account()
    env_other = creds(other)
    assert json.loads(vmsrv.cli("usage", "--json", **env_other).stdout)["Usage"] == []
    denied = vmsrv.cli("usage", "--account", account["AccountId"], **env_other, check=False)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr + denied.stdout, denied
    admin = json.loads(vmsrv.cli("usage", "--account", account["AccountId"], "--json").stdout)
    assert [r["FunctionName"] for r in admin["Usage"]] == [name], admin
    table = vmsrv.cli("usage", "--function", name, **env).stdout
    assert name in table and "GUEST CPU" in table, table
    m = vmsrv.metrics()
    assert m.value("hearth_vm_phase_seconds_count", phase="guest") >= 5


def test_pools_and_metrics_show_vm_pools(vmsrv):
    table = vmsrv.cli("pools").stdout
    assert "microvm:128" in table, table
    m = vmsrv.metrics()
    assert m.value("hearth_pool_sandboxes", pool="general", profile="microvm:128", warmth="microvm", account="") >= 0
    names = {s[0] for s in m.samples}
    assert "hearth_vm_phase_seconds_bucket" in names, sorted(names)[:50]


# ---------------------------------------------------------------------------
# kill -9: no function, snapshot or accepted event is lost; usage at most
# its batch window


def test_kill9_loses_no_function_snapshot_or_event(start_server):
    # Two event workers and events that each take 1.5 s: at the kill (well
    # within the first 1.5 s) the first events are in flight and the rest
    # queued, so every event's run after the restart is logged.
    srv = start_server(unique_name("vmkill"), config="[events]\nworkers = 2\n")
    client = srv.client()
    name = create_wasm(client, ECHO)
    slow = create_wasm(client, sleep_module(1500))
    for i in range(3):
        invoke_ok(client, name, {"before": i})
    snapshots = srv.data_dir / "vm" / "snapshots"

    def function_snapshots() -> list[str]:
        return sorted(p.name for p in snapshots.glob("fn-*.snap") if not p.name.startswith("fn-warmup-"))

    # Both functions' snapshots were taken when they were deployed (before
    # they turned Active); the echo's is the one named by its code digest.
    echo_sha = base64.b64decode(client.get_function(FunctionName=name)["Configuration"]["CodeSha256"]).hex()
    assert len(function_snapshots()) == 2, function_snapshots()
    snaps = [s for s in function_snapshots() if s.startswith(f"fn-{echo_sha}-")]
    assert len(snaps) == 1, (echo_sha, function_snapshots())
    time.sleep(1.5)  # past the usage batch window (1 s)
    settled = json.loads(srv.cli("usage", "--function", name, "--json").stdout)["Usage"][0]["Invocations"]
    assert settled == 3
    ids = []
    for i in range(6):
        r = client.invoke(FunctionName=slow, InvocationType="Event", Payload=json.dumps({"e": i}).encode())
        assert r["StatusCode"] == 202
        ids.append(r["ResponseMetadata"]["RequestId"])
    srv.kill9()
    srv.restart()
    client = srv.client()
    assert client.get_function(FunctionName=name)["Configuration"]["State"] == "Active"
    assert snaps[0] in function_snapshots(), (snaps, function_snapshots())
    inv = invoke_ok(client, name, {"after": 1})
    assert inv.json() == {"after": 1}

    def all_ran():
        lines = srv.cli("logs", slow).stdout.splitlines()
        return all(any(ln.startswith(f"END RequestId: {i}") for ln in lines) for i in ids)

    assert wait_until(all_ran, timeout=90, interval=0.5), "an accepted event was lost"
    assert wait_until(lambda: json.loads(srv.cli("usage", "--function", name, "--json").stdout)
                      ["Usage"][0]["Invocations"] >= settled + 1, timeout=15, interval=0.2)
    # The echo's snapshot was verified and reused after the restart: no
    # second one was taken for it.
    assert snaps[0] in function_snapshots() and len(function_snapshots()) == 2, function_snapshots()

    # Deleting the function deletes its snapshot (no other version uses its code).
    client.delete_function(FunctionName=name)
    assert wait_until(lambda: snaps[0] not in function_snapshots(), timeout=15, interval=0.1), \
        "the function snapshot outlived its code"
