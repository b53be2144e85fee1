"""CloudWatch Logs over Hearth's log store (issue 13), driven by boto3's
`logs` client: each function's log group `/aws/lambda/<name>`, one stream per
sandbox or VM named as Lambda names them, DescribeLogGroups/Streams with
prefixes and paging, GetLogEvents with time bounds and tokens,
FilterLogEvents with plain-text patterns, retention, deletion, isolation
between accounts, and errors in the JSON protocol's shape. A line is
readable as soon as its invocation has answered.
"""

from __future__ import annotations

import json
import re
import time

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from hearth_e2e import DEV_KEY, DEV_SECRET, REGION, create_fn, invoke_ok, make_zip, unique_name

APP = '''
def handler(event, context):
    print("marker-" + event.get("tag", "none"), "request", context.aws_request_id)
    return event
'''
STREAM_RE = re.compile(r"^\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}$")


def logs_client(server, account: dict | None = None):
    key, secret = (account["AccessKeyId"], account["SecretAccessKey"]) if account else (DEV_KEY, DEV_SECRET)
    return boto3.session.Session().client(
        "logs", endpoint_url=server.endpoint, region_name=REGION,
        aws_access_key_id=key, aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 0}),
    )


def error_of(call, **kw) -> tuple[str, int]:
    with pytest.raises(ClientError) as e:
        call(**kw)
    r = e.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def fn(lam):
    name = unique_name("cwl")
    create_fn(lam, name, handler="app.handler", zip_bytes=make_zip({"app.py": APP}))
    return name


def streams_of(logs, name: str) -> list[dict]:
    return logs.describe_log_streams(logGroupName=f"/aws/lambda/{name}")["logStreams"]


def test_a_line_is_readable_as_soon_as_its_invocation_answered(hearth, lam, fn):
    logs = logs_client(hearth)
    for i in range(5):
        inv = invoke_ok(lam, fn, {"tag": f"t{i}"}, tail=False)
        # No sleep, no retry: the invocation has answered, so its lines are there.
        (stream,) = streams_of(logs, fn)
        assert STREAM_RE.match(stream["logStreamName"]), stream
        events = logs.get_log_events(logGroupName=f"/aws/lambda/{fn}", logStreamName=stream["logStreamName"])["events"]
        messages = [e["message"] for e in events]
        assert f"START RequestId: {inv.request_id} Version: $LATEST" in messages, messages
        assert any(m.startswith(f"REPORT RequestId: {inv.request_id}") for m in messages), messages
        assert f"marker-t{i} request {inv.request_id}" in messages, messages


def test_groups_streams_paging_and_tokens(hearth, lam):
    logs = logs_client(hearth)
    stem = unique_name("cwlpage")
    names = [f"{stem}-{i}" for i in range(3)]
    for n in names:
        create_fn(lam, n, handler="app.handler", zip_bytes=make_zip({"app.py": APP}))
        invoke_ok(lam, n, {"tag": "x"})
    page = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{stem}", limit=2)
    assert [g["logGroupName"] for g in page["logGroups"]] == [f"/aws/lambda/{n}" for n in names[:2]]
    assert page["nextToken"]
    rest = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{stem}", limit=2, nextToken=page["nextToken"])
    assert [g["logGroupName"] for g in rest["logGroups"]] == [f"/aws/lambda/{names[2]}"]
    assert "nextToken" not in rest
    g = rest["logGroups"][0]
    assert g["arn"].endswith(f":log-group:/aws/lambda/{names[2]}:*") and g["creationTime"] > 0
    # A paginator walks every group the dev account has, this test's among them.
    seen = [x["logGroupName"] for p in logs.get_paginator("describe_log_groups").paginate(PaginationConfig={"PageSize": 2})
            for x in p["logGroups"]]
    assert all(f"/aws/lambda/{n}" in seen for n in names)

    # An update retires the sandbox: the next invocation writes a new stream.
    n = names[0]
    lam.update_function_configuration(FunctionName=n, Environment={"Variables": {"V": "2"}})
    lam.get_waiter("function_updated_v2").wait(FunctionName=n)
    for i in range(3):
        invoke_ok(lam, n, {"tag": f"after{i}"})
    streams = streams_of(logs, n)
    assert len(streams) == 2, streams
    newest = logs.describe_log_streams(logGroupName=f"/aws/lambda/{n}", orderBy="LastEventTime",
                                       descending=True, limit=1)["logStreams"][0]
    assert newest["lastEventTimestamp"] >= max(s["lastEventTimestamp"] for s in streams)
    # GetLogEvents forward from the head, page by page, until the token repeats.
    got, token = [], None
    for _ in range(50):
        kw = {"nextToken": token} if token else {"startFromHead": True}
        r = logs.get_log_events(logGroupName=f"/aws/lambda/{n}", logStreamName=newest["logStreamName"], limit=2, **kw)
        got += [e["message"] for e in r["events"]]
        if r["nextForwardToken"] == token:
            break
        token = r["nextForwardToken"]
    assert [m.split(" request")[0] for m in got if m.startswith("marker-")] == [f"marker-after{i}" for i in range(3)], got
    assert sum(m.startswith("START ") for m in got) == 3
    # The newest two, without a token; then backward.
    tail = logs.get_log_events(logGroupName=f"/aws/lambda/{n}", logStreamName=newest["logStreamName"], limit=2)
    assert tail["events"][-1]["message"].startswith("REPORT ")
    back = logs.get_log_events(logGroupName=f"/aws/lambda/{n}", logStreamName=newest["logStreamName"], limit=2,
                               nextToken=tail["nextBackwardToken"])
    assert back["events"] and back["events"][-1]["timestamp"] <= tail["events"][0]["timestamp"]
    # Time bounds: nothing after now.
    later = int(time.time() * 1000) + 60_000
    assert logs.get_log_events(logGroupName=f"/aws/lambda/{n}", logStreamName=newest["logStreamName"],
                               startTime=later)["events"] == []


def test_filter_log_events(hearth, lam, fn):
    logs = logs_client(hearth)
    ids = {tag: invoke_ok(lam, fn, {"tag": tag}).request_id for tag in ("alpha", "beta", "alpha2")}
    r = logs.filter_log_events(logGroupName=f"/aws/lambda/{fn}", filterPattern="marker-alpha")
    assert [e["message"] for e in r["events"]] == [
        f"marker-alpha request {ids['alpha']}", f"marker-alpha2 request {ids['alpha2']}"]
    assert all(STREAM_RE.match(e["logStreamName"]) and e["eventId"] for e in r["events"])
    r = logs.filter_log_events(logGroupName=f"/aws/lambda/{fn}", filterPattern='"marker-alpha request" -alpha2')
    assert [e["message"] for e in r["events"]] == [f"marker-alpha request {ids['alpha']}"]
    # Paged one at a time, the paginator returns the same.
    pages = logs.get_paginator("filter_log_events").paginate(
        logGroupName=f"/aws/lambda/{fn}", filterPattern="START", PaginationConfig={"PageSize": 1})
    assert sum(len(p["events"]) for p in pages) == 3
    code, status = error_of(logs.filter_log_events, logGroupName=f"/aws/lambda/{fn}", filterPattern='{ $.x = 1 }')
    assert (code, status) == ("InvalidParameterException", 400)


def test_retention_and_deletion(hearth, lam, fn):
    logs = logs_client(hearth)
    invoke_ok(lam, fn, {"tag": "r"})
    group = f"/aws/lambda/{fn}"
    logs.put_retention_policy(logGroupName=group, retentionInDays=7)
    (g,) = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert g["retentionInDays"] == 7
    assert error_of(logs.put_retention_policy, logGroupName=group, retentionInDays=2) == ("InvalidParameterException", 400)
    logs.delete_retention_policy(logGroupName=group)
    assert "retentionInDays" not in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    logs.delete_log_group(logGroupName=group)
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"] == []
    assert error_of(logs.describe_log_streams, logGroupName=group) == ("ResourceNotFoundException", 400)
    assert error_of(logs.delete_log_group, logGroupName=group) == ("ResourceNotFoundException", 400)
    # The function's next invocation makes the group again, as on Lambda.
    invoke_ok(lam, fn, {"tag": "again"})
    assert len(streams_of(logs, fn)) == 1


def test_accounts_see_only_their_own_groups(hearth, lam, fn, second_account):
    invoke_ok(lam, fn, {"tag": "mine"})
    other = logs_client(hearth, second_account)
    assert other.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{fn}")["logGroups"] == []
    assert error_of(other.filter_log_events, logGroupName=f"/aws/lambda/{fn}") == ("ResourceNotFoundException", 400)
    assert error_of(other.delete_log_group, logGroupName=f"/aws/lambda/{fn}") == ("ResourceNotFoundException", 400)
    assert streams_of(logs_client(hearth), fn), "the owner's group is untouched"


def test_bad_input_gets_the_json_protocols_errors(hearth, fn):
    logs = logs_client(hearth)
    assert error_of(logs.describe_log_streams, logGroupName="/not/lambda") == ("ResourceNotFoundException", 400)
    assert error_of(logs.get_log_events, logGroupName=f"/aws/lambda/{fn}", logStreamName="nope") == \
        ("ResourceNotFoundException", 400)
    assert error_of(logs.describe_log_groups, limit=51)[0] in ("InvalidParameterException", "ParamValidationError")
    hdr = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Logs_20140328.DescribeLogGroups"}
    r = hearth.raw("POST", "/", b"{not json", service="logs", headers=hdr)
    assert r.status == 400 and json.loads(r.body)["__type"] == "SerializationException", r.body
    r = hearth.raw("POST", "/", b"{}", service="logs", headers={**hdr, "X-Amz-Target": "Logs_20140328.PutLogEvents"})
    assert r.status == 400 and json.loads(r.body)["__type"] == "UnknownOperationException", r.body
    r = hearth.raw("POST", "/", json.dumps({"limit": 0}), service="logs", headers=hdr)
    assert r.status == 400 and json.loads(r.body)["__type"] == "InvalidParameterException", r.body
