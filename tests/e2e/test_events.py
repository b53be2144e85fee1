"""Asynchronous invocation (issue 6): `InvocationType=Event` through boto3,
event-invoke configs, retries, destinations, the dead-letter store,
deferral within an execution window, and durability across kill -9.

One server runs the module with short retry back-offs (`[events]
retry_delays_secs = [1, 2]`, throttle back-off 0.2–1 s) so that a retried
event takes seconds, not minutes; the back-off arithmetic itself (about one
minute, then two) is unit-tested in `hearth-pool` with a fake clock.

What ran is read from the functions' logs: `events_app.py` prints one
`EVENT {...}` line per invocation with its event, request id and start time.
No assertion is on a duration except lower bounds the scheduler guarantees
(a deferred event with nothing warm never runs before its window's closing
stretch). Every wait is bounded; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from botocore.exceptions import ClientError

from hearth_e2e import (
    FUNCTIONS_DIR,
    HearthServer,
    create_fn,
    expect_error,
    make_zip,
    nonce,
    unique_name,
    wait_until,
)

APP = (FUNCTIONS_DIR / "events_app.py").read_text()
HANDLER = "events_app.handler"
RUN_TIMEOUT_S = 60        # an accepted event running
RETRIES_TIMEOUT_S = 90    # three attempts and a destination delivery
AGE_TIMEOUT_S = 120       # a 60 s MaximumEventAgeInSeconds running out

CONFIG = """
[events]
retry_delays_secs = [1, 2]
throttle_min_ms = 200
throttle_max_ms = 1000
poll_ms = 100
"""


@pytest.fixture(scope="module")
def srv(start_server) -> HearthServer:
    return start_server(name=unique_name("events"), config=CONFIG)


@pytest.fixture(scope="module")
def lam(srv: HearthServer):
    return srv.client()


@pytest.fixture(scope="module")
def lam_raw(srv: HearthServer):
    """A client without botocore's parameter validation (out-of-range values reach the server)."""
    return srv.client(parameter_validation=False)


def events_zip() -> bytes:
    return make_zip({"events_app.py": APP + f"\n# {nonce()}\n"})


def make_fn(lam, **kw) -> str:
    name = unique_name("ev")
    create_fn(lam, name, zip_bytes=events_zip(), handler=HANDLER, **kw)
    return name


def arn_of(lam, name: str) -> str:
    return lam.get_function_configuration(FunctionName=name)["FunctionArn"]


def event_lines(srv: HearthServer, name: str) -> list[dict]:
    """Every `EVENT` line of the function's stored log, oldest first."""
    r = srv.raw("GET", f"/hearth/v1/functions/{name}/logs?limit=10000")
    assert r.status == 200, (r.status, r.body[:500])
    out = []
    for e in r.json()["Events"]:
        for line in e["Message"].splitlines():
            if line.startswith("EVENT "):
                out.append(json.loads(line[len("EVENT "):]))
    return out


def send_event(lam, name: str, payload: object, **kw) -> str:
    """boto3 Event invoke: 202 and an empty body; returns the request id."""
    r = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(payload).encode(), **kw)
    assert r["StatusCode"] == 202, r
    assert r["Payload"].read() == b""
    return r["ResponseMetadata"]["RequestId"]


def send_deferred(srv: HearthServer, name: str, payload: object, window_s: int) -> str:
    """A signed raw Event invoke carrying X-Hearth-Execution-Window."""
    r = srv.raw(
        "POST", f"/2015-03-31/functions/{name}/invocations", json.dumps(payload),
        headers={"X-Amz-Invocation-Type": "Event", "X-Hearth-Execution-Window": str(window_s),
                 "Content-Type": "application/json"},
    )
    assert r.status == 202, (r.status, r.body[:500])
    return r.header("x-amzn-RequestId")


def runs_of(srv: HearthServer, name: str, rid: str) -> list[dict]:
    return [l for l in event_lines(srv, name) if l["rid"] == rid]


def records(srv: HearthServer, dest: str) -> list[dict]:
    """Invocation records a destination function received."""
    return [l["event"] for l in event_lines(srv, dest) if isinstance(l["event"], dict) and "requestContext" in l["event"]]


def record_for(srv: HearthServer, dest: str, rid: str) -> dict | None:
    for r in records(srv, dest):
        if r["requestContext"]["requestId"] == rid:
            return r
    return None


# ---------------------------------------------------------------------------
# Acceptance


def test_event_is_accepted_with_202_and_runs(srv, lam):
    name = make_fn(lam)
    rid = send_event(lam, name, {"id": "a1"})
    runs = wait_until(lambda: runs_of(srv, name, rid), RUN_TIMEOUT_S, what="the event to run")
    assert runs[0]["event"] == {"id": "a1"}
    # Lambda's context sees the same request id the 202 carried.
    assert runs[0]["rid"] == rid


def test_event_payload_limits_and_errors(srv, lam):
    name = make_fn(lam)
    big = json.dumps("x" * (256 * 1024)).encode()
    err = expect_error(lam.invoke, FunctionName=name, InvocationType="Event", Payload=big,
                       code="RequestTooLargeException", status=413)
    assert "Event" in err["Error"]["Message"]
    expect_error(lam.invoke, FunctionName=name, InvocationType="Event", Payload=b"{nope",
                 code="InvalidRequestContentException", status=400)
    expect_error(lam.invoke, FunctionName=unique_name("missing"), InvocationType="Event", Payload=b"{}",
                 code="ResourceNotFoundException", status=404)
    r = srv.raw("POST", f"/2015-03-31/functions/{name}/invocations", "{}",
                headers={"X-Amz-Invocation-Type": "Event", "X-Hearth-Execution-Window": "soon"})
    assert r.status == 400 and r.header("X-Amzn-ErrorType") == "InvalidParameterValueException", r.body


# ---------------------------------------------------------------------------
# Event-invoke configs


def test_event_invoke_config_lifecycle(srv, lam, lam_raw):
    name = make_fn(lam)
    expect_error(lam.get_function_event_invoke_config, FunctionName=name,
                 code="ResourceNotFoundException", status=404,
                 message_contains="doesn't have an EventInvokeConfig")
    r = lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    assert r["MaximumRetryAttempts"] == 0
    assert "MaximumEventAgeInSeconds" not in r
    assert r["FunctionArn"].endswith(f":function:{name}:$LATEST")
    assert r["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    assert r["LastModified"].year >= 2024
    # Put replaces the whole config; Update merges.
    r = lam.put_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=60)
    assert "MaximumRetryAttempts" not in r and r["MaximumEventAgeInSeconds"] == 60
    r = lam.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    assert r["MaximumRetryAttempts"] == 1 and r["MaximumEventAgeInSeconds"] == 60
    got = lam.get_function_event_invoke_config(FunctionName=name)
    assert got["MaximumRetryAttempts"] == 1 and got["MaximumEventAgeInSeconds"] == 60
    lam.publish_version(FunctionName=name)
    expect_error(lam.get_function_event_invoke_config, FunctionName=name, Qualifier="1",
                 code="ResourceNotFoundException", status=404)
    lam.put_function_event_invoke_config(FunctionName=name, Qualifier="1", MaximumEventAgeInSeconds=120)
    listed = lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    assert sorted(c["FunctionArn"].rsplit(":", 1)[1] for c in listed) == ["$LATEST", "1"]
    lam.delete_function_event_invoke_config(FunctionName=name)
    expect_error(lam.get_function_event_invoke_config, FunctionName=name, code="ResourceNotFoundException")
    listed = lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    assert [c["FunctionArn"].rsplit(":", 1)[1] for c in listed] == ["1"]

    # Bad input: Lambda's errors, nothing stored.
    expect_error(lam_raw.put_function_event_invoke_config, FunctionName=name, MaximumRetryAttempts=3,
                 code="ValidationException", status=400, message_contains="maximumRetryAttempts")
    expect_error(lam_raw.put_function_event_invoke_config, FunctionName=name, MaximumEventAgeInSeconds=59,
                 code="ValidationException", status=400, message_contains="maximumEventAgeInSeconds")
    expect_error(lam.put_function_event_invoke_config, FunctionName=name,
                 code="InvalidParameterValueException", status=400,
                 message="You must specify at least one of error handling or destination setting.")
    expect_error(lam.put_function_event_invoke_config, FunctionName=unique_name("missing"),
                 MaximumRetryAttempts=1, code="ResourceNotFoundException", status=404,
                 message="The function doesn't exist.")
    own = arn_of(lam, name)
    expect_error(lam.put_function_event_invoke_config, FunctionName=name,
                 DestinationConfig={"OnFailure": {"Destination": own}},
                 code="InvalidParameterValueException",
                 message="You can't specify the function as a destination for itself.")
    gone = own.rsplit(":", 1)[0] + ":" + unique_name("nope")
    expect_error(lam.put_function_event_invoke_config, FunctionName=name,
                 DestinationConfig={"OnSuccess": {"Destination": gone}},
                 code="InvalidParameterValueException", message=f"The destination ARN {gone} is invalid.")
    sqs = f"arn:aws:sqs:us-east-1:000000000000:{unique_name('q')}"
    expect_error(lam.put_function_event_invoke_config, FunctionName=name,
                 DestinationConfig={"OnSuccess": {"Destination": sqs}},
                 code="InvalidParameterValueException", message_contains="is invalid")
    expect_error(lam.get_function_event_invoke_config, FunctionName=name, code="ResourceNotFoundException")
    # Deleting the function deletes its configs.
    lam.delete_function(FunctionName=name)
    lam2 = make_fn(lam)
    expect_error(lam.get_function_event_invoke_config, FunctionName=lam2, code="ResourceNotFoundException")


# ---------------------------------------------------------------------------
# Retries, destinations, dead letters


def test_failing_event_is_attempted_three_times_then_reaches_on_failure(srv, lam):
    name = make_fn(lam)
    dest = make_fn(lam)
    lam.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnFailure": {"Destination": arn_of(lam, dest)}})
    payload = {"id": "f1", "fail": True}
    rid = send_event(lam, name, payload)
    rec = wait_until(lambda: record_for(srv, dest, rid), RETRIES_TIMEOUT_S, what="the OnFailure record")
    runs = runs_of(srv, name, rid)
    assert len(runs) == 3, runs  # 1 + MaximumRetryAttempts (default 2), same request id
    assert [r["event"] for r in runs] == [payload] * 3
    assert rec["version"] == "1.0"
    assert rec["requestContext"] == {
        "requestId": rid,
        "functionArn": arn_of(lam, name) + ":$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    assert rec["requestPayload"] == payload
    assert rec["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert rec["responsePayload"]["errorType"] == "RuntimeError"
    assert rec["responsePayload"]["errorMessage"] == "intentional failure f1"
    assert rec["timestamp"].endswith("Z")
    # The failed event is also in the function's dead-letter store.
    out = srv.cli("dlq", name, "--json").stdout
    letters = json.loads(out)["DeadLetters"]
    assert [(d["RequestId"], d["Condition"], d["ApproximateInvokeCount"]) for d in letters] == \
        [(rid, "RetriesExhausted", 3)]
    assert json.loads(letters[0]["Payload"]) == payload
    # Attempts are never more than 1 + retries, even given more time.
    time.sleep(3)
    assert len(runs_of(srv, name, rid)) == 3


def test_zero_retries_means_one_attempt(srv, lam):
    name = make_fn(lam)
    dest = make_fn(lam)
    lam.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": arn_of(lam, dest)}})
    rid = send_event(lam, name, {"id": "z1", "fail": True})
    rec = wait_until(lambda: record_for(srv, dest, rid), RETRIES_TIMEOUT_S, what="the OnFailure record")
    assert rec["requestContext"]["approximateInvokeCount"] == 1
    assert rec["requestContext"]["condition"] == "RetriesExhausted"
    assert len(runs_of(srv, name, rid)) == 1


def test_on_success_destination_receives_the_record(srv, lam):
    name = make_fn(lam)
    dest = make_fn(lam)
    lam.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": arn_of(lam, dest)}})
    rid = send_event(lam, name, {"id": "s1"})
    rec = wait_until(lambda: record_for(srv, dest, rid), RUN_TIMEOUT_S, what="the OnSuccess record")
    assert rec["requestContext"]["condition"] == "Success"
    assert rec["requestContext"]["approximateInvokeCount"] == 1
    assert rec["requestPayload"] == {"id": "s1"}
    assert rec["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert rec["responsePayload"] == {"ok": "s1"}
    assert srv.cli("dlq", name, "--json").stdout.strip() == '{"DeadLetters":[]}'


def test_too_old_event_goes_to_the_dead_letter_store_and_redrives(srv, lam):
    name = make_fn(lam)
    dest = make_fn(lam)
    # Reserved concurrency 0 throttles every attempt: the event waits until
    # its age (the minimum, 60 s) runs out.
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    lam.put_function_event_invoke_config(
        FunctionName=name, MaximumEventAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": arn_of(lam, dest)}})
    rid = send_event(lam, name, {"id": "old1"})
    rec = wait_until(lambda: record_for(srv, dest, rid), AGE_TIMEOUT_S, what="the EventAgeExceeded record")
    assert rec["requestContext"]["condition"] == "EventAgeExceeded"
    assert rec["requestContext"]["approximateInvokeCount"] == 0
    assert runs_of(srv, name, rid) == []
    table = srv.cli("dlq", name).stdout
    assert rid in table and "EventAgeExceeded" in table
    # Redrive once the function can run: the event runs, the store empties.
    lam.delete_function_concurrency(FunctionName=name)
    out = srv.cli("dlq", name, "--redrive").stdout
    assert "re-queued 1 event" in out
    runs = wait_until(lambda: runs_of(srv, name, rid), RUN_TIMEOUT_S, what="the redriven event to run")
    assert runs[0]["event"] == {"id": "old1"}
    assert json.loads(srv.cli("dlq", name, "--json").stdout)["DeadLetters"] == []
    m = srv.metrics()
    assert m.value("hearth_events_dead_lettered_total", condition="EventAgeExceeded") >= 1
    assert m.value("hearth_event_retries_total", cause="throttled") >= 1


def test_deleting_a_function_discards_its_pending_events(srv, lam):
    name = make_fn(lam)
    # Throttled (reserved concurrency 0): the event waits in the queue,
    # retried every second at most (this module's throttle back-off).
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    rid = send_event(lam, name, {"id": "orphan"})
    wait_until(lambda: srv.metrics().value("hearth_event_retries_total", cause="throttled") >= 1, 30,
               what="the event to be throttled at least once")
    lam.delete_function(FunctionName=name)
    # A new function of the same name never sees the old event (Lambda
    # discards it), though the back-off would have let it run by now.
    create_fn(lam, name, zip_bytes=events_zip(), handler=HANDLER)
    time.sleep(3)
    assert runs_of(srv, name, rid) == []
    assert json.loads(srv.cli("dlq", name, "--json").stdout)["DeadLetters"] == []


# ---------------------------------------------------------------------------
# Deferral


def test_deferred_event_waits_while_the_function_is_busy_then_runs_warm(srv, lam):
    name = make_fn(lam, Timeout=30)
    # One warm sandbox, then hold it with a synchronous invocation.
    first = lam.invoke(FunctionName=name, Payload=json.dumps({"id": "warm"}).encode())
    assert first["StatusCode"] == 200
    boot = wait_until(lambda: event_lines(srv, name), 30, what="the first run's log")[-1]["boot"]
    blocker_done = threading.Event()
    blocker: list = []

    def block() -> None:
        try:
            r = lam.invoke(FunctionName=name, Payload=json.dumps({"id": "block", "sleep": 8}).encode())
            blocker.append((r["StatusCode"], r.get("FunctionError"), r["Payload"].read()))
        finally:
            blocker_done.set()

    # The blocker is placed on the warm sandbox when the node's warm
    # placements count goes up (its log line shows only when it ends).
    warm_before = srv.metrics().get("hearth_placements_total", source="warm") or 0
    t = threading.Thread(target=block, daemon=True)
    t.start()
    wait_until(lambda: (srv.metrics().get("hearth_placements_total", source="warm") or 0) > warm_before, 30,
               what="the blocking invocation to take the warm sandbox")
    accepted = time.time()
    rid = send_deferred(srv, name, {"id": "d1"}, window_s=40)
    # While the only warm sandbox is busy, the deferred event does not
    # acquire capacity of its own (its window is far from closing).
    time.sleep(2)
    assert not blocker_done.is_set(), f"the blocker ended too soon for this check: {blocker}"
    assert runs_of(srv, name, rid) == []
    t.join(timeout=60)
    runs = wait_until(lambda: runs_of(srv, name, rid), 40, what="the deferred event to run")
    # It ran on the function's warm sandbox, within its window.
    assert runs[0]["boot"] == boot
    assert runs[0]["t"] < accepted + 40
    assert srv.metrics().value("hearth_event_deferrals_total", outcome="early-warm") >= 1


def test_deferred_event_with_nothing_warm_runs_as_its_window_closes(srv, lam):
    name = make_fn(lam)
    accepted = time.time()
    rid = send_deferred(srv, name, {"id": "late"}, window_s=6)
    runs = wait_until(lambda: runs_of(srv, name, rid), 40, what="the deferred event to run")
    # Nothing warm for it: it waited for its window's closing stretch (the
    # last 2 s of 6), acquiring no capacity before.
    assert runs[0]["t"] >= accepted + 3.5
    assert srv.metrics().value("hearth_event_deferrals_total", outcome="window-closing") >= 1


def test_function_level_execution_window(srv, lam):
    name = make_fn(lam)
    r = srv.raw("PUT", f"/2019-09-25/functions/{name}/event-invoke-config",
                json.dumps({"HearthExecutionWindowInSeconds": 6}), headers={"Content-Type": "application/json"})
    assert r.status == 200, r.body
    assert r.json()["HearthExecutionWindowInSeconds"] == 6
    accepted = time.time()
    rid = send_event(lam, name, {"id": "fw"})
    runs = wait_until(lambda: runs_of(srv, name, rid), 40, what="the event to run")
    assert runs[0]["t"] >= accepted + 3.5


# ---------------------------------------------------------------------------
# Durability


def test_kill9_with_events_queued_and_in_flight_loses_none(start_server):
    srv = start_server(name=unique_name("evcrash"), config=CONFIG + "workers = 1\n")
    lam = srv.client()
    name = make_fn(lam, Timeout=30)
    dest = make_fn(lam)
    lam.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": arn_of(lam, dest)}})
    rids = [send_event(lam, name, {"id": f"c{i}", "sleep": 2}) for i in range(8)]
    # One worker: the first event is in flight, the others queued.
    wait_until(lambda: event_lines(srv, name), RUN_TIMEOUT_S, what="the first event to start")
    srv.kill9()
    srv.restart()
    lam = srv.client()

    def all_delivered():
        got = {r["requestContext"]["requestId"]: r for r in records(srv, dest)}
        return got if all(rid in got for rid in rids) else None

    got = wait_until(all_delivered, 120, what="every accepted event to run and be recorded")
    for rid in rids:
        # Reported as succeeded only if it ran.
        assert runs_of(srv, name, rid), f"{rid} was reported without running"
        assert got[rid]["requestContext"]["condition"] == "Success"
    # The one in flight at the kill ran again, and its count says so.
    counts = sorted(got[rid]["requestContext"]["approximateInvokeCount"] for rid in rids)
    assert counts[-1] >= 2, counts
