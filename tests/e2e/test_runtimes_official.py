"""AWS's official runtime clients, unchanged, as `provided.al2023` functions:

- awslambdaric (PyPI), vendored into the zip with `pip install --target`
  and started by a shell `bootstrap` (`python3 -m awslambdaric app.handler`);
- a Rust function built with the `lambda_runtime` crate
  (tests/e2e/fixtures/rust-echo; scripts/test builds it and exports its path
  in HEARTH_RUST_ECHO).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hearth_e2e import (
    PY_RUNTIME,
    REPO,
    WORK,
    assert_log_frame,
    create_fn,
    invoke_error,
    invoke_ok,
    make_zip,
    nonce,
    unique_name,
)

# A release with a manylinux wheel for CPython 3.11 (and pure-Python deps).
AWSLAMBDARIC_VERSION = "3.1.1"
PIP_TIMEOUT_S = 600
CARGO_TIMEOUT_S = 1200

RIC_BOOTSTRAP = """#!/bin/sh
# The official Python runtime interface client, unchanged.
cd /var/task || exit 1
export PYTHONPATH=/var/task
exec /usr/bin/python3 -m awslambdaric "$_HANDLER"
"""

RIC_APP = '''
def handler(event, context):
    if isinstance(event, dict) and event.get("fail"):
        raise RuntimeError("awslambdaric says no: %s" % event.get("why"))
    print("ric handled %s" % context.aws_request_id)
    return event
'''

RIC_BROKEN = '''
import e2e_missing_dependency  # noqa: F401

def handler(event, context):
    return event
'''


# ---------------------------------------------------------------------------
# awslambdaric


def awslambdaric_dir() -> Path:
    """awslambdaric installed with pip --target, cached under tests/e2e/.work
    (reruns skip pip). A registry that cannot be reached fails the test: CI
    reaches PyPI."""
    minor = PY_RUNTIME.removeprefix("python3.")
    target = WORK / f"awslambdaric-{AWSLAMBDARIC_VERSION}-py3{minor}"
    done = target / ".e2e-complete"
    if done.is_file():
        return target
    staging = WORK / f".awslambdaric-staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    venv_pip = REPO / ".venv" / "bin" / "pip"
    pip = [str(venv_pip)] if venv_pip.exists() else [sys.executable, "-m", "pip"]
    cmd = [*pip, "install", "--disable-pip-version-check", "--no-input", "--quiet",
           "--only-binary=:all:", "--python-version", f"3.{minor}", "--target", str(staging),
           f"awslambdaric=={AWSLAMBDARIC_VERSION}"]
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pip install awslambdaric=={AWSLAMBDARIC_VERSION} took more than {PIP_TIMEOUT_S}s")
    if cp.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.fail(f"pip install awslambdaric=={AWSLAMBDARIC_VERSION} failed ({cp.returncode}):\n"
                    f"{' '.join(cmd)}\n{cp.stdout}\n{cp.stderr}")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    done.write_text(AWSLAMBDARIC_VERSION + "\n")
    return target


def zip_with_tree(tree: Path, files: dict[str, str | bytes], modes: dict[str, int]) -> bytes:
    """`files` plus every file under `tree` (at the zip's root), with their modes."""
    all_files: dict[str, str | bytes] = {}
    all_modes: dict[str, int] = {}
    for p in sorted(tree.rglob("*")):
        rel = p.relative_to(tree).as_posix()
        if p.is_dir() or "__pycache__" in p.parts or rel == ".e2e-complete" or p.is_symlink():
            continue
        all_files[rel] = p.read_bytes()
        all_modes[rel] = p.stat().st_mode & 0o777 | 0o444
    all_files.update(files)
    all_modes.update(modes)
    return make_zip(all_files, modes=all_modes)


@pytest.fixture(scope="module")
def ric_functions(lam) -> dict[str, str]:
    code = zip_with_tree(
        awslambdaric_dir(),
        {"bootstrap": RIC_BOOTSTRAP, "app.py": RIC_APP, "broken.py": RIC_BROKEN, "nonce.txt": nonce()},
        {"bootstrap": 0o755},
    )
    names = {"ok": unique_name("ric"), "broken": unique_name("ric-broken")}
    create_fn(lam, names["ok"], zip_bytes=code, runtime="provided.al2023", handler="app.handler", Timeout=30)
    create_fn(lam, names["broken"], zip_bytes=code, runtime="provided.al2023", handler="broken.handler", Timeout=30)
    return names


def test_awslambdaric_echo(lam, ric_functions):
    name = ric_functions["ok"]
    for event in ({"a": 1, "text": "héllo ✓"}, [1, "two", None], "just a string", 42, True):
        inv = invoke_ok(lam, name, event)
        assert inv.json() == event, inv.describe()
        assert inv.executed_version == "$LATEST"
    inv = invoke_ok(lam, name, {"logged": True})
    body = assert_log_frame(inv)
    assert any(f"ric handled {inv.request_id}" in line for line in body), inv.log
    assert not inv.cold, f"awslambdaric's sandbox was not reused:\n{inv.log}"


def test_awslambdaric_exception(lam, ric_functions):
    inv, body = invoke_error(lam, ric_functions["ok"], {"fail": True, "why": "e2e"})
    assert body.get("errorType") == "RuntimeError", body
    assert body.get("errorMessage") == "awslambdaric says no: e2e", body
    assert body.get("requestId") in (inv.request_id, ""), body
    trace = body.get("stackTrace")
    assert isinstance(trace, list) and any("app.py" in frame for frame in trace), body
    # A handled exception leaves awslambdaric running.
    again = invoke_ok(lam, ric_functions["ok"], {"after": "error"})
    assert again.json() == {"after": "error"} and not again.cold, again.describe()


def test_awslambdaric_import_error(lam, ric_functions):
    inv, body = invoke_error(lam, ric_functions["broken"], {"x": 1})
    assert body.get("errorType") == "Runtime.ImportModuleError", body
    assert body.get("errorMessage") == "Unable to import module 'broken': No module named 'e2e_missing_dependency'", body
    assert inv.log and "Runtime.ImportModuleError" in inv.log, inv.log


# ---------------------------------------------------------------------------
# lambda_runtime (Rust)


def rust_echo_binary() -> Path:
    """The fixture binary: $HEARTH_RUST_ECHO (set by scripts/test), else built here."""
    env = os.environ.get("HEARTH_RUST_ECHO")
    if env:
        p = Path(env)
        if not p.is_file():
            pytest.fail(f"HEARTH_RUST_ECHO={env} is not a file")
        return p
    manifest = REPO / "tests" / "e2e" / "fixtures" / "rust-echo" / "Cargo.toml"
    target_dir = REPO / "target" / "e2e-fixtures"
    cmd = ["cargo", "build", "--release", "--manifest-path", str(manifest), "--target-dir", str(target_dir)]
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=CARGO_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"cannot build the rust-echo fixture ({' '.join(cmd)}): {e}")
    if cp.returncode != 0:
        pytest.fail(f"building the rust-echo fixture failed:\n{' '.join(cmd)}\n{cp.stderr[-4000:]}")
    return target_dir / "release" / "rust-echo"


@pytest.fixture(scope="module")
def rust_function(lam) -> str:
    binary = rust_echo_binary()
    code = make_zip({"bootstrap": binary.read_bytes(), "nonce.txt": nonce()}, modes={"bootstrap": 0o755})
    name = unique_name("rust-echo")
    create_fn(lam, name, zip_bytes=code, runtime="provided.al2023", handler="bootstrap", Timeout=30)
    return name


def test_lambda_runtime_rust_echo(lam, rust_function):
    for event in ({"hello": "rust", "n": [1, 2, 3], "ü": "✓"}, [1, 2], "text", None, 7):
        inv = invoke_ok(lam, rust_function, event)
        assert inv.json() == event, inv.describe()
    inv = invoke_ok(lam, rust_function, {"logged": True})
    body = assert_log_frame(inv)
    assert any(f"rust-echo handling request {inv.request_id}" in line for line in body), inv.log
    assert not inv.cold, inv.log


def test_lambda_runtime_rust_error(lam, rust_function):
    inv, body = invoke_error(lam, rust_function, {"fail": True})
    assert isinstance(body.get("errorType"), str) and body["errorType"], body
    assert body.get("errorMessage") == f"asked to fail (request {inv.request_id})", body
    again = invoke_ok(lam, rust_function, {"fail": False})
    assert again.json() == {"fail": False} and not again.cold, again.describe()
