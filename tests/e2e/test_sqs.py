"""SQS standard queues on Hearth's endpoint: boto3 (the JSON 1.0 protocol)
and raw signed query-protocol requests, per account, durable across
kill -9."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from hearth_e2e import DEV_KEY, DEV_SECRET, REGION, unique_name

NS = {"q": "http://queue.amazonaws.com/doc/2012-11-05/"}


def sqs_client(server, access_key=DEV_KEY, secret=DEV_SECRET, **cfg):
    conf = dict(retries={"max_attempts": 0}, connect_timeout=10, read_timeout=60)
    conf.update(cfg)
    return boto3.session.Session().client(
        "sqs",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        config=botocore.config.Config(**conf),
    )


@pytest.fixture(scope="module")
def sqs(hearth):
    return sqs_client(hearth)


def qname(prefix="q"):
    return unique_name(prefix).replace(".", "-")[:80]


def md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def error_code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def query(server, params: dict, path: str = "/", **kw):
    body = urllib.parse.urlencode({"Version": "2012-11-05", **params})
    r = server.raw("POST", path, body, service="sqs",
                   headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, **kw)
    return r, ET.fromstring(r.body)


def test_queue_crud_and_attributes(sqs):
    name = qname()
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "7"})["QueueUrl"]
    assert url.endswith("/" + name)
    # Idempotent with the same attributes; refused with others.
    assert sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "7"})["QueueUrl"] == url
    with pytest.raises(sqs.exceptions.QueueNameExists):
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "8"})
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    assert url in sqs.list_queues(QueueNamePrefix=name)["QueueUrls"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "7"
    assert attrs["MessageRetentionPeriod"] == "345600"
    assert attrs["ApproximateNumberOfMessages"] == "0"
    account = url.rstrip("/").split("/")[-2]
    assert attrs["QueueArn"] == f"arn:aws:sqs:{REGION}:{account}:{name}"
    only = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    assert list(only) == ["QueueArn"]
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=name + ".fifo", Attributes={"FifoQueue": "true"})
    assert error_code(e.value) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=qname(), Attributes={"VisibilityTimeout": "99999"})
    assert error_code(e.value) == "InvalidAttributeValue"
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=name)


def test_list_queues_pages(sqs):
    prefix = qname("page")
    urls = [sqs.create_queue(QueueName=f"{prefix}-{i}")["QueueUrl"] for i in range(3)]
    first = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2)
    assert len(first["QueueUrls"]) == 2 and "NextToken" in first
    rest = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2, NextToken=first["NextToken"])
    assert first["QueueUrls"] + rest["QueueUrls"] == urls
    assert "NextToken" not in rest


def test_send_receive_delete_round_trip(sqs):
    url = sqs.create_queue(QueueName=qname())["QueueUrl"]
    body = "hello ✓ " + unique_name()
    sent = sqs.send_message(
        QueueUrl=url, MessageBody=body,
        MessageAttributes={"color": {"DataType": "String", "StringValue": "blue"},
                           "n": {"DataType": "Number", "StringValue": "3"},
                           "raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}},
    )
    assert sent["MD5OfMessageBody"] == md5(body)
    # The digest of attributes, as SQS defines it: name-sorted, length-prefixed.
    buf = b""
    for name, dtype, transport, value in sorted([
        ("color", "String", 1, b"blue"), ("n", "Number", 1, b"3"), ("raw", "Binary", 2, b"\x00\x01")
    ]):
        for part in (name.encode(), dtype.encode()):
            buf += len(part).to_bytes(4, "big") + part
        buf += bytes([transport]) + len(value).to_bytes(4, "big") + value
    assert sent["MD5OfMessageAttributes"] == hashlib.md5(buf).hexdigest()
    got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"],
                              MessageSystemAttributeNames=["All"], WaitTimeSeconds=1)["Messages"]
    assert len(got) == 1
    m = got[0]
    assert m["Body"] == body and m["MD5OfBody"] == md5(body)
    assert m["MessageId"] == sent["MessageId"]
    assert m["MessageAttributes"]["color"]["StringValue"] == "blue"
    assert m["MessageAttributes"]["raw"]["BinaryValue"] == b"\x00\x01"
    assert m["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert m["Attributes"]["ApproximateReceiveCount"] == "1"
    assert int(m["Attributes"]["SentTimestamp"]) > 0
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")


def test_visibility_timeout_redelivers(sqs):
    url = sqs.create_queue(QueueName=qname())["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="again")
    first = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)["Messages"][0]
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    deadline = time.monotonic() + 10
    second = None
    while second is None and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2, MessageSystemAttributeNames=["All"])
        second = (got.get("Messages") or [None])[0]
    assert second is not None, "not redelivered"
    assert second["MessageId"] == first["MessageId"]
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    # In flight: its visibility can change; once visible again, it cannot.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=0)
    with pytest.raises(sqs.exceptions.MessageNotInflight):
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=5)
    sqs.purge_queue(QueueUrl=url)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)


def test_long_poll_returns_when_a_message_arrives(hearth, sqs):
    url = sqs.create_queue(QueueName=qname())["QueueUrl"]
    sender = sqs_client(hearth)

    def send_later():
        time.sleep(1.5)
        sender.send_message(QueueUrl=url, MessageBody="late")

    t = threading.Thread(target=send_later)
    start = time.monotonic()
    t.start()
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)
    took = time.monotonic() - start
    t.join()
    assert [m["Body"] for m in got["Messages"]] == ["late"]
    assert 1.0 <= took < 8, took
    # With nothing to receive, it waits the time asked for, no longer.
    start = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert 0.9 <= time.monotonic() - start < 5


def test_batches(sqs):
    # An entry over the queue's MaximumMessageSize fails alone; a batch over
    # 256 KiB in total fails whole (BatchRequestTooLong, below).
    url = sqs.create_queue(QueueName=qname(), Attributes={"MaximumMessageSize": "1024"})["QueueUrl"]
    r = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "one"},
        {"Id": "b", "MessageBody": "two", "DelaySeconds": 0},
        {"Id": "c", "MessageBody": "x" * 1025},
    ])
    assert sorted(e["Id"] for e in r["Successful"]) == ["a", "b"]
    assert {e["Id"]: e["MD5OfMessageBody"] for e in r["Successful"]} == {"a": md5("one"), "b": md5("two")}
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in r["Failed"]] == [("c", "InvalidParameterValue", True)]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert sorted(m["Body"] for m in got) == ["one", "two"]
    d = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": "x", "ReceiptHandle": got[0]["ReceiptHandle"]},
        {"Id": "y", "ReceiptHandle": got[1]["ReceiptHandle"]},
        {"Id": "z", "ReceiptHandle": "bogus"},
    ])
    assert sorted(e["Id"] for e in d["Successful"]) == ["x", "y"]
    assert [(f["Id"], f["Code"]) for f in d["Failed"]] == [("z", "ReceiptHandleIsInvalid")]
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": f"e{i}", "MessageBody": "m"} for i in range(11)])
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "same", "MessageBody": "m"}] * 2)
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        sqs.send_message_batch(QueueUrl=url, Entries=[])
    with pytest.raises(sqs.exceptions.BatchRequestTooLong):
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": f"e{i}", "MessageBody": "x" * 100_000} for i in range(3)])
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_oversize_message_is_refused_and_not_stored(sqs):
    url = sqs.create_queue(QueueName=qname())["QueueUrl"]
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x" * 262_145)
    assert error_code(e.value) == "InvalidParameterValue"
    assert "shorter than 262144 bytes" in e.value.response["Error"]["Message"]
    sqs.send_message(QueueUrl=url, MessageBody="x" * 262_144)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "1"


def test_other_accounts_queues_do_not_exist(hearth, sqs, second_account):
    url = sqs.create_queue(QueueName=qname())["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="private")
    other = sqs_client(hearth, second_account["AccessKeyId"], second_account["SecretAccessKey"])
    for call in (
        lambda: other.send_message(QueueUrl=url, MessageBody="intruder"),
        lambda: other.receive_message(QueueUrl=url),
        lambda: other.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]),
        lambda: other.purge_queue(QueueUrl=url),
        lambda: other.delete_queue(QueueUrl=url),
    ):
        with pytest.raises(other.exceptions.QueueDoesNotExist) as e:
            call()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert e.value.response["Error"]["QueryErrorCode"] == "QueueDoesNotExist"
    assert url not in other.list_queues().get("QueueUrls", [])
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "1"


def test_json_protocol_errors(hearth):
    def call(target, body):
        return hearth.raw("POST", "/", body, service="sqs", headers={
            "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target})

    r = call("AmazonSQS.NoSuchThing", "{}")
    assert r.status == 400
    assert r.json()["__type"].endswith("#UnknownOperationException")
    r = call("AmazonSQS.ListQueues", "{not json")
    assert r.status == 400
    assert r.json()["__type"].endswith("#SerializationException")
    assert r.json()["message"]
    r = call("AmazonSQS.GetQueueUrl", json.dumps({"QueueName": "no-such-queue-" + qname()}))
    assert r.status == 400
    assert r.json()["__type"] == "com.amazonaws.sqs#QueueDoesNotExist"
    assert r.header("x-amzn-query-error") == "AWS.SimpleQueueService.NonExistentQueue;Sender"


def test_query_protocol(hearth):
    name = qname("query")
    r, x = query(hearth, {"Action": "CreateQueue", "QueueName": name,
                          "Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "5"})
    assert r.status == 200, r.body
    url = x.find("q:CreateQueueResult/q:QueueUrl", NS).text
    assert url.endswith("/" + name)
    r, x = query(hearth, {"Action": "SendMessage", "QueueUrl": url, "MessageBody": "via <query> & xml",
                          "MessageAttribute.1.Name": "k", "MessageAttribute.1.Value.DataType": "String",
                          "MessageAttribute.1.Value.StringValue": "v"})
    assert r.status == 200, r.body
    assert x.find("q:SendMessageResult/q:MD5OfMessageBody", NS).text == md5("via <query> & xml")
    r, x = query(hearth, {"Action": "ReceiveMessage", "QueueUrl": url, "AttributeName.1": "All",
                          "MessageAttributeName.1": "All", "WaitTimeSeconds": "1"})
    assert r.status == 200, r.body
    msg = x.find("q:ReceiveMessageResult/q:Message", NS)
    assert msg.find("q:Body", NS).text == "via <query> & xml"
    attrs = {a.find("q:Name", NS).text: a.find("q:Value", NS).text for a in msg.findall("q:Attribute", NS)}
    assert attrs["ApproximateReceiveCount"] == "1"
    ma = msg.find("q:MessageAttribute", NS)
    assert ma.find("q:Name", NS).text == "k"
    assert ma.find("q:Value/q:StringValue", NS).text == "v"
    handle = msg.find("q:ReceiptHandle", NS).text
    # Posted to the queue's URL, as some SDKs post it.
    path = urllib.parse.urlparse(url).path
    r, x = query(hearth, {"Action": "DeleteMessage", "ReceiptHandle": handle}, path=path)
    assert r.status == 200, r.body
    assert x.tag == "{%s}DeleteMessageResponse" % NS["q"]
    r, x = query(hearth, {"Action": "GetQueueAttributes", "QueueUrl": url,
                          "AttributeName.1": "ApproximateNumberOfMessages"})
    assert r.status == 200, r.body
    assert x.find("q:GetQueueAttributesResult/q:Attribute/q:Value", NS).text == "0"
    # Errors in the query protocol's shape.
    r, x = query(hearth, {"Action": "GetQueueUrl", "QueueName": "no-such-" + name})
    assert r.status == 400
    assert x.find("q:Error/q:Code", NS).text == "AWS.SimpleQueueService.NonExistentQueue"
    assert x.find("q:Error/q:Type", NS).text == "Sender"
    r, x = query(hearth, {"Action": "NoSuchAction"})
    assert r.status == 400
    assert x.find("q:Error/q:Code", NS).text == "InvalidAction"
    r, x = query(hearth, {"Action": "SendMessage", "QueueUrl": url, "MessageBody": "x" * 262_145})
    assert x.find("q:Error/q:Code", NS).text == "InvalidParameterValue"
    r, x = query(hearth, {"Action": "CreateQueue", "QueueName": name,
                          "Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "6"})
    assert x.find("q:Error/q:Code", NS).text == "QueueAlreadyExists"


def test_acknowledged_messages_survive_kill_9(start_server):
    srv = start_server(unique_name("sqs-crash"))
    client = sqs_client(srv)
    url = client.create_queue(QueueName=qname("durable"))["QueueUrl"]
    bodies = {f"m{i}-{unique_name()}" for i in range(30)}
    for b in list(bodies)[:20]:
        client.send_message(QueueUrl=url, MessageBody=b)
    client.send_message_batch(QueueUrl=url, Entries=[
        {"Id": f"e{i}", "MessageBody": b} for i, b in enumerate(list(bodies)[20:])])
    srv.kill9()
    srv.restart()
    client = sqs_client(srv)
    url = client.get_queue_url(QueueName=url.rsplit("/", 1)[1])["QueueUrl"]
    got = set()
    deadline = time.monotonic() + 30
    while got != bodies and time.monotonic() < deadline:
        for m in client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            assert m["MD5OfBody"] == md5(m["Body"])
            got.add(m["Body"])
            client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert got == bodies


def test_set_queue_attributes(sqs):
    url = sqs.create_queue(QueueName=qname())["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "7", "DelaySeconds": "2"})
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (got["VisibilityTimeout"], got["DelaySeconds"], got["MaximumMessageSize"]) == ("7", "2", "262144")
    for bad in ({"VisibilityTimeout": "50000"}, {"Nope": "1"}, {"FifoQueue": "true"}):
        with pytest.raises(ClientError) as e:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=bad)
        assert error_code(e.value) in ("InvalidAttributeValue", "InvalidAttributeName")
    # Nothing of the refused calls was stored.
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"] == {
        "VisibilityTimeout": "7"}
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.set_queue_attributes(QueueUrl=url + "-gone", Attributes={"DelaySeconds": "1"})


def test_redrive_policy_moves_messages_to_the_dead_letter_queue(sqs):
    dlq_url = sqs.create_queue(QueueName=qname("dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    url = sqs.create_queue(QueueName=qname("src"), Attributes={"RedrivePolicy": policy})["QueueUrl"]
    got = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert got == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}
    sent = sqs.send_message(QueueUrl=url, MessageBody="poison")["MessageId"]
    for _ in range(2):
        (m,) = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0, WaitTimeSeconds=1)["Messages"]
        assert m["MessageId"] == sent
    # Received twice, never deleted: the next receive moves it.
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    (moved,) = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1, AttributeNames=["All"])["Messages"]
    assert (moved["MessageId"], moved["Body"], moved["Attributes"]["ApproximateReceiveCount"]) == (sent, "poison", "1")
    # A target that does not exist, another account's, or a bad count is refused.
    for bad in ({"deadLetterTargetArn": dlq_arn + "-gone", "maxReceiveCount": 1},
                {"deadLetterTargetArn": dlq_arn.replace(dlq_arn.split(":")[4], "999999999999"), "maxReceiveCount": 1},
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 0}):
        with pytest.raises(ClientError) as e:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(bad)})
        assert error_code(e.value) == "InvalidAttributeValue"
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": ""})
    assert "RedrivePolicy" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
