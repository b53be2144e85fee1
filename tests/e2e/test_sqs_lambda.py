"""SQS wired to Lambda (issue 13): asynchronous-invocation destinations
delivering real messages in Lambda's record shape, and SQS event source
mappings invoking a function with Lambda's SQS event — 1,000 messages
processed exactly once with partial batch failures retried — all through
boto3."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from hearth_e2e import REGION, create_fn, make_zip, unique_name, wait_until
from test_cwlogs import logs_client
from test_sqs import qname, sqs_client

FAILING = '''
def handler(event, context):
    raise ValueError("no good: " + str(event.get("n")))
'''

OK = '''
def handler(event, context):
    return {"echo": event}
'''

# Processes SQS batches: fails every message whose number is a multiple of
# 7 on its first receive (reported through batchItemFailures), prints one
# PROCESSED line per message it accepts.
BATCH = '''
import json

def handler(event, context):
    failures = []
    for r in event["Records"]:
        assert r["eventSource"] == "aws:sqs", r
        n = int(json.loads(r["body"])["n"])
        if n % 7 == 0 and r["attributes"]["ApproximateReceiveCount"] == "1":
            failures.append({"itemIdentifier": r["messageId"]})
            continue
        print("PROCESSED", n, r["messageId"])
    return {"batchItemFailures": failures}
'''

SEEN = '''
import json

def handler(event, context):
    print("EVENT", json.dumps(event))
    return {}
'''


@pytest.fixture(scope="module")
def sqs(hearth):
    return sqs_client(hearth)


def queue(sqs, **attrs) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=qname(), Attributes={k: str(v) for k, v in attrs.items()})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def receive_all(sqs, url: str, want: int, timeout: float = 30) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
    return got


def test_on_failure_destination_receives_a_real_message(lam, sqs):
    url, arn = queue(sqs)
    name = unique_name("dest-fail")
    create_fn(lam, name, handler="app.handler", zip_bytes=make_zip({"app.py": FAILING}))
    lam.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": arn}},
    )
    r = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": 41}))
    assert r["StatusCode"] == 202
    request_id = r["ResponseMetadata"]["RequestId"]
    got = receive_all(sqs, url, 1)
    assert len(got) == 1, "the failure record never arrived"
    record = json.loads(got[0]["Body"])
    assert record["version"] == "1.0"
    ctx = record["requestContext"]
    assert ctx["requestId"] == request_id
    assert ctx["condition"] == "RetriesExhausted"
    assert ctx["approximateInvokeCount"] == 1
    assert ctx["functionArn"].endswith(f":function:{name}:$LATEST")
    assert record["requestPayload"] == {"n": 41}
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert "no good: 41" in record["responsePayload"]["errorMessage"]


def test_on_success_destination_and_config_errors(lam, sqs):
    url, arn = queue(sqs)
    name = unique_name("dest-ok")
    create_fn(lam, name, handler="app.handler", zip_bytes=make_zip({"app.py": OK}))
    lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": arn}})
    cfg = lam.get_function_event_invoke_config(FunctionName=name)
    assert cfg["DestinationConfig"]["OnSuccess"]["Destination"] == arn
    lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"k": "v"}')
    got = receive_all(sqs, url, 1)
    assert len(got) == 1
    record = json.loads(got[0]["Body"])
    assert record["requestContext"]["condition"] == "Success"
    assert record["responsePayload"] == {"echo": {"k": "v"}}
    assert record["responseContext"]["statusCode"] == 200
    # A queue that does not exist, or another account's, is refused.
    for bad in (arn + "-missing", arn.replace(arn.split(":")[4], "999999999999")):
        with pytest.raises(ClientError) as e:
            lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnFailure": {"Destination": bad}})
        assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_mapping_crud_and_validation(lam, sqs, hearth, second_account):
    url, arn = queue(sqs)
    name = unique_name("esm-crud")
    create_fn(lam, name, handler="app.handler", zip_bytes=make_zip({"app.py": SEEN}))
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=5, Enabled=False)
    assert m["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert m["State"] == "Creating" and m["BatchSize"] == 5
    assert m["StateTransitionReason"] == "User action"
    assert m["EventSourceArn"] == arn and m["FunctionArn"].endswith(f":function:{name}")
    got = lam.get_event_source_mapping(UUID=m["UUID"])
    assert got["UUID"] == m["UUID"] and got["MaximumBatchingWindowInSeconds"] == 0
    assert got["State"] == "Disabled"
    listed = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert [x["UUID"] for x in listed] == [m["UUID"]]
    assert [x["UUID"] for x in lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]] == [m["UUID"]]
    upd = lam.update_event_source_mapping(UUID=m["UUID"], BatchSize=50, MaximumBatchingWindowInSeconds=2,
                                          FunctionResponseTypes=["ReportBatchItemFailures"])
    assert (upd["BatchSize"], upd["MaximumBatchingWindowInSeconds"], upd["FunctionResponseTypes"]) == (
        50, 2, ["ReportBatchItemFailures"])
    assert upd["State"] == "Updating"

    def code(call, **kw) -> str:
        with pytest.raises(ClientError) as e:
            call(**kw)
        return e.value.response["Error"]["Code"]

    assert code(lam.create_event_source_mapping, EventSourceArn=arn, FunctionName=name) == "ResourceConflictException"
    # Lambda's answers (aws-recorded): a missing function is a 400 here.
    assert code(lam.create_event_source_mapping, EventSourceArn=arn, FunctionName=name + "-nope") == "InvalidParameterValueException"
    assert code(lam.create_event_source_mapping, FunctionName=name) == "InvalidParameterValueException"
    assert code(lam.create_event_source_mapping, EventSourceArn=arn, FunctionName=name,
                DestinationConfig={"OnFailure": {"Destination": arn}}) == "InvalidParameterValueException"
    # The queue's visibility timeout (30 s) must cover the function's timeout.
    slow = unique_name("esm-slow")
    create_fn(lam, slow, handler="app.handler", zip_bytes=make_zip({"app.py": SEEN}), Timeout=60)
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=slow)
    assert e.value.response["Error"]["Message"] == (
        "Queue visibility timeout: 30 seconds is less than Function timeout: 60 seconds")
    assert code(lam.create_event_source_mapping, EventSourceArn=arn + "-nope", FunctionName=name) == "InvalidParameterValueException"
    assert code(lam.update_event_source_mapping, UUID=m["UUID"], MaximumBatchingWindowInSeconds=0) == "InvalidParameterValueException"
    assert code(lam.update_event_source_mapping, UUID=m["UUID"], BatchSize=20000) == "ValidationException"
    assert code(lam.get_event_source_mapping, UUID="00000000-0000-0000-0000-000000000000") == "ResourceNotFoundException"
    # Another account sees none of it and cannot map this account's queue.
    other = hearth.client(second_account["AccessKeyId"], second_account["SecretAccessKey"])
    assert code(other.get_event_source_mapping, UUID=m["UUID"]) == "ResourceNotFoundException"
    assert other.list_event_source_mappings()["EventSourceMappings"] == []
    # Nothing was stored by the refused calls.
    assert len(lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]) == 1
    d = lam.delete_event_source_mapping(UUID=m["UUID"])
    assert d["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert code(lam.get_event_source_mapping, UUID=m["UUID"]) == "ResourceNotFoundException"


def test_the_function_gets_lambdas_sqs_event(lam, sqs, hearth):
    url, arn = queue(sqs)
    name = unique_name("esm-event")
    create_fn(lam, name, handler="app.handler", zip_bytes=make_zip({"app.py": SEEN}))
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=10)
    sent = sqs.send_message(QueueUrl=url, MessageBody="hello",
                            MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})
    logs = logs_client(hearth)

    def event_line():
        try:
            ev = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}", filterPattern="EVENT")["events"]
        except ClientError:
            return None
        return ev[0]["message"] if ev else None

    line = wait_until(event_line, 30, what="the mapped function's invocation")
    event = json.loads(line.split("EVENT", 1)[1])
    (rec,) = event["Records"]
    assert rec["messageId"] == sent["MessageId"]
    assert rec["body"] == "hello"
    assert rec["eventSource"] == "aws:sqs"
    assert rec["eventSourceARN"] == arn
    assert rec["awsRegion"] == REGION
    assert rec["md5OfBody"] == sent["MD5OfMessageBody"]
    assert rec["messageAttributes"]["k"]["stringValue"] == "v"
    assert rec["messageAttributes"]["k"]["dataType"] == "String"
    assert rec["attributes"]["ApproximateReceiveCount"] == "1"
    # Processed: deleted from the queue.
    wait_until(lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
               ["ApproximateNumberOfMessagesNotVisible"] == "0", 15, what="the batch's deletion")
    lam.delete_event_source_mapping(UUID=m["UUID"])


def test_a_thousand_messages_exactly_once_with_partial_failures(lam, sqs, hearth):
    # Failed items come back after the 10 s visibility timeout (long enough
    # that no batch still running sees its messages come back).
    url, arn = queue(sqs, VisibilityTimeout=10)
    name = unique_name("esm-1000")
    create_fn(lam, name, handler="app.handler", zip_bytes=make_zip({"app.py": BATCH}))
    n = 1000
    for start in range(0, n, 10):
        r = sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": json.dumps({"n": i})} for i in range(start, start + 10)])
        assert len(r["Successful"]) == 10
    m = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=name, BatchSize=25, MaximumBatchingWindowInSeconds=1,
        FunctionResponseTypes=["ReportBatchItemFailures"])

    def drained():
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return a["ApproximateNumberOfMessages"] == "0" and a["ApproximateNumberOfMessagesNotVisible"] == "0"

    wait_until(drained, 180, interval=1, what="the queue to drain")
    lam.delete_event_source_mapping(UUID=m["UUID"])
    logs = logs_client(hearth)
    seen: list[int] = []
    kw = {"logGroupName": f"/aws/lambda/{name}", "filterPattern": "PROCESSED"}
    for _ in range(1000):  # bounded paging
        page = logs.filter_log_events(**kw)
        seen += [int(e["message"].split()[1]) for e in page["events"]]
        if not page.get("nextToken"):
            break
        kw["nextToken"] = page["nextToken"]
    assert len(seen) == n, f"{len(seen)} PROCESSED lines for {n} messages"
    assert sorted(seen) == list(range(n)), "some message was processed twice or never"


def test_mappings_and_destinations_survive_kill_9(start_server):
    srv = start_server(unique_name("esm-crash"))
    lam, sqs = srv.client(), sqs_client(srv)
    url, arn = queue(sqs)
    dest_url, dest_arn = queue(sqs)
    name = unique_name("esm-durable")
    create_fn(lam, name, handler="app.handler", zip_bytes=make_zip({"app.py": SEEN}))
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=1)
    failing = unique_name("dest-durable")
    create_fn(lam, failing, handler="app.handler", zip_bytes=make_zip({"app.py": FAILING}))
    lam.put_function_event_invoke_config(FunctionName=failing, MaximumRetryAttempts=0,
                                         DestinationConfig={"OnFailure": {"Destination": dest_arn}})
    srv.kill9()
    srv.restart()
    lam, sqs = srv.client(), sqs_client(srv)
    assert lam.get_event_source_mapping(UUID=m["UUID"])["State"] == "Enabled"
    sqs.send_message(QueueUrl=url, MessageBody="after-restart")
    logs = logs_client(srv)

    def seen():
        try:
            ev = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}", filterPattern="after-restart")["events"]
        except ClientError:
            return False
        return bool(ev)

    wait_until(seen, 30, what="the restarted poller's invocation")
    lam.invoke(FunctionName=failing, InvocationType="Event", Payload=b'{"n": 1}')
    got = receive_all(sqs, dest_url, 1)
    assert len(got) == 1 and json.loads(got[0]["Body"])["requestContext"]["condition"] == "RetriesExhausted"


def test_dead_letter_config_sends_the_failed_event_to_its_queue(lam, sqs):
    url, arn = queue(sqs)
    name = unique_name("dlq")
    created = create_fn(lam, name, handler="app.handler", zip_bytes=make_zip({"app.py": FAILING}),
                        DeadLetterConfig={"TargetArn": arn})
    assert created["DeadLetterConfig"] == {"TargetArn": arn}
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    r = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 7}')
    request_id = r["ResponseMetadata"]["RequestId"]
    got = []
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2, MessageAttributeNames=["All"]).get("Messages", [])
    assert len(got) == 1, "the dead letter never arrived"
    (m,) = got
    assert json.loads(m["Body"]) == {"n": 7}
    attrs = {k: (v["DataType"], v["StringValue"]) for k, v in m["MessageAttributes"].items()}
    assert attrs == {"ErrorCode": ("Number", "200"), "ErrorMessage": ("String", "no good: 7"),
                     "RequestID": ("String", request_id)}
    assert "MD5OfMessageAttributes" in m
    # Removed with an empty target; a target that is no queue of this account is refused.
    assert "DeadLetterConfig" not in lam.update_function_configuration(
        FunctionName=name, DeadLetterConfig={"TargetArn": ""})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    for bad in (arn + "-gone", f"arn:aws:sns:{REGION}:000000000000:topic"):
        with pytest.raises(ClientError) as e:
            lam.update_function_configuration(FunctionName=name, DeadLetterConfig={"TargetArn": bad})
        assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "DeadLetterConfig" not in lam.get_function_configuration(FunctionName=name)


def test_poison_messages_reach_the_queues_dead_letter_queue(lam, sqs):
    dlq_url, dlq_arn = queue(sqs)
    url, arn = queue(sqs, VisibilityTimeout=3,
                     RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}))
    name = unique_name("esm-poison")
    create_fn(lam, name, handler="app.handler", zip_bytes=make_zip({"app.py": FAILING}))
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=1)
    sqs.send_message(QueueUrl=url, MessageBody='{"n": 5}')
    got = receive_all(sqs, dlq_url, 1, timeout=60)
    lam.delete_event_source_mapping(UUID=m["UUID"])
    assert [g["Body"] for g in got] == ['{"n": 5}']
