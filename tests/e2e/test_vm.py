"""`hearth vm run`: WebAssembly modules in Hearth's own KVM microVMs.

Modules of three origins echo an event through the stdin/stdout contract:
C compiled with zig (the `ziglang` PyPI package), AssemblyScript (npm), and
WAT text. `scripts/test` builds the first two into $HEARTH_WASM_FIXTURES
(tests/e2e/fixtures/wasm/build.sh). The tests skip, saying why, only where
/dev/kvm is absent; CI has it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hearth_e2e import hearth_bin

KVM = Path("/dev/kvm")

pytestmark = pytest.mark.skipif(
    not KVM.exists(), reason="/dev/kvm is absent on this host: microVMs need KVM"
)

ECHO_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start") (local $total i32) (local $n i32)
    (block $eof (loop $more
      (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $total)))
      (i32.store (i32.const 4) (i32.sub (i32.const 64512) (local.get $total)))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $n (i32.load (i32.const 8)))
      (br_if $eof (i32.eqz (local.get $n)))
      (local.set $total (i32.add (local.get $total) (local.get $n)))
      (br $more)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (local.get $total))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""

LOOP_WAT = '(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))'


def fixtures() -> Path:
    d = os.environ.get("HEARTH_WASM_FIXTURES")
    if not d:
        pytest.fail("HEARTH_WASM_FIXTURES is not set: run ./scripts/test, which builds the C and AssemblyScript modules")
    return Path(d)


def vm_run(*args: str | Path, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, RUST_BACKTRACE="0")
    return subprocess.run(
        [str(hearth_bin()), "vm", "run", *[str(a) for a in args]],
        input=input,
        capture_output=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def wat_module(tmp_path: Path) -> Path:
    p = tmp_path / "echo.wat"
    p.write_text(ECHO_WAT)
    return p


@pytest.mark.parametrize("name,log", [("echo_c.wasm", b"echo: read"), ("echo_as.wasm", b"echo: read"), ("wat", None)])
def test_modules_of_three_origins_echo_an_event(name: str, log: bytes | None, wat_module: Path) -> None:
    module = wat_module if name == "wat" else fixtures() / name
    event = json.dumps({"name": "x", "n": [1, 2, 3]})
    r = vm_run(module, "--event", event)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == event
    if log:
        assert log in r.stderr, r.stderr
    assert b"status   exited" in r.stderr


@pytest.mark.parametrize("name", ["echo_c.wasm", "echo_as.wasm"])
def test_snapshots_then_restore(name: str, tmp_path: Path) -> None:
    module = fixtures() / name
    snaps = tmp_path / "snaps"
    first = vm_run(module, "--event", '{"run":1}', "--snapshot-dir", snaps, "--json")
    assert first.returncode == 0, first.stderr.decode()
    one = json.loads(first.stdout)
    assert one["path"].startswith("first run"), one
    assert one["stdout"] == '{"run":1}'
    assert sorted(p.name.split("-")[0] for p in snaps.iterdir()) == ["base", "fn"]
    for i in (2, 3):
        r = vm_run(module, "--event", f'{{"run":{i}}}', "--snapshot-dir", snaps, "--json")
        assert r.returncode == 0, r.stderr.decode()
        out = json.loads(r.stdout)
        assert out["path"] == "restored from the function snapshot", out
        assert out["stdout"] == f'{{"run":{i}}}'
        assert "echo: read" in out["stderr"]
        acct = out["accounting"]
        assert acct["restore_us"] > 0 and acct["run_wall_us"] > 0 and acct["run_cpu_us"] > 0
        assert acct["exits"]["doorbell"] == 1 and acct["cow_pages"] > 0


def test_large_event_from_a_file(tmp_path: Path) -> None:
    module = fixtures() / "echo_c.wasm"
    event = tmp_path / "event.json"
    payload = json.dumps({"data": "x" * (1 << 20)})
    event.write_text(payload)
    r = vm_run(module, "--event", f"@{event}", "--json")
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert out["stdout"] == payload
    # The same through stdin.
    r = vm_run(module, "--event", "@-", "--json", input=payload.encode())
    assert json.loads(r.stdout)["stdout"] == payload


def test_function_errors_exit_1_with_a_status(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\0asm\x01\0\0\0garbage")
    r = vm_run(bad, "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["status"] == "load-error" and "Invalid" in out["error"], out

    loop = tmp_path / "loop.wat"
    loop.write_text(LOOP_WAT)
    r = vm_run(loop, "--timeout", "0.5", "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["status"] == "timeout"

    exits = tmp_path / "exit.wat"
    exits.write_text(
        '(module (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32)))'
        ' (memory (export "memory") 1) (func (export "_start") (call $e (i32.const 7))))'
    )
    r = vm_run(exits)
    assert r.returncode == 7
    assert b"exited with status 7" in r.stderr


def test_user_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    r = vm_run(tmp_path / "missing.wasm")
    assert r.returncode == 2
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot read" in lines[0], r.stderr
    r = vm_run(tmp_path / "missing.wasm", "--memory", "1")
    assert r.returncode == 2 and b"memory" in r.stderr


def test_a_corrupt_snapshot_is_discarded_and_taken_again(wat_module: Path, tmp_path: Path) -> None:
    snaps = tmp_path / "snaps"
    assert vm_run(wat_module, "--snapshot-dir", snaps).returncode == 0
    fn = next(p for p in snaps.iterdir() if p.name.startswith("fn-"))
    data = bytearray(fn.read_bytes())
    data[-10] ^= 0xFF
    fn.write_bytes(bytes(data))
    r = vm_run(wat_module, "--event", '"again"', "--snapshot-dir", snaps, "--json")
    assert r.returncode == 0, r.stderr.decode()
    assert b"discarding" in r.stderr and b"checksum" in r.stderr
    out = json.loads(r.stdout)
    assert out["stdout"] == '"again"' and out["path"].startswith("first run")
    r = vm_run(wat_module, "--snapshot-dir", snaps, "--json")
    assert json.loads(r.stdout)["path"] == "restored from the function snapshot"
