"""Function URLs: the control plane through boto3, and real HTTP calls to the
node's URL listener (plain urllib, and botocore's SigV4 for AWS_IAM)."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from hearth_e2e import DEV_ACCOUNT, DEV_KEY, DEV_SECRET, REGION, create_fn, expect_error, py_zip, unique_name

# Echoes the event it got; the query parameter `mode` picks other answers.
ECHO = r'''
import base64, json

def handler(event, context):
    mode = (event.get("queryStringParameters") or {}).get("mode")
    if mode == "raise":
        raise RuntimeError("boom")
    if mode == "plain":
        return {"plain": True, "n": [1, 2]}
    if mode == "string":
        return "just text"
    if mode == "framing":
        return {"statusCode": 200, "body": "hello framing",
                "headers": {"Content-Length": "3", "Transfer-Encoding": "chunked", "Connection": "close"}}
    if mode == "binary":
        return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(b"\x00\x01\xffbin").decode(), "isBase64Encoded": True}
    return {"statusCode": 201,
            "headers": {"X-Echo": "yes", "Content-Type": "application/json"},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": json.dumps({"event": event})}
'''

URL_ID = re.compile(r"^[a-z0-9]{32}$")


def fn_arn(name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{REGION}:{DEV_ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers as a list of pairs, body bytes), whatever the status."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def signed(method: str, url: str, key: str, secret: str, body: bytes = b"", service: str = "lambda"):
    req = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(key, secret), service, REGION).add_auth(req)
    return http(method, url, body or None, dict(req.headers.items()))


def url_id(function_url: str) -> str:
    return function_url.rstrip("/").rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def echo(lam):
    name = unique_name("url-echo")
    create_fn(lam, name, zip_bytes=py_zip({"handler.py": ECHO}))
    yield name
    try:
        lam.delete_function(FunctionName=name)
    except Exception:
        pass


def test_config_lifecycle_and_errors(lam, hearth, echo):
    created = lam.create_function_url_config(FunctionName=echo, AuthType="NONE")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["FunctionArn"] == fn_arn(echo)
    assert created["AuthType"] == "NONE"
    assert "InvokeMode" not in created and "LastModifiedTime" not in created
    url = created["FunctionUrl"]
    assert url.startswith(hearth.url_endpoint + "/") and url.endswith("/")
    assert URL_ID.match(url_id(url)), url

    got = lam.get_function_url_config(FunctionName=echo)
    assert got["FunctionUrl"] == url
    assert got["InvokeMode"] == "BUFFERED"
    assert got["CreationTime"] and got["LastModifiedTime"]

    expect_error(lam.create_function_url_config, FunctionName=echo, AuthType="NONE",
                 code="ResourceConflictException", status=409,
                 message_contains="FunctionUrlConfig exists for this Lambda function")

    cors = {"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["x-custom"], "ExposeHeaders": ["x-echo"], "MaxAge": 600,
            "AllowCredentials": True}
    updated = lam.update_function_url_config(FunctionName=echo, Cors=cors, InvokeMode="BUFFERED")
    assert updated["Cors"] == cors
    assert updated["AuthType"] == "NONE" and updated["InvokeMode"] == "BUFFERED"
    assert updated["FunctionUrl"] == url
    assert lam.get_function_url_config(FunctionName=echo)["Cors"] == cors

    # An alias gets a URL of its own; versions and $LATEST do not.
    lam.publish_version(FunctionName=echo)
    lam.create_alias(FunctionName=echo, Name="live", FunctionVersion="1")
    aliased = lam.create_function_url_config(FunctionName=echo, Qualifier="live", AuthType="AWS_IAM")
    assert aliased["FunctionArn"] == fn_arn(echo, "live")
    assert aliased["FunctionUrl"] != url
    for q in ("1", "$LATEST"):
        expect_error(lam.create_function_url_config, FunctionName=echo, Qualifier=q, AuthType="NONE",
                     code="ValidationException", status=400,
                     message_contains=f"Value '{q}' at 'qualifier' failed to satisfy constraint")
    expect_error(lam.create_function_url_config, FunctionName=echo, Qualifier="nope", AuthType="NONE",
                 code="ResourceNotFoundException", status=404, message="Function does not exist")
    expect_error(lam.create_function_url_config, FunctionName=unique_name("missing"), AuthType="NONE",
                 code="ResourceNotFoundException", status=404, message="Function does not exist")
    expect_error(lam.create_function_url_config, FunctionName=f"{echo}:live", Qualifier="other",
                 AuthType="NONE", code="InvalidParameterValueException", status=400,
                 message="The derived qualifier from the function name does not match the specified qualifier.")

    # Paging: the unqualified config first, then aliases.
    first = lam.list_function_url_configs(FunctionName=echo, MaxItems=1)
    assert [c["FunctionArn"] for c in first["FunctionUrlConfigs"]] == [fn_arn(echo)]
    rest = lam.list_function_url_configs(FunctionName=echo, MaxItems=1, Marker=first["NextMarker"])
    assert [c["FunctionArn"] for c in rest["FunctionUrlConfigs"]] == [fn_arn(echo, "live")]
    assert "NextMarker" not in rest
    everything = lam.get_paginator("list_function_url_configs").paginate(FunctionName=echo)
    assert sum(len(p["FunctionUrlConfigs"]) for p in everything) == 2
    expect_error(lam.list_function_url_configs, FunctionName=unique_name("missing"),
                 code="ResourceNotFoundException", status=404, message="Function does not exist")

    lam.delete_function_url_config(FunctionName=echo, Qualifier="live")
    expect_error(lam.get_function_url_config, FunctionName=echo, Qualifier="live",
                 code="ResourceNotFoundException", status=404,
                 message="The resource you requested does not exist.")
    expect_error(lam.delete_function_url_config, FunctionName=echo, Qualifier="live",
                 code="ResourceNotFoundException", status=404)
    expect_error(lam.update_function_url_config, FunctionName=echo, Qualifier="live", AuthType="NONE",
                 code="ResourceNotFoundException", status=404,
                 message="The resource you requested does not exist.")
    # The unqualified config is untouched.
    assert lam.get_function_url_config(FunctionName=echo)["FunctionUrl"] == url


def test_invalid_inputs_are_validation_errors(lam, echo):
    err = expect_error(lam.create_function_url_config, FunctionName=echo, AuthType="NONE",
                       InvokeMode="UNKNOWN", code="ValidationException", status=400)
    assert err["Error"]["Message"] == (
        "1 validation error detected: Value 'UNKNOWN' at 'invokeMode' failed to satisfy "
        "constraint: Member must satisfy enum value set: [RESPONSE_STREAM, BUFFERED]")


def _echo_url(lam, echo) -> str:
    try:
        return lam.get_function_url_config(FunctionName=echo)["FunctionUrl"]
    except lam.exceptions.ResourceNotFoundException:
        return lam.create_function_url_config(FunctionName=echo, AuthType="NONE")["FunctionUrl"]


def test_get_with_query_and_cookies(lam, echo):
    url = _echo_url(lam, echo)
    status, headers, body = http("GET", url + "some/path?x=1&x=2&y=a%20b",
                                 headers={"Cookie": "c1=v1; c2=v2", "X-Test": "T", "User-Agent": "e2e/1"})
    assert status == 201, body
    assert headers["X-Echo"] == "yes"
    assert headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2"]
    assert headers["x-amzn-RequestId"]
    ev = json.loads(body)["event"]
    assert ev["version"] == "2.0" and ev["routeKey"] == "$default"
    assert ev["rawPath"] == "/some/path"
    assert ev["rawQueryString"] == "x=1&x=2&y=a%20b"
    assert ev["queryStringParameters"] == {"x": "1,2", "y": "a b"}
    assert ev["cookies"] == ["c1=v1", "c2=v2"]
    assert ev["headers"]["x-test"] == "T"
    assert "cookie" not in ev["headers"]
    assert "body" not in ev and ev["isBase64Encoded"] is False
    ctx = ev["requestContext"]
    uid = url_id(url)
    assert ctx["apiId"] == uid and ctx["domainPrefix"] == uid
    assert ctx["accountId"] == "anonymous"
    assert ctx["http"] == {"method": "GET", "path": "/some/path", "protocol": "HTTP/1.1",
                           "sourceIp": "127.0.0.1", "userAgent": "e2e/1"}
    assert ctx["requestId"] == headers["x-amzn-RequestId"]
    assert ctx["stage"] == "$default" and ctx["routeKey"] == "$default"
    assert isinstance(ctx["timeEpoch"], int) and ctx["time"]


def test_post_json_and_binary_bodies(lam, echo):
    url = _echo_url(lam, echo)
    status, _, body = http("POST", url, json.dumps({"k": "v"}).encode(),
                           {"Content-Type": "application/json"})
    assert status == 201, body
    ev = json.loads(body)["event"]
    assert ev["rawPath"] == "/"
    assert json.loads(ev["body"]) == {"k": "v"} and ev["isBase64Encoded"] is False
    assert ev["requestContext"]["http"]["method"] == "POST"

    raw = bytes(range(256))
    status, _, body = http("PUT", url + "bin", raw, {"Content-Type": "application/octet-stream"})
    assert status == 201, body
    ev = json.loads(body)["event"]
    assert ev["isBase64Encoded"] is True
    assert base64.b64decode(ev["body"]) == raw


def test_response_mapping(lam, echo):
    url = _echo_url(lam, echo)
    status, headers, body = http("GET", url + "?mode=binary")
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert body == b"\x00\x01\xffbin"

    status, headers, body = http("GET", url + "?mode=plain")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body == b'{"plain":true,"n":[1,2]}'

    status, _, body = http("GET", url + "?mode=string")
    assert status == 200 and body == b"just text"

    status, _, body = http("GET", url + "?mode=raise")
    assert status == 502
    assert body == b"Internal Server Error"


def test_host_header_routing(lam, echo, hearth):
    uid = url_id(_echo_url(lam, echo))
    for host in (f"{uid}.lambda-url.{REGION}.on.aws", f"{uid}.localhost"):
        status, _, body = http("GET", hearth.url_endpoint + "/via/host?mode=plain", headers={"Host": host})
        assert status == 200, (host, body)
        assert json.loads(body) == {"plain": True, "n": [1, 2]}
    status, _, body = http("GET", hearth.url_endpoint + "/via/host", headers={"Host": f"{uid}.localhost"})
    assert status == 201
    assert json.loads(body)["event"]["rawPath"] == "/via/host"


def test_cors(lam, echo):
    cors = {"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["x-custom"], "ExposeHeaders": ["x-echo"], "MaxAge": 600,
            "AllowCredentials": True}
    url = _echo_url(lam, echo)
    lam.update_function_url_config(FunctionName=echo, Cors=cors)
    try:
        status, headers, body = http("OPTIONS", url + "anything", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-custom"})
        assert status == 200, body
        assert headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert set(headers["Access-Control-Allow-Methods"].split(",")) == {"GET", "POST"}
        assert headers["Access-Control-Allow-Headers"] == "x-custom"
        assert headers["Access-Control-Max-Age"] == "600"
        assert headers["Access-Control-Allow-Credentials"] == "true"
        assert body == b""  # answered by Hearth, not the function

        status, headers, _ = http("GET", url, headers={"Origin": "https://app.example"})
        assert status == 201
        assert headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert headers["Access-Control-Expose-Headers"] == "x-echo"
        assert headers["Access-Control-Allow-Credentials"] == "true"

        status, headers, _ = http("GET", url, headers={"Origin": "https://evil.example"})
        assert status == 201
        assert "Access-Control-Allow-Origin" not in headers
    finally:
        lam.update_function_url_config(FunctionName=echo, Cors={})


def test_aws_iam_urls_need_a_signature_of_the_account(lam, hearth, second_account):
    name = unique_name("url-iam")
    create_fn(lam, name, zip_bytes=py_zip({"handler.py": ECHO}))
    url = lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]

    status, headers, body = http("POST", url, b"{}", {"Content-Type": "application/json"})
    assert status == 403, body
    assert json.loads(body) == {"Message": "Forbidden"}
    assert headers["x-amzn-ErrorType"] == "AccessDeniedException"

    status, _, body = signed("POST", url + "p?mode=plain", DEV_KEY, DEV_SECRET, b"{}")
    assert status == 200, body
    assert json.loads(body) == {"plain": True, "n": [1, 2]}

    status, _, body = signed("POST", url + "who", DEV_KEY, DEV_SECRET, b'{"a":1}')
    assert status == 201, body
    ctx = json.loads(body)["event"]["requestContext"]
    assert ctx["accountId"] == DEV_ACCOUNT
    assert ctx["authorizer"]["iam"]["accessKey"] == DEV_KEY
    assert ctx["authorizer"]["iam"]["accountId"] == DEV_ACCOUNT

    status, _, body = signed("POST", url, DEV_KEY, "wrong-secret", b"{}")
    assert status == 403 and json.loads(body) == {"Message": "Forbidden"}
    status, _, body = signed("POST", url, DEV_KEY, DEV_SECRET, b"{}", service="s3")
    assert status == 403
    status, _, body = signed("POST", url, second_account["AccessKeyId"],
                             second_account["SecretAccessKey"], b"{}")
    assert status == 403 and json.loads(body) == {"Message": "Forbidden"}
    lam.delete_function(FunctionName=name)


def test_urls_go_with_their_config_and_function(lam):
    name = unique_name("url-gone")
    create_fn(lam, name, zip_bytes=py_zip({"handler.py": ECHO}))
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    assert http("GET", url + "?mode=plain")[0] == 200
    lam.delete_function_url_config(FunctionName=name)
    status, headers, body = http("GET", url + "?mode=plain")
    # AWS answers an unknown URL 403 {"Message":null}.
    assert status == 403 and body == b'{"Message":null}'
    assert headers["x-amzn-ErrorType"] == "AccessDeniedException"

    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    assert http("GET", url + "?mode=plain")[0] == 200
    lam.delete_function(FunctionName=name)
    status, _, body = http("GET", url + "?mode=plain")
    assert status == 403 and body == b'{"Message":null}'
    # Re-created, the function has no URL.
    create_fn(lam, name, zip_bytes=py_zip({"handler.py": ECHO}))
    expect_error(lam.get_function_url_config, FunctionName=name, code="ResourceNotFoundException", status=404)
    lam.delete_function(FunctionName=name)


def test_urls_survive_a_restart(start_server):
    srv = start_server()
    lam = srv.client()
    name = unique_name("url-restart")
    create_fn(lam, name, zip_bytes=py_zip({"handler.py": ECHO}))
    uid = url_id(lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"])
    srv.restart()
    lam = srv.client()
    url = lam.get_function_url_config(FunctionName=name)["FunctionUrl"]
    assert url_id(url) == uid
    assert url.startswith(srv.url_endpoint + "/")
    status, _, body = http("GET", url + "?mode=plain")
    assert status == 200, body


def test_a_function_cannot_set_the_responses_framing(lam, echo):
    import http.client
    import urllib.parse

    u = urllib.parse.urlsplit(_echo_url(lam, echo))
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        for _ in range(2):  # the same kept-alive connection, twice
            conn.request("GET", u.path + "?mode=framing")
            r = conn.getresponse()
            assert (r.status, r.read()) == (200, b"hello framing")
            assert r.getheader("Content-Length") == str(len(b"hello framing"))
            assert r.getheader("Transfer-Encoding") is None
    finally:
        conn.close()
