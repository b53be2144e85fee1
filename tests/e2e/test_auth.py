"""SigV4 authentication, the admin API, tenant isolation, and HTTP-level
errors (malformed bodies, unknown paths) — every refusal a JSON body with a
status below 500."""

from __future__ import annotations

import datetime
import json
from unittest import mock

import botocore.auth
import pytest

from hearth_e2e import (
    DEV_ACCOUNT,
    PY_RUNTIME,
    REGION,
    ROLE,
    code_sha256,
    create_fn,
    expect_error,
    list_all_functions,
    py_zip,
    unique_name,
)


def error_code(r) -> str | None:
    """The error code as botocore reads it: X-Amzn-ErrorType, else the body's __type/code."""
    h = r.header("X-Amzn-ErrorType")
    if h:
        return h.split(":")[0]
    try:
        body = r.json()
    except ValueError:
        return None
    for k in ("__type", "code", "Code", "Type"):
        if isinstance(body.get(k), str):
            return body[k].split("#")[-1]
    return None


def assert_json_error(r, status: int | set[int], code: str | set[str] | None = None):
    statuses = {status} if isinstance(status, int) else status
    assert r.status in statuses, (r.status, r.headers, r.body)
    assert r.status < 500
    ctype = (r.header("Content-Type") or "").lower()
    assert "json" in ctype, f"error without a JSON content type: {ctype!r} {r.body!r}"
    body = r.json()
    assert isinstance(body, dict) and (body.get("message") or body.get("Message")), body
    if code is not None:
        codes = {code} if isinstance(code, str) else code
        assert error_code(r) in codes, (error_code(r), r.headers, body)
    return body


# ---------------------------------------------------------------------------
# Signatures


def test_health_needs_no_auth(hearth):
    r = hearth.raw("GET", "/hearth/v1/health", sign=False)
    assert r.status == 200


def test_wrong_secret_is_invalid_signature(hearth):
    bad = hearth.client(secret="not-the-secret")
    expect_error(bad.list_functions, code="InvalidSignatureException", status=403)
    expect_error(bad.get_function, FunctionName="anything", code="InvalidSignatureException", status=403)
    name = unique_name("nosig")
    expect_error(bad.create_function, FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE,
                 Handler="handler.handler", Code={"ZipFile": py_zip()},
                 code="InvalidSignatureException", status=403)
    expect_error(hearth.client().get_function, FunctionName=name, code="ResourceNotFoundException", status=404)


def test_unknown_access_key(hearth):
    bad = hearth.client(access_key="AKIANOSUCHKEY0000000", secret="whatever")
    expect_error(bad.list_functions, code="UnrecognizedClientException", status=403)
    expect_error(bad.get_account_settings, code="UnrecognizedClientException", status=403)


def test_unsigned_request_is_refused(hearth):
    r = hearth.raw("GET", "/2015-03-31/functions/", sign=False)
    assert_json_error(r, {400, 403})


def test_body_changed_after_signing(hearth):
    """The signature covers the payload hash: a body swapped after signing is refused."""
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    import urllib3

    name = unique_name("tamper")
    body = json.dumps({"FunctionName": name, "Runtime": PY_RUNTIME, "Role": ROLE,
                       "Handler": "handler.handler", "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}})
    req = AWSRequest(method="POST", url=hearth.endpoint + "/2015-03-31/functions", data=body.encode(),
                     headers={"Content-Type": "application/json"})
    botocore.auth.SigV4Auth(Credentials("test", "test"), "lambda", REGION).add_auth(req)
    p = req.prepare()
    tampered = body.replace(name, name + "x").encode()
    headers = dict(p.headers)
    headers["Content-Length"] = str(len(tampered))
    resp = urllib3.PoolManager(retries=False, timeout=30).request("POST", p.url, body=tampered, headers=headers)
    assert resp.status == 403, (resp.status, resp.data)
    assert json.loads(resp.data)
    expect_error(hearth.client().get_function, FunctionName=name + "x", code="ResourceNotFoundException", status=404)


def test_stale_signature_is_refused(hearth):
    """A request signed an hour ago (outside the 5-minute window) is refused."""
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=past):
        r = hearth.raw("GET", "/2015-03-31/functions/")
    assert_json_error(r, 403, "InvalidSignatureException")


# ---------------------------------------------------------------------------
# Admin API


def test_admin_accounts_lifecycle(hearth):
    name = unique_name("admin-api")
    r = hearth.raw("POST", "/hearth/v1/accounts", json.dumps({"Name": name}),
                   headers={"Content-Type": "application/json"})
    assert r.status == 201, (r.status, r.body)
    acct = r.json()
    assert set(acct) >= {"AccountId", "AccessKeyId", "SecretAccessKey", "Name"}
    assert acct["Name"] == name
    assert len(acct["AccountId"]) == 12 and acct["AccountId"].isdigit()
    assert acct["AccountId"] != DEV_ACCOUNT

    r = hearth.raw("GET", "/hearth/v1/accounts")
    assert r.status == 200, (r.status, r.body)
    accounts = {a["AccountId"]: a for a in r.json()["Accounts"]}
    assert accounts[acct["AccountId"]]["Name"] == name
    assert accounts[acct["AccountId"]]["Admin"] is False
    assert accounts[DEV_ACCOUNT]["Admin"] is True
    for a in accounts.values():
        assert "SecretAccessKey" not in a

    # The new account works and is not an admin.
    c = hearth.account_client(acct)
    assert c.list_functions()["Functions"] == []
    fn = unique_name("doomed")
    create_fn(c, fn, wait=False)
    r = hearth.raw("GET", "/hearth/v1/accounts", access_key=acct["AccessKeyId"], secret=acct["SecretAccessKey"])
    assert_json_error(r, 403)
    r = hearth.raw("POST", "/hearth/v1/accounts", json.dumps({"Name": "nope"}),
                   access_key=acct["AccessKeyId"], secret=acct["SecretAccessKey"],
                   headers={"Content-Type": "application/json"})
    assert_json_error(r, 403)
    r = hearth.raw("DELETE", f"/hearth/v1/accounts/{DEV_ACCOUNT}",
                   access_key=acct["AccessKeyId"], secret=acct["SecretAccessKey"])
    assert_json_error(r, 403)

    # Unsigned admin calls are refused.
    assert_json_error(hearth.raw("GET", "/hearth/v1/accounts", sign=False), {400, 403})

    # Delete: 204, gone from the list, its key no longer works.
    r = hearth.raw("DELETE", f"/hearth/v1/accounts/{acct['AccountId']}")
    assert r.status == 204, (r.status, r.body)
    ids = {a["AccountId"] for a in hearth.raw("GET", "/hearth/v1/accounts").json()["Accounts"]}
    assert acct["AccountId"] not in ids
    expect_error(c.list_functions, code="UnrecognizedClientException", status=403)
    r = hearth.raw("DELETE", f"/hearth/v1/accounts/{acct['AccountId']}")
    assert_json_error(r, 404)


def test_admin_create_account_needs_a_name(hearth):
    for body in ("{}", '{"Name": 5}', "not json"):
        r = hearth.raw("POST", "/hearth/v1/accounts", body, headers={"Content-Type": "application/json"})
        assert_json_error(r, 400)


# ---------------------------------------------------------------------------
# Tenant isolation


def test_accounts_are_isolated(hearth, lam, second_account):
    b = hearth.account_client(second_account)
    b_id = second_account["AccountId"]
    only_a = unique_name("only-a")
    za = py_zip()
    create_fn(lam, only_a, zip_bytes=za, Publish=True)
    lam.create_alias(FunctionName=only_a, Name="live", FunctionVersion="1")

    a_arn = f"arn:aws:lambda:{REGION}:{DEV_ACCOUNT}:function:{only_a}"
    for ref in (only_a, a_arn, f"{DEV_ACCOUNT}:function:{only_a}", f"{only_a}:1", f"{a_arn}:live"):
        expect_error(b.get_function, FunctionName=ref, code="ResourceNotFoundException", status=404)
    expect_error(b.get_function_configuration, FunctionName=only_a, code="ResourceNotFoundException", status=404)
    expect_error(b.update_function_configuration, FunctionName=only_a, Description="pwned",
                 code="ResourceNotFoundException", status=404)
    expect_error(b.update_function_code, FunctionName=a_arn, ZipFile=py_zip(),
                 code="ResourceNotFoundException", status=404)
    expect_error(b.publish_version, FunctionName=only_a, code="ResourceNotFoundException", status=404)
    expect_error(b.list_versions_by_function, FunctionName=only_a, code="ResourceNotFoundException", status=404)
    expect_error(b.list_aliases, FunctionName=only_a, code="ResourceNotFoundException", status=404)
    expect_error(b.get_alias, FunctionName=only_a, Name="live", code="ResourceNotFoundException", status=404)
    expect_error(b.create_alias, FunctionName=only_a, Name="mine", FunctionVersion="1",
                 code="ResourceNotFoundException", status=404)
    expect_error(b.put_function_concurrency, FunctionName=only_a, ReservedConcurrentExecutions=1,
                 code="ResourceNotFoundException", status=404)
    expect_error(b.delete_function, FunctionName=only_a, code="ResourceNotFoundException", status=404)
    expect_error(b.delete_function, FunctionName=a_arn, code="ResourceNotFoundException", status=404)
    expect_error(b.delete_function, FunctionName=only_a, Qualifier="1", code="ResourceNotFoundException", status=404)
    assert only_a not in {f["FunctionName"] for f in list_all_functions(b)}
    assert all(f["FunctionArn"].split(":")[4] == b_id for f in list_all_functions(b))

    # A's function is untouched.
    conf = lam.get_function(FunctionName=only_a)["Configuration"]
    assert conf["CodeSha256"] == code_sha256(za)
    assert conf.get("Description", "") == ""
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=only_a)["Versions"]] == ["$LATEST", "1"]
    assert lam.get_alias(FunctionName=only_a, Name="live")["FunctionVersion"] == "1"

    # The same name can exist in both accounts, independently.
    shared = unique_name("shared")
    za2, zb2 = py_zip(), py_zip()
    ra = create_fn(lam, shared, zip_bytes=za2, wait=False)
    rb = create_fn(b, shared, zip_bytes=zb2, wait=False)
    assert ra["FunctionArn"] == f"arn:aws:lambda:{REGION}:{DEV_ACCOUNT}:function:{shared}"
    assert rb["FunctionArn"] == f"arn:aws:lambda:{REGION}:{b_id}:function:{shared}"
    assert lam.get_function(FunctionName=shared)["Configuration"]["CodeSha256"] == code_sha256(za2)
    assert b.get_function(FunctionName=shared)["Configuration"]["CodeSha256"] == code_sha256(zb2)
    # A cannot reach B's by B's ARN either.
    expect_error(lam.get_function, FunctionName=rb["FunctionArn"], code="ResourceNotFoundException", status=404)
    b.delete_function(FunctionName=shared)
    assert lam.get_function(FunctionName=shared)["Configuration"]["CodeSha256"] == code_sha256(za2)
    # Account settings count only the caller's functions.
    assert b.get_account_settings()["AccountUsage"]["FunctionCount"] == len(list_all_functions(b))
    lam.delete_function(FunctionName=shared)
    lam.delete_function(FunctionName=only_a)


# ---------------------------------------------------------------------------
# HTTP-level errors


@pytest.mark.parametrize("body", [
    "{not json",
    "[1, 2, 3]",
    '{"FunctionName": 5, "Runtime": "python3.11"}',
    "",
    "\xff\xfe",
])
def test_malformed_create_body(hearth, lam, body):
    r = hearth.raw("POST", "/2015-03-31/functions", body.encode("latin-1"),
                   headers={"Content-Type": "application/json"})
    assert_json_error(r, 400)


def test_malformed_json_is_invalid_request_content(hearth):
    r = hearth.raw("POST", "/2015-03-31/functions", "{not json", headers={"Content-Type": "application/json"})
    assert_json_error(r, 400, "InvalidRequestContentException")
    name = unique_name("badjson")
    r = hearth.raw("PUT", f"/2015-03-31/functions/{name}/configuration", "{nope",
                   headers={"Content-Type": "application/json"})
    assert_json_error(r, {400, 404})


def test_missing_required_fields(hearth, lam):
    name = unique_name("partial")
    r = hearth.raw("POST", "/2015-03-31/functions", json.dumps({"FunctionName": name}),
                   headers={"Content-Type": "application/json"})
    assert_json_error(r, 400)
    expect_error(lam.get_function, FunctionName=name, code="ResourceNotFoundException", status=404)


@pytest.mark.parametrize("method,path", [
    ("GET", "/no/such/path"),
    ("GET", "/2015-03-31/nothing-here"),
    ("POST", "/2015-03-31/functions/x/y/z"),
    ("GET", "/hearth/v1/no-such-thing"),
])
def test_unknown_path(hearth, method, path):
    r = hearth.raw(method, path)
    body = assert_json_error(r, {400, 403, 404})
    assert r.status != 200, body
    # Unsigned, too: still a JSON error, not a crash.
    assert_json_error(hearth.raw(method, path, sign=False), {400, 403, 404})


def test_wrong_method(hearth):
    r = hearth.raw("PATCH", "/2015-03-31/functions/")
    assert_json_error(r, {400, 403, 404, 405})


def test_every_response_has_a_request_id(hearth, lam):
    ok = lam.list_functions()
    assert ok["ResponseMetadata"].get("RequestId")
    r = hearth.raw("GET", "/2015-03-31/functions/does-not-exist-xyz")
    assert r.status == 404
    assert r.header("x-amzn-RequestId"), r.headers
    assert error_code(r) == "ResourceNotFoundException"
    assert r.json().get("Type") == "User"


def test_malformed_json_on_every_write_route(hearth, lam):
    """Every operation that takes a JSON body answers a broken one with a 400
    JSON error and changes nothing."""
    name = unique_name("routes")
    create_fn(lam, name, Publish=True)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    before = lam.get_function(FunctionName=name)
    # Each route with a broken body, and with a field of the wrong JSON type.
    routes = [
        ("POST", "/2015-03-31/functions", {"FunctionName": 7}),
        ("PUT", f"/2015-03-31/functions/{name}/code", {"ZipFile": 7}),
        ("PUT", f"/2015-03-31/functions/{name}/configuration", {"MemorySize": "big"}),
        ("POST", f"/2015-03-31/functions/{name}/versions", {"Description": 7}),
        ("POST", f"/2015-03-31/functions/{name}/aliases", {"Name": [], "FunctionVersion": 7}),
        ("PUT", f"/2015-03-31/functions/{name}/aliases/live", {"FunctionVersion": 7}),
        ("PUT", f"/2017-10-31/functions/{name}/concurrency", {"ReservedConcurrentExecutions": "many"}),
        ("POST", "/hearth/v1/accounts", {"Name": []}),
    ]
    for method, path, wrong_type in routes:
        for body in ("{broken", json.dumps(wrong_type)):
            r = hearth.raw(method, path, body, headers={"Content-Type": "application/json"})
            assert_json_error(r, 400)
    after = lam.get_function(FunctionName=name)
    assert after["Configuration"] == before["Configuration"]
    assert "Concurrency" not in after
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST", "1"]
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "1"
    lam.delete_function(FunctionName=name)


@pytest.mark.parametrize("query", ["MaxItems=abc", "MaxItems=0", "MaxItems=-1", "MaxItems=99999999999999999999"])
def test_bad_list_parameters(hearth, query):
    r = hearth.raw("GET", f"/2015-03-31/functions/?{query}")
    assert_json_error(r, 400)


def test_unknown_marker_is_not_a_server_error(hearth):
    r = hearth.raw("GET", "/2015-03-31/functions/?Marker=not-a-marker-I-was-given&MaxItems=2")
    assert r.status < 500, (r.status, r.body)
    if r.status >= 400:
        assert_json_error(r, r.status)
    else:
        assert isinstance(r.json().get("Functions"), list)
