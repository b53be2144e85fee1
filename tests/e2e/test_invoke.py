"""Invoke through boto3 against real sandboxes, for python and node: echo,
every failure of CONTRACTS.md's Invoke table, log tails, qualifiers,
throttles, warm reuse, the Lambda environment, client context, and the
`hearth invoke` / `hearth logs` CLI.

The functions (tests/e2e/functions/invoke_app.{py,js}) echo their event
unless it is {"__e2e": <op>, ...}; they are created once per module and
shared. No assertion is on a duration.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading

import pytest

from botocore.exceptions import ClientError

from hearth_e2e import (
    DEV_ACCOUNT,
    LANGS,
    REGION,
    WAITER,
    Lang,
    assert_log_frame,
    create_fn,
    expect_error,
    hearth_bin,
    invoke,
    invoke_error,
    invoke_ok,
    is_root,
    lang,
    make_zip,
    processes_of_uid,
    unique_name,
    wait_until,
)

SIX_MB = 6 * 1024 * 1024
USER_ENV = {"GREETING": "héllo wörld ✓", "E2E_FLAG": "on", "PATH_LIKE": "/a:/b"}

# What CONTRACTS.md lists as the runtime's environment (AWS's own).
LAMBDA_ENV = [
    "AWS_LAMBDA_RUNTIME_API", "_HANDLER", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_REGION", "AWS_DEFAULT_REGION", "TZ", "LANG", "PATH", "LD_LIBRARY_PATH",
]


def arn(name: str, qualifier: str | None = None) -> str:
    a = f"arn:aws:lambda:{REGION}:{DEV_ACCOUNT}:function:{name}"
    return f"{a}:{qualifier}" if qualifier else a


class Apps:
    """The module's functions, created on first use and shared by the tests."""

    def __init__(self, lam):
        self.lam = lam
        self.names: dict[tuple[str, str], str] = {}

    def get(self, key: str, kind: str = "main") -> tuple[Lang, str]:
        lg = lang(key)
        if (key, kind) not in self.names:
            name = unique_name(f"inv-{key}-{kind}")
            kw: dict = {"Timeout": 30, "MemorySize": 128}
            handler = lg.handler
            code = lg.zip()
            if kind == "main":
                kw["Environment"] = {"Variables": USER_ENV}
            elif kind == "t1":
                kw["Timeout"] = 1
            elif kind == "import_error":
                if key == "python":
                    code = lg.zip("import e2e_no_such_module_xyz\n\ndef handler(event, context):\n    return 1\n")
                else:
                    code = lg.zip("require('e2e-no-such-module-xyz');\nexports.handler = async () => 1;\n")
            elif kind == "no_handler":
                handler = f"{lg.module}.nothere"
            create_fn(self.lam, name, zip_bytes=code, runtime=lg.runtime, handler=handler, **kw)
            self.names[(key, kind)] = name
        return lg, self.names[(key, kind)]


@pytest.fixture(scope="module")
def apps(lam) -> Apps:
    return Apps(lam)


# ---------------------------------------------------------------------------
# Echo


@pytest.mark.parametrize("key", LANGS)
def test_echo_objects_and_unicode(lam, apps, key):
    _, name = apps.get(key)
    for event in (
        {"name": "x"},
        {"text": "héllo wörld ✓ 日本語 🎉", "emoji": "🎉", "escaped": "tab\tquote\"backslash\\"},
        {"nested": {"list": [1, 2.5, None, True, {"deep": ["a"]}]}, "empty": {}, "zero": 0},
    ):
        inv = invoke_ok(lam, name, event)
        assert inv.json() == event, inv.describe()
        assert inv.executed_version == "$LATEST"


@pytest.mark.parametrize("key", LANGS)
def test_echo_bare_payloads(lam, apps, key):
    _, name = apps.get(key)
    for raw in (b"true", b"false", b"null", b'[1, "two", null, {"3": [4]}]', b"[]", b"42", b"-3.5",
                b'"just a string"', b"{}", "\"ünïcode ✓\"".encode()):
        inv = invoke_ok(lam, name, raw_payload=raw)
        assert inv.json() == json.loads(raw), (raw, inv.describe())
    # No payload at all: the handler gets {} (as on AWS).
    inv = invoke_ok(lam, name)
    assert inv.json() == {}, inv.describe()


@pytest.mark.parametrize("key", LANGS)
def test_echo_near_6mb(hearth, apps, key):
    _, name = apps.get(key)
    lam = hearth.client(read_timeout=300)
    data = "a" * (SIX_MB - 1024)
    raw = json.dumps({"data": data}).encode()
    assert len(raw) < SIX_MB
    inv = invoke(lam, name, raw_payload=raw, tail=False)
    assert inv.status == 200 and inv.function_error is None, inv.describe()
    assert inv.json() == {"data": data}


@pytest.mark.parametrize("key", LANGS)
def test_response_over_6mb_is_an_error(lam, apps, key):
    _, name = apps.get(key)
    inv, body = invoke_error(lam, name, {"__e2e": "big", "size": SIX_MB + 1})
    assert body.get("errorType") == "Function.ResponseSizeTooLarge", body
    assert body.get("errorMessage"), body
    # The function still answers afterwards.
    assert invoke_ok(lam, name, {"after": "big"}).json() == {"after": "big"}


# ---------------------------------------------------------------------------
# Failures


@pytest.mark.parametrize("key", LANGS)
def test_handler_error(lam, apps, key):
    _, name = apps.get(key)
    message = "boom: ünïcødé ✓"
    inv, body = invoke_error(lam, name, {"__e2e": "raise", "message": message})
    if key == "python":
        assert set(body) == {"errorMessage", "errorType", "requestId", "stackTrace"}, body
        assert body["errorType"] == "ValueError"
        assert body["errorMessage"] == message
        assert body["requestId"] == inv.request_id
        trace = body["stackTrace"]
        assert isinstance(trace, list) and trace, body
        assert any("app.py" in frame for frame in trace), trace
        assert not any("bootstrap" in frame for frame in trace), f"the runtime's own frames leak: {trace}"
    else:
        # Node's shape: errorType, errorMessage, trace (AWS's recording).
        assert body["errorType"] == "TypeError", body
        assert message in body["errorMessage"], body
        trace = body.get("trace")
        assert isinstance(trace, list) and trace, body
        assert any("index.js" in frame for frame in trace), trace
    # The error is in the log, and the sandbox survives a handled failure.
    assert body["errorType"] in inv.log, inv.log
    again = invoke_ok(lam, name, {"after": "raise"})
    assert again.json() == {"after": "raise"}
    assert not again.cold, f"a handler exception cost the sandbox:\n{again.log}"


@pytest.mark.parametrize("key", LANGS)
def test_timeout_kills_and_next_invoke_gets_a_fresh_sandbox(lam, apps, key):
    _, name = apps.get(key, "t1")
    invoke_ok(lam, name, {"warm": 1})
    announce = f"sleeping past the timeout {unique_name('t')}"
    inv, body = invoke_error(lam, name, {"__e2e": "sleep", "seconds": 8, "announce": announce})
    assert body == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {inv.request_id} Error: Task timed out after 1.00 seconds",
    }, body
    assert "Task timed out after 1.00 seconds" in inv.log, inv.log
    assert announce in inv.log, inv.log
    assert_log_frame(inv)
    after = invoke_ok(lam, name, {"after": "timeout"})
    assert after.json() == {"after": "timeout"}
    assert after.cold, f"the timed-out sandbox was reused (no Init Duration):\n{after.log}"


@pytest.mark.parametrize("key", LANGS)
def test_runtime_exit(lam, apps, key):
    _, name = apps.get(key)
    invoke_ok(lam, name, {"warm": 1})
    inv, body = invoke_error(lam, name, {"__e2e": "exit", "code": 3})
    assert body.get("errorType") == "Runtime.ExitError", body
    assert body.get("errorMessage") == f"RequestId: {inv.request_id} Error: Runtime exited with error: exit status 3", body
    after = invoke_ok(lam, name, {"after": "exit"})
    assert after.json() == {"after": "exit"}
    assert after.cold, f"a dead sandbox was reused:\n{after.log}"


@pytest.mark.parametrize("key", LANGS)
def test_import_error(lam, apps, key):
    _, name = apps.get(key, "import_error")
    for _ in range(2):  # every invocation tries to initialise again, and fails the same way
        inv, body = invoke_error(lam, name, {"x": 1})
        assert body.get("errorType") == "Runtime.ImportModuleError", body
        if key == "python":
            assert body["errorMessage"] == "Unable to import module 'app': No module named 'e2e_no_such_module_xyz'", body
            assert body.get("requestId") == "", body
            assert isinstance(body.get("stackTrace"), list), body
        else:
            assert "e2e-no-such-module-xyz" in body.get("errorMessage", ""), body
        assert inv.log and "Runtime.ImportModuleError" in inv.log, inv.log


@pytest.mark.parametrize("key", LANGS)
def test_missing_handler(lam, apps, key):
    lg, name = apps.get(key, "no_handler")
    inv, body = invoke_error(lam, name, {"x": 1})
    assert body.get("errorType") == "Runtime.HandlerNotFound", body
    if key == "python":
        assert body["errorMessage"] == "Handler 'nothere' missing on module 'app'", body
        # awslambdaric reports a missing handler when it is called (with the
        # invocation's id); an init error carries "".
        assert body.get("requestId") in ("", inv.request_id), body
    else:
        assert "index.nothere" in body.get("errorMessage", ""), body


@pytest.mark.parametrize("key", LANGS)
def test_out_of_memory(lam, apps, key):
    _, name = apps.get(key)  # MemorySize 128
    invoke_ok(lam, name, {"warm": 1})
    inv, body = invoke_error(lam, name, {"__e2e": "alloc", "mb": 320})
    assert body.get("errorType") in ("Runtime.OutOfMemory", "Runtime.ExitError"), body
    assert body.get("errorMessage", "").startswith(f"RequestId: {inv.request_id} Error: Runtime exited"), body
    after = invoke_ok(lam, name, {"after": "oom"})
    assert after.json() == {"after": "oom"}
    assert after.cold, f"the OOM-killed sandbox was reused:\n{after.log}"


# ---------------------------------------------------------------------------
# Logs and reuse


@pytest.mark.parametrize("key", LANGS)
def test_log_tail(lam, apps, key):
    _, name = apps.get(key)
    marker = unique_name("line")
    lines = [f"first {marker}", "second: ünïcode ✓"]
    inv = invoke_ok(lam, name, {"__e2e": "print", "lines": lines})
    assert inv.json() == {"printed": 2}
    # As root the sandbox has a memory cgroup, whose peak the REPORT shows.
    body = assert_log_frame(inv, memory_mb=128, min_used_mb=1 if is_root() else 0)
    for want in lines:
        assert any(want in got for got in body), f"{want!r} not between START and END:\n{inv.log}"
    if key == "python":
        assert [ln for ln in body if ln in lines] == lines, inv.log

    # Without Tail, no log comes back.
    plain = invoke(lam, name, {"plain": 1}, tail=False)
    assert plain.log is None and "LogResult" not in plain.response

    # The tail is the last 4 KB: a long output keeps its end and the REPORT.
    many = [f"{i:04d} {'x' * 90}" for i in range(200)]
    inv = invoke_ok(lam, name, {"__e2e": "print", "lines": many})
    raw = base64.b64decode(inv.response["LogResult"])
    assert len(raw) <= 4096, len(raw)
    assert inv.log.rstrip("\n").splitlines()[-1].startswith(f"REPORT RequestId: {inv.request_id}"), inv.log
    assert many[-1] in inv.log and many[0] not in inv.log


@pytest.mark.parametrize("key", LANGS)
def test_warm_reuse(lam, key):
    lg = lang(key)
    name = unique_name(f"warm-{key}")
    create_fn(lam, name, zip_bytes=lg.zip(), runtime=lg.runtime, handler=lg.handler)
    first = invoke_ok(lam, name, {"n": 1})
    assert first.cold, f"the first invocation has no Init Duration:\n{first.log}"
    second = invoke_ok(lam, name, {"n": 2})
    assert second.json() == {"n": 2}
    assert not second.cold, f"the second invocation started a new sandbox:\n{second.log}"
    third = invoke_ok(lam, name, {"n": 3})
    assert not third.cold, third.log


# ---------------------------------------------------------------------------
# Qualifiers and throttles


@pytest.mark.parametrize("key", LANGS)
def test_qualifier_version_and_alias(lam, key):
    lg = lang(key)
    name = unique_name(f"qual-{key}")

    def code(mark: str) -> bytes:
        return lg.zip(lg.source.replace("unversioned", mark))

    create_fn(lam, name, zip_bytes=code("v1"), runtime=lg.runtime, handler=lg.handler, Publish=True)
    lam.update_function_code(FunctionName=name, ZipFile=code("v2"))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    lam.update_function_code(FunctionName=name, ZipFile=code("v3"))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.create_alias(FunctionName=name, Name="next", FunctionVersion="2")

    cases = [  # (FunctionName, Qualifier, mark, executed version)
        (name, None, "v3", "$LATEST"),
        (name, "$LATEST", "v3", "$LATEST"),
        (name, "1", "v1", "1"),
        (name, "2", "v2", "2"),
        (name, "live", "v1", "1"),
        (name, "next", "v2", "2"),
        (f"{name}:2", None, "v2", "2"),
        (arn(name, "live"), None, "v1", "1"),
    ]
    for fname, qual, mark, version in cases:
        inv = invoke_ok(lam, fname, {"__e2e": "version"}, qualifier=qual)
        assert inv.json() == {"mark": mark, "env_version": version}, (fname, qual, inv.describe())
        assert inv.executed_version == version, (fname, qual, inv.describe())
        assert_log_frame(inv, version=version)

    ctx = invoke_ok(lam, name, {"__e2e": "context"}, qualifier="live").json()
    assert ctx["invoked_function_arn"] == arn(name, "live"), ctx
    assert ctx["function_version"] == "1", ctx
    expect_error(lam.invoke, FunctionName=name, Qualifier="7", code="ResourceNotFoundException", status=404)
    expect_error(lam.invoke, FunctionName=name, Qualifier="nope", code="ResourceNotFoundException", status=404)


@pytest.mark.parametrize("key", LANGS)
def test_reserved_concurrency_zero_throttles(hearth, lam, apps, key):
    _, name = apps.get(key)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    try:
        err = expect_error(lam.invoke, FunctionName=name, Payload=b"{}", code="TooManyRequestsException", status=429)
        assert err.get("Reason") == "ReservedFunctionConcurrentInvocationLimitExceeded", err
        r = hearth.raw("POST", f"/2015-03-31/functions/{name}/invocations", b"{}")
        assert r.status == 429, (r.status, r.body)
        assert (r.header("X-Amzn-ErrorType") or "").split(":")[0] == "TooManyRequestsException", r.headers
        assert r.json().get("Reason") == "ReservedFunctionConcurrentInvocationLimitExceeded", r.body
        # DryRun is not throttled (nothing runs).
        assert lam.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204
    finally:
        lam.delete_function_concurrency(FunctionName=name)
    assert invoke_ok(lam, name, {"after": "throttle"}).json() == {"after": "throttle"}


def run_together(lam, name: str, events: list[dict], timeout: float = 90) -> list[object]:
    """Invokes all `events` at once (one thread each); returns each outcome:
    the Invocation, or the ClientError."""
    out: list[object] = [None] * len(events)
    start = threading.Barrier(len(events))

    def call(i: int) -> None:
        start.wait(timeout=30)
        try:
            out[i] = invoke(lam, name, events[i])
        except ClientError as e:
            out[i] = e

    threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(len(events))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "concurrent invocations did not end"
    return out


@pytest.mark.parametrize("key", LANGS)
def test_concurrent_invocations_get_their_own_sandboxes(lam, apps, key):
    """Invocations that overlap (each holds its sandbox 3 s) run side by side."""
    _, name = apps.get(key)
    outs = run_together(lam, name, [{"__e2e": "whoami", "seconds": 3}] * 3)
    for o in outs:
        assert not isinstance(o, ClientError) and o.function_error is None, o
    who = [o.json() for o in outs]
    assert len({w["boot"] for w in who}) == 3, f"overlapping invocations shared a sandbox: {who}"
    if is_root():
        assert len({w["uid"] for w in who}) == 3, f"concurrent sandboxes share a uid: {who}"


def test_reserved_concurrency_one_throttles_the_overlapping_invocation(lam):
    lg = lang("python")
    name = unique_name("reserved-1")
    create_fn(lam, name, zip_bytes=lg.zip(), runtime=lg.runtime, handler=lg.handler, Timeout=30)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    outs = run_together(lam, name, [{"__e2e": "whoami", "seconds": 3}] * 2)
    ok = [o for o in outs if not isinstance(o, ClientError)]
    throttled = [o for o in outs if isinstance(o, ClientError)]
    assert len(ok) == 1 and len(throttled) == 1, outs
    assert ok[0].function_error is None, ok[0].describe()
    err = throttled[0].response
    assert err["Error"]["Code"] == "TooManyRequestsException", err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 429, err
    assert err.get("Reason") == "ReservedFunctionConcurrentInvocationLimitExceeded", err
    assert invoke_ok(lam, name, {"after": 1}).json() == {"after": 1}


@pytest.fixture(scope="module")
def limited(start_server):
    """A server with an account concurrency of 1 and a 1 s idle timeout
    (stopped with the module, so its sandboxes are gone before other suites)."""
    srv = start_server(unique_name("limited"), config="account_concurrency = 1\nidle_timeout_secs = 1\n")
    yield srv
    srv.stop()


def test_account_concurrency_limit_throttles(limited):
    lam = limited.client()
    lg = lang("python")
    a, b = unique_name("acct-a"), unique_name("acct-b")
    create_fn(lam, a, zip_bytes=lg.zip(), runtime=lg.runtime, handler=lg.handler, Timeout=30)
    create_fn(lam, b, zip_bytes=lg.zip(), runtime=lg.runtime, handler=lg.handler, Timeout=30)
    outs: list[object] = [None, None]
    gate = threading.Barrier(2)

    def call(i: int, name: str) -> None:
        gate.wait(timeout=30)
        try:
            outs[i] = invoke(lam, name, {"__e2e": "whoami", "seconds": 3})
        except ClientError as e:
            outs[i] = e

    threads = [threading.Thread(target=call, args=(i, n), daemon=True) for i, n in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    throttled = [o for o in outs if isinstance(o, ClientError)]
    assert len(throttled) == 1, outs
    ok = [o for o in outs if not isinstance(o, ClientError)]
    assert ok[0].function_error is None, ok[0].describe()
    err = throttled[0].response
    assert err["Error"]["Code"] == "TooManyRequestsException" and err.get("Reason") == "ConcurrentInvocationLimitExceeded", err
    assert invoke_ok(lam, a, {"after": 1}).json() == {"after": 1}


@pytest.mark.skipif(not is_root(), reason="needs root: the idle sandbox is watched from the host by its uid")
def test_idle_sandbox_is_destroyed_after_the_idle_timeout(limited):
    lam = limited.client()
    lg = lang("python")
    name = unique_name("idle")
    create_fn(lam, name, zip_bytes=lg.zip(), runtime=lg.runtime, handler=lg.handler)
    first = invoke_ok(lam, name, {"__e2e": "whoami"})
    uid = first.json()["uid"]
    assert first.cold and processes_of_uid(uid, limited), "no sandbox process after the first invocation"
    gone = wait_until(lambda: not processes_of_uid(uid, limited), timeout=60, interval=0.5)
    assert gone, f"the idle sandbox (uid {uid}) outlived idle_timeout_secs = 1"
    after = invoke_ok(lam, name, {"__e2e": "whoami"})
    assert after.cold and after.json()["boot"] != first.json()["boot"], after.describe()


# ---------------------------------------------------------------------------
# provided: the function's own bootstrap


def test_provided_bootstrap_that_exits_during_init(lam):
    for code, why in ((3, "Runtime exited with error: exit status 3"), (0, "Runtime exited without providing a reason")):
        name = unique_name(f"provided-exit{code}")
        z = make_zip({"bootstrap": f"#!/bin/sh\necho 'bootstrap giving up {code}'\nexit {code}\n"},
                     modes={"bootstrap": 0o755})
        create_fn(lam, name, zip_bytes=z, runtime="provided.al2023", handler="none")
        inv, body = invoke_error(lam, name, {"x": 1})
        assert body == {"errorType": "Runtime.ExitError", "errorMessage": f"RequestId: {inv.request_id} Error: {why}"}, body
        assert f"bootstrap giving up {code}" in inv.log, inv.log


# ---------------------------------------------------------------------------
# Environment and context


@pytest.mark.parametrize("key", LANGS)
def test_environment(lam, apps, key):
    lg, name = apps.get(key)
    env = invoke_ok(lam, name, {"__e2e": "env"}).json()
    missing = [k for k in LAMBDA_ENV if k not in env]
    assert not missing, f"missing from the runtime's environment: {missing}\n{json.dumps(env, indent=1)}"
    for k, v in USER_ENV.items():
        assert env.get(k) == v, (k, env.get(k))
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:9001"
    assert env["_HANDLER"] == lg.handler
    assert env["LAMBDA_TASK_ROOT"] == "/var/task"
    assert env["LAMBDA_RUNTIME_DIR"] == "/var/runtime"
    assert env["AWS_EXECUTION_ENV"] == f"AWS_Lambda_{lg.runtime}"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert re.match(r"^\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}$", env["AWS_LAMBDA_LOG_STREAM_NAME"]), env
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_REGION"] == REGION and env["AWS_DEFAULT_REGION"] == REGION
    assert env["TZ"] == ":UTC"
    assert env["LANG"] and env["LD_LIBRARY_PATH"]
    assert "/usr/bin" in env["PATH"].split(":") or "/usr/bin/" in env["PATH"].split(":"), env["PATH"]
    assert "PYTHONDONTWRITEBYTECODE" not in env
    # Nothing leaks from the daemon's own environment.
    for leak in ("RUST_BACKTRACE", "NO_COLOR", "HOME_E2E_NEVER", "VIRTUAL_ENV", "PYTEST_CURRENT_TEST"):
        assert leak not in env, f"{leak} leaked into the sandbox"


@pytest.mark.parametrize("key", LANGS)
def test_configuration_update_reaches_the_runtime(lam, key):
    """Updating a function retires its warm sandbox: the next invocation
    starts a new one with the new configuration."""
    lg = lang(key)
    name = unique_name(f"envupd-{key}")
    create_fn(lam, name, zip_bytes=lg.zip(), runtime=lg.runtime, handler=lg.handler,
              Environment={"Variables": {"STAGE": "one"}})
    env = invoke_ok(lam, name, {"__e2e": "env"}).json()
    assert env["STAGE"] == "one" and env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert not invoke_ok(lam, name, {"w": 1}).cold
    lam.update_function_configuration(FunctionName=name, MemorySize=256, Environment={"Variables": {"STAGE": "two"}})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    inv = invoke_ok(lam, name, {"__e2e": "env"})
    assert inv.cold, f"the sandbox of the old configuration was reused:\n{inv.log}"
    env = inv.json()
    assert env["STAGE"] == "two" and env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256", env
    assert_log_frame(inv, memory_mb=256)


@pytest.mark.parametrize("key", LANGS)
def test_context_and_client_context(lam, apps, key):
    _, name = apps.get(key)
    inv = invoke_ok(lam, name, {"__e2e": "context"})
    ctx = inv.json()
    assert ctx["aws_request_id"] == inv.request_id
    assert ctx["function_name"] == name
    assert ctx["function_version"] == "$LATEST"
    assert ctx["memory_limit_in_mb"] == "128"
    assert ctx["invoked_function_arn"] == arn(name)
    assert ctx["log_group_name"] == f"/aws/lambda/{name}"
    assert 0 < ctx["remaining_ms"] <= 30_000, ctx
    assert ctx["client_context"] is None, ctx

    cc = {
        "custom": {"k": "v", "n": 1, "ü": "✓"},
        "env": {"platform": "e2e", "locale": "en_US"},
        "client": {"installation_id": "inst-1", "app_title": "Hearth e2e", "app_version_name": "1.0",
                   "app_version_code": "1", "app_package_name": "dev.hearth.e2e"},
    }
    b64 = base64.b64encode(json.dumps(cc).encode()).decode()
    got = invoke_ok(lam, name, {"__e2e": "context"}, client_context=b64).json()["client_context"]
    assert got is not None, "the client context did not reach the handler"
    assert got["custom"] == cc["custom"], got
    assert got["env"] == cc["env"], got
    assert got["client"] == cc["client"], got
    expect_error(lam.invoke, FunctionName=name, ClientContext="not base64 json!", Payload=b"{}",
                 code="InvalidParameterValueException", status=400)


# ---------------------------------------------------------------------------
# What the Invoke API refuses, and DryRun


def test_dry_run_event_and_refused_payloads(hearth, lam, apps):
    _, name = apps.get("python")
    dry = lam.invoke(FunctionName=name, InvocationType="DryRun", Payload=b'{"a": 1}')
    assert dry["StatusCode"] == 204, dry
    assert dry["Payload"].read() == b""
    assert "FunctionError" not in dry

    # Event is accepted (test_events.py covers it); bad input still is not.
    event = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    assert event["StatusCode"] == 202, event

    for bad in (b"{not json", b"{\"a\": 1", b"\xff\xfe\x00", b"nul"):
        expect_error(lam.invoke, FunctionName=name, Payload=bad, code="InvalidRequestContentException", status=400)

    big = json.dumps({"data": "a" * (SIX_MB + 16)}).encode()
    expect_error(hearth.client(read_timeout=300).invoke, FunctionName=name, Payload=big,
                 code="RequestTooLargeException", status=413)

    missing = unique_name("missing")
    err = expect_error(lam.invoke, FunctionName=missing, Payload=b"{}", code="ResourceNotFoundException", status=404)
    assert err["Error"]["Message"] == f"Function not found: {arn(missing)}", err
    # Still healthy.
    assert invoke_ok(lam, name, {"after": "refusals"}).json() == {"after": "refusals"}


# ---------------------------------------------------------------------------
# The hearth CLI: invoke and logs


def test_cli_invoke(hearth, lam, tmp_path):
    lg = lang("python")
    name = unique_name("cli-inv")
    create_fn(lam, name, zip_bytes=lg.zip(), runtime=lg.runtime, handler=lg.handler, Publish=True)

    cp = hearth.cli("invoke", name, "--payload", '{"a": "ü", "n": [1, 2]}', "--tail")
    assert json.loads(cp.stdout) == {"a": "ü", "n": [1, 2]}, cp.stdout
    assert "START RequestId: " in cp.stderr and "END RequestId: " in cp.stderr, cp.stderr
    assert "REPORT RequestId: " in cp.stderr, cp.stderr

    f = tmp_path / "payload.json"
    f.write_text(json.dumps({"from": "file"}))
    cp = hearth.cli("invoke", name, "--payload", f"@{f}")
    assert json.loads(cp.stdout) == {"from": "file"}, cp.stdout
    assert "START RequestId" not in cp.stderr  # no --tail, no log

    cp = hearth.cli("invoke", name, "--qualifier", "1", "--payload", '{"__e2e": "version"}')
    assert json.loads(cp.stdout) == {"mark": "unversioned", "env_version": "1"}, cp.stdout

    cp = hearth.cli("invoke", name, "--payload", '{"__e2e": "raise", "message": "cli boom"}', check=False)
    assert cp.returncode == 1, (cp.returncode, cp.stdout, cp.stderr)
    body = json.loads(cp.stdout)
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "cli boom", body

    cp = hearth.cli("invoke", unique_name("missing"), "--payload", "{}", check=False)
    assert cp.returncode != 0


def test_cli_logs(hearth, lam):
    lg = lang("python")
    name = unique_name("cli-logs")
    create_fn(lam, name, zip_bytes=lg.zip(), runtime=lg.runtime, handler=lg.handler)
    marker = unique_name("logged")
    inv = invoke_ok(lam, name, {"__e2e": "print", "lines": [marker]})

    # Log events are stored asynchronously (as CloudWatch's are): poll, bounded.
    start_line = f"START RequestId: {inv.request_id} Version: $LATEST"
    out = wait_until(lambda: (lambda o: o if f"REPORT RequestId: {inv.request_id}" in o else "")(
        hearth.cli("logs", name).stdout), timeout=20, interval=0.5) or hearth.cli("logs", name).stdout
    assert f"START RequestId: {inv.request_id} Version: $LATEST" in out, out
    assert marker in out, out
    assert f"END RequestId: {inv.request_id}" in out, out
    assert f"REPORT RequestId: {inv.request_id}" in out, out
    assert out.index("START RequestId") < out.index(marker) < out.index(f"END RequestId: {inv.request_id}")

    # --follow prints what comes later, until stopped.
    env = {"HEARTH_ENDPOINT": hearth.endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([str(hearth_bin()), "logs", name, "--follow"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    seen: list[str] = []
    later = unique_name("later")
    found = threading.Event()

    def read():
        for line in proc.stdout:  # ends when the process is killed
            seen.append(line)
            if later in line:
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert wait_until(lambda: any(marker in s for s in seen), timeout=30, interval=0.1), \
            f"`hearth logs --follow` did not start with the stored events:\n{''.join(seen)}"
        invoke_ok(lam, name, {"__e2e": "print", "lines": [later]})
        assert found.wait(timeout=30), f"`hearth logs --follow` did not print the new line:\n{''.join(seen)}"
        assert proc.poll() is None, "hearth logs --follow exited on its own"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        reader.join(timeout=10)

    cp = hearth.cli("logs", unique_name("missing"), check=False)
    assert cp.returncode != 0

    # NAME:QUALIFIER keeps the lines that version wrote.
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    in_v1 = unique_name("in-v1")
    v1 = invoke_ok(lam, name, {"__e2e": "print", "lines": [in_v1]}, qualifier="1")

    def logs_of(qualified: str, needle: str) -> str:
        return wait_until(lambda: (lambda o: o if needle in o else "")(hearth.cli("logs", qualified).stdout),
                          timeout=20, interval=0.5) or hearth.cli("logs", qualified).stdout

    out1 = logs_of(f"{name}:1", f"REPORT RequestId: {v1.request_id}")
    assert f"START RequestId: {v1.request_id} Version: 1" in out1 and in_v1 in out1, out1
    assert marker not in out1 and later not in out1, out1
    assert logs_of(f"{name}:live", in_v1) == out1
    latest = logs_of(f"{name}:$LATEST", later)
    assert marker in latest and later in latest and in_v1 not in latest, latest
    everything = hearth.cli("logs", name).stdout
    assert marker in everything and in_v1 in everything, everything
    cp = hearth.cli("logs", f"{name}:7", check=False)
    assert cp.returncode != 0 and "ResourceNotFoundException" in cp.stderr, (cp.stdout, cp.stderr)
