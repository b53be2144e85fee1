"""The `hearth` CLI and the AWS CLI against a running server."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hearth_e2e import (
    HearthServer,
    DEV_ACCOUNT,
    PY_HANDLER,
    PY_RUNTIME,
    REGION,
    ROLE,
    WAITER,
    code_sha256,
    expect_error,
    hearth_bin,
    py_zip,
    unique_name,
)


def _items(out: str, key: str) -> list[dict]:
    """`--json` output: a JSON array, or an object holding the array under `key`."""
    data = json.loads(out)
    if isinstance(data, dict):
        data = data[key]
    assert isinstance(data, list), data
    return data


# ---------------------------------------------------------------------------
# hearth accounts


def test_cli_accounts(hearth):
    name = unique_name("cli-acct")
    created = json.loads(hearth.cli("accounts", "create", name, "--json").stdout)
    assert set(created) >= {"AccountId", "AccessKeyId", "SecretAccessKey"}
    acct_id = created["AccountId"]
    assert len(acct_id) == 12 and acct_id.isdigit()

    listed = _items(hearth.cli("accounts", "list", "--json").stdout, "Accounts")
    by_id = {a["AccountId"]: a for a in listed}
    assert acct_id in by_id and by_id[acct_id]["Name"] == name
    assert DEV_ACCOUNT in by_id
    text = hearth.cli("accounts", "list").stdout
    assert acct_id in text and name in text

    # The printed credentials work.
    c = hearth.client(created["AccessKeyId"], created["SecretAccessKey"])
    assert c.list_functions()["Functions"] == []

    # A non-admin cannot manage accounts through the CLI.
    cp = hearth.cli("accounts", "list", access_key=created["AccessKeyId"], secret=created["SecretAccessKey"],
                    check=False)
    assert cp.returncode != 0

    hearth.cli("accounts", "delete", acct_id)
    listed = _items(hearth.cli("accounts", "list", "--json").stdout, "Accounts")
    assert acct_id not in {a["AccountId"] for a in listed}
    expect_error(c.list_functions, code="UnrecognizedClientException", status=403)


# ---------------------------------------------------------------------------
# hearth deploy / ls / rm / runtimes


def test_cli_deploy_ls_rm(hearth, lam, tmp_path):
    name = unique_name("cli-fn")
    src = tmp_path / "app"
    src.mkdir()
    (src / "handler.py").write_bytes(PY_HANDLER)
    (src / "lib").mkdir()
    (src / "lib" / "util.py").write_text("VALUE = 1\n")

    out = hearth.cli("deploy", str(src), "--name", name, "--runtime", PY_RUNTIME,
                     "--handler", "handler.handler", "--json").stdout
    deployed = json.loads(out)
    assert deployed["FunctionName"] == name
    assert deployed["Runtime"] == PY_RUNTIME
    assert deployed["Handler"] == "handler.handler"
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    first = lam.get_function(FunctionName=name)["Configuration"]
    assert first["CodeSha256"] == deployed["CodeSha256"]

    listed = _items(hearth.cli("ls", "--json").stdout, "Functions")
    assert name in {f["FunctionName"] for f in listed}
    assert name in hearth.cli("ls").stdout

    # Deploying again with changed code updates the same function's code.
    (src / "lib" / "util.py").write_text("VALUE = 2\n")
    again = json.loads(hearth.cli("deploy", str(src), "--name", name, "--runtime", PY_RUNTIME,
                                  "--handler", "handler.handler", "--json").stdout)
    assert again["FunctionName"] == name
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    second = lam.get_function(FunctionName=name)["Configuration"]
    assert second["CodeSha256"] != first["CodeSha256"]
    assert second["FunctionArn"] == first["FunctionArn"]
    assert [f["FunctionName"] for f in _items(hearth.cli("ls", "--json").stdout, "Functions")].count(name) == 1

    # A zip file is uploaded as is.
    z = py_zip()
    zpath = tmp_path / "code.zip"
    zpath.write_bytes(z)
    hearth.cli("deploy", str(zpath), "--name", name, "--runtime", PY_RUNTIME, "--handler", "handler.handler")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    assert lam.get_function(FunctionName=name)["Configuration"]["CodeSha256"] == code_sha256(z)

    hearth.cli("rm", name)
    expect_error(lam.get_function, FunctionName=name, code="ResourceNotFoundException", status=404)
    assert name not in {f["FunctionName"] for f in _items(hearth.cli("ls", "--json").stdout, "Functions")}
    assert hearth.cli("rm", name, check=False).returncode != 0


def test_cli_deploy_refused_code_fails(hearth, lam, tmp_path):
    name = unique_name("cli-bad")
    src = tmp_path / "app"
    src.mkdir()
    (src / "other.py").write_bytes(PY_HANDLER)
    cp = hearth.cli("deploy", str(src), "--name", name, "--runtime", PY_RUNTIME,
                    "--handler", "handler.handler", check=False)
    assert cp.returncode != 0
    assert "InvalidParameterValueException" in cp.stderr + cp.stdout
    expect_error(lam.get_function, FunctionName=name, code="ResourceNotFoundException", status=404)


def test_cli_runtimes(hearth):
    """Each listed runtime is a name or a pattern (`python3.*`); the host's
    python and the provided runtimes are covered, and python resolves."""
    listed = _items(hearth.cli("runtimes", "--json").stdout, "Runtimes")
    entries = [r if isinstance(r, dict) else {"Runtime": r} for r in listed]

    def covering(runtime: str) -> list[dict]:
        return [e for e in entries if fnmatch.fnmatchcase(runtime, e["Runtime"])]

    assert covering(PY_RUNTIME), entries
    assert covering("provided.al2023"), entries
    py = covering(PY_RUNTIME)[0]
    if "Resolved" in py:
        assert py["Resolved"], py
    text = hearth.cli("runtimes").stdout
    assert any(e["Runtime"] in text for e in covering(PY_RUNTIME))


def test_cli_wrong_credentials(hearth):
    cp = hearth.cli("ls", access_key="test", secret="wrong", check=False)
    assert cp.returncode != 0
    assert "InvalidSignatureException" in cp.stderr + cp.stdout


def test_cli_errors_are_one_line_whatever_rust_backtrace_says(hearth, tmp_path):
    """A missing resource, a bad argument and an unreachable node: one clear
    line on stderr and a non-zero exit, even with RUST_BACKTRACE=1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTH_", "AWS_"))}
    env.update(HEARTH_ENDPOINT=hearth.endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_DEFAULT_REGION=REGION, RUST_BACKTRACE="1", RUST_LIB_BACKTRACE="1")
    cases = {
        "missing function": (["invoke", unique_name("missing"), "--payload", "{}"], {},
                             "ResourceNotFoundException"),
        "missing directory": (["deploy", str(tmp_path / "nowhere"), "--name", unique_name("x"),
                               "--runtime", PY_RUNTIME, "--handler", "handler.handler"], {}, "nowhere"),
        "unreachable node": (["ls"], {"HEARTH_ENDPOINT": "http://127.0.0.1:9"}, "127.0.0.1:9"),
        "unknown flag": (["ls", "--bogus"], {}, "--bogus"),
        "missing argument": (["invoke"], {}, "<NAME>"),
    }
    for what, (args, extra, needle) in cases.items():
        cp = subprocess.run([str(hearth_bin()), *args], env={**env, **extra}, capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
        assert cp.returncode != 0, (what, cp.stdout, cp.stderr)
        lines = [line for line in cp.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (what, cp.stderr)
        assert needle in lines[0], (what, cp.stderr)
        assert "backtrace" not in cp.stderr.lower(), (what, cp.stderr)


# ---------------------------------------------------------------------------
# The AWS CLI


def _aws_cli() -> Path:
    p = Path(sys.executable).parent / "aws"
    if not p.exists():
        pytest.fail(f"the AWS CLI is not installed in the venv ({p}); see tests/e2e/requirements.txt")
    return p


def test_aws_cli(hearth, lam, tmp_path):
    z = py_zip()
    zpath = tmp_path / "fn.zip"
    zpath.write_bytes(z)
    name = unique_name("awscli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_MAX_ATTEMPTS="1", AWS_PAGER="",
    )
    base = [str(_aws_cli()), "--endpoint-url", hearth.endpoint, "--output", "json", "lambda"]
    cp = subprocess.run(
        base + ["create-function", "--function-name", name, "--runtime", PY_RUNTIME, "--role", ROLE,
                "--handler", "handler.handler", "--zip-file", f"fileb://{zpath}"],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert cp.returncode == 0, cp.stderr
    created = json.loads(cp.stdout)
    assert created["FunctionName"] == name
    assert created["CodeSha256"] == code_sha256(z)

    cp = subprocess.run(base + ["list-functions"], env=env, capture_output=True, text=True, timeout=120,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr
    assert name in {f["FunctionName"] for f in json.loads(cp.stdout)["Functions"]}

    cp = subprocess.run(base + ["get-function", "--function-name", unique_name("missing")], env=env,
                        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert cp.returncode != 0
    assert "ResourceNotFoundException" in cp.stderr
    lam.delete_function(FunctionName=name)


# ---------------------------------------------------------------------------
# hearth serve configured through the environment


def test_serve_from_environment(work_dir):
    d = work_dir / unique_name("env-serve")
    srv = HearthServer(d / "data", d / "server.log", via_env=True)
    try:
        srv.start()
        c = srv.client()
        name = unique_name("envfn")
        z = py_zip()
        c.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE, Handler="handler.handler",
                          Code={"ZipFile": z})
        assert c.get_function(FunctionName=name)["Configuration"]["CodeSha256"] == code_sha256(z)
    finally:
        rc = srv.stop()
    assert rc == 0, f"hearth serve exited with {rc} on SIGTERM\n{srv.log_tail()}"
    assert (d / "data" / "registry.sqlite").is_file()
    assert (d / "data" / "code" / "blobs" / f"{hashlib.sha256(z).hexdigest()}.zip").is_file()
