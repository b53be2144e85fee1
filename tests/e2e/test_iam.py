"""IAM on Hearth's endpoint (issue 13), as boto3 calls it: roles, their
attached managed and inline policies, customer managed policies, in IAM's
query protocol and XML, per account and durable; and Lambda's check that a
function's role exists in its account (every account but the dev account by
default, `[iam] check_function_roles`).

Hearth keeps these entities; it does not evaluate policies.
"""

from __future__ import annotations

import datetime
import json
import re
import urllib.parse

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from hearth_e2e import (
    DEV_ACCOUNT,
    DEV_KEY,
    DEV_SECRET,
    LAMBDA_TRUST_POLICY,
    PY_RUNTIME,
    REGION,
    ROLE,
    WAITER,
    invoke_ok,
    py_zip,
    unique_name,
)

BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
LOGS_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                   "Resource": "arn:aws:logs:*:*:*"}],
}
CANNOT_ASSUME = "The role defined for the function cannot be assumed by Lambda."


def aws(server, service: str, account: dict | None = None, **config):
    """A boto3 client of `service` on the server, as the dev account or `account`."""
    cfg = dict(retries={"max_attempts": 0})
    cfg.update(config)
    key, secret = (account["AccessKeyId"], account["SecretAccessKey"]) if account else (DEV_KEY, DEV_SECRET)
    return boto3.session.Session().client(
        service, endpoint_url=server.endpoint, region_name=REGION,
        aws_access_key_id=key, aws_secret_access_key=secret, config=botocore.config.Config(**cfg),
    )


def client_error(call, *args, **kwargs) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as e:
        call(*args, **kwargs)
    err = e.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"].get("Message", "")


def iam_query(server, form: dict, account: dict | None = None):
    """A raw, signed IAM query request: (status, XML text)."""
    kw = {"access_key": account["AccessKeyId"], "secret": account["SecretAccessKey"]} if account else {}
    r = server.raw("POST", "/", urllib.parse.urlencode(form), service="iam",
                   headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, **kw)
    return r.status, r.body.decode()


def role_names(iam, **kw) -> list[str]:
    return [r["RoleName"] for r in iam.list_roles(**kw)["Roles"]]


@pytest.fixture
def iam(hearth, fresh_account):
    """The IAM client of a brand-new account (so listings hold only this test's entities)."""
    return aws(hearth, "iam", fresh_account)


# ---------------------------------------------------------------------------
# Roles


def test_role_lifecycle(iam, fresh_account):
    acct = fresh_account["AccountId"]
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    created = iam.create_role(
        RoleName="Deployer", Path="/ci/", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST_POLICY),
        Description="deploys & tests", MaxSessionDuration=7200, Tags=[{"Key": "team", "Value": "a b"}],
    )
    role = created["Role"]
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 200 and created["ResponseMetadata"]["RequestId"]
    assert role["RoleName"] == "Deployer" and role["Path"] == "/ci/"
    assert role["Arn"] == f"arn:aws:iam::{acct}:role/ci/Deployer"
    assert re.fullmatch(r"AROA[A-Z0-9]{17}", role["RoleId"]), role["RoleId"]
    # botocore URL-decodes and parses the document: what was sent comes back as a dict.
    assert role["AssumeRolePolicyDocument"] == LAMBDA_TRUST_POLICY
    assert role["Description"] == "deploys & tests" and role["MaxSessionDuration"] == 7200
    assert role["Tags"] == [{"Key": "team", "Value": "a b"}]
    assert isinstance(role["CreateDate"], datetime.datetime)
    assert before <= role["CreateDate"] <= datetime.datetime.now(datetime.timezone.utc)

    # Names are case-insensitive and keep their case.
    got = iam.get_role(RoleName="deployer")["Role"]
    assert got == role
    listed = iam.list_roles()
    assert listed["IsTruncated"] is False and "Marker" not in listed
    assert [r["RoleName"] for r in listed["Roles"]] == ["Deployer"]
    assert listed["Roles"][0]["AssumeRolePolicyDocument"] == LAMBDA_TRUST_POLICY

    # Defaults: path "/", 3600 s, no description.
    plain = iam.create_role(RoleName="plain", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST_POLICY))["Role"]
    assert (plain["Path"], plain["MaxSessionDuration"], plain["Arn"]) == (
        "/", 3600, f"arn:aws:iam::{acct}:role/plain")
    assert "Description" not in plain and "Tags" not in plain

    assert iam.delete_role(RoleName="DEPLOYER")["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(iam.exceptions.NoSuchEntityException) as e:
        iam.get_role(RoleName="Deployer")
    err = e.value.response
    assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == ("NoSuchEntity", 404)
    assert err["Error"]["Message"] == "The role with name Deployer cannot be found."
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.delete_role(RoleName="Deployer")
    assert role_names(iam) == ["plain"]


def test_list_roles_pages_and_filters_by_path(iam):
    trust = json.dumps(LAMBDA_TRUST_POLICY)
    for name, path in [("e", "/"), ("b", "/app/"), ("D", "/app/x/"), ("a", "/"), ("c", "/ops/")]:
        iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=trust)
    seen, pages, marker = [], [], None
    for _ in range(5):  # bounded: 5 roles in pages of 2 take 3 pages
        page = iam.list_roles(MaxItems=2, **({"Marker": marker} if marker else {}))
        pages.append(len(page["Roles"]))
        seen += [r["RoleName"] for r in page["Roles"]]
        assert page["IsTruncated"] is ("Marker" in page)
        marker = page.get("Marker")
        if not marker:
            break
    assert pages == [2, 2, 1] and seen == ["a", "b", "c", "D", "e"], (pages, seen)
    # botocore's paginator follows the same markers.
    paginated = [r["RoleName"] for p in iam.get_paginator("list_roles").paginate(PaginationConfig={"PageSize": 2})
                 for r in p["Roles"]]
    assert paginated == seen
    assert role_names(iam, PathPrefix="/app/") == ["b", "D"]
    assert role_names(iam, PathPrefix="/app/x") == ["D"]
    assert role_names(iam, PathPrefix="/nothing/") == []


# ---------------------------------------------------------------------------
# Policies


def test_managed_policies_attach_detach_and_delete(iam, fresh_account):
    acct = fresh_account["AccountId"]
    iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST_POLICY))
    policy = iam.create_policy(PolicyName="Logs", Path="/team/", PolicyDocument=json.dumps(LOGS_POLICY),
                               Description="log writing")["Policy"]
    arn = f"arn:aws:iam::{acct}:policy/team/Logs"
    assert policy["Arn"] == arn and policy["PolicyName"] == "Logs" and policy["Path"] == "/team/"
    assert re.fullmatch(r"ANPA[A-Z0-9]{17}", policy["PolicyId"]), policy["PolicyId"]
    assert (policy["DefaultVersionId"], policy["AttachmentCount"], policy["PermissionsBoundaryUsageCount"],
            policy["IsAttachable"], policy["Description"]) == ("v1", 0, 0, True, "log writing")
    assert isinstance(policy["CreateDate"], datetime.datetime) and policy["UpdateDate"] == policy["CreateDate"]
    # The one version, as Terraform reads it after GetPolicy.
    version = iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]
    assert (version["VersionId"], version["IsDefaultVersion"], version["Document"]) == ("v1", True, LOGS_POLICY)
    assert [v["VersionId"] for v in iam.list_policy_versions(PolicyArn=arn)["Versions"]] == ["v1"]
    code, status, _ = client_error(iam.get_policy_version, PolicyArn=arn, VersionId="v2")
    assert (code, status) == ("NoSuchEntity", 404)

    iam.attach_role_policy(RoleName="fn-role", PolicyArn=arn)
    iam.attach_role_policy(RoleName="FN-ROLE", PolicyArn=arn)  # again: a no-op, as in IAM
    # AWS managed policies are taken as named (Terraform and the CDK attach them).
    iam.attach_role_policy(RoleName="fn-role", PolicyArn=BASIC_EXECUTION)
    attached = iam.list_attached_role_policies(RoleName="fn-role")
    assert attached["IsTruncated"] is False
    assert sorted(attached["AttachedPolicies"], key=lambda p: p["PolicyName"]) == [
        {"PolicyName": "AWSLambdaBasicExecutionRole", "PolicyArn": BASIC_EXECUTION},
        {"PolicyName": "Logs", "PolicyArn": arn},
    ]
    assert iam.list_attached_role_policies(RoleName="fn-role", PathPrefix="/service-role/")[
        "AttachedPolicies"] == [{"PolicyName": "AWSLambdaBasicExecutionRole", "PolicyArn": BASIC_EXECUTION}]
    first = iam.list_attached_role_policies(RoleName="fn-role", MaxItems=1)
    rest = iam.list_attached_role_policies(RoleName="fn-role", MaxItems=1, Marker=first["Marker"])
    assert first["IsTruncated"] and not rest["IsTruncated"]
    assert {p["PolicyArn"] for p in first["AttachedPolicies"] + rest["AttachedPolicies"]} == {arn, BASIC_EXECUTION}
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1

    with pytest.raises(iam.exceptions.DeleteConflictException) as e:
        iam.delete_policy(PolicyArn=arn)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert e.value.response["Error"]["Message"] == "Cannot delete a policy attached to entities."
    with pytest.raises(iam.exceptions.DeleteConflictException) as e:
        iam.delete_role(RoleName="fn-role")
    assert e.value.response["Error"]["Message"] == "Cannot delete entity, must detach all policies first."

    iam.detach_role_policy(RoleName="fn-role", PolicyArn=arn)
    iam.detach_role_policy(RoleName="fn-role", PolicyArn=BASIC_EXECUTION)
    code, status, msg = client_error(iam.detach_role_policy, RoleName="fn-role", PolicyArn=arn)
    assert (code, status, msg) == ("NoSuchEntity", 404, f"Policy {arn} was not found.")
    assert iam.list_attached_role_policies(RoleName="fn-role")["AttachedPolicies"] == []
    iam.delete_policy(PolicyArn=arn)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_policy(PolicyArn=arn)
    iam.delete_role(RoleName="fn-role")


def test_inline_policies(iam):
    iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST_POLICY))
    iam.put_role_policy(RoleName="fn-role", PolicyName="logs", PolicyDocument=json.dumps(LOGS_POLICY))
    iam.put_role_policy(RoleName="fn-role", PolicyName="s3", PolicyDocument=json.dumps({"Statement": []}))
    got = iam.get_role_policy(RoleName="fn-role", PolicyName="logs")
    assert (got["RoleName"], got["PolicyName"], got["PolicyDocument"]) == ("fn-role", "logs", LOGS_POLICY)
    assert iam.list_role_policies(RoleName="fn-role")["PolicyNames"] == ["logs", "s3"]
    # Putting again replaces it.
    iam.put_role_policy(RoleName="fn-role", PolicyName="logs", PolicyDocument=json.dumps({"Statement": []}))
    assert iam.get_role_policy(RoleName="fn-role", PolicyName="logs")["PolicyDocument"] == {"Statement": []}
    # Managed policies attached to it are a separate list.
    assert iam.list_attached_role_policies(RoleName="fn-role")["AttachedPolicies"] == []

    with pytest.raises(iam.exceptions.DeleteConflictException) as e:
        iam.delete_role(RoleName="fn-role")
    assert e.value.response["Error"]["Message"] == "Cannot delete entity, must delete policies first."
    iam.delete_role_policy(RoleName="fn-role", PolicyName="logs")
    code, status, msg = client_error(iam.delete_role_policy, RoleName="fn-role", PolicyName="logs")
    assert (code, status, msg) == ("NoSuchEntity", 404, "The role policy with name logs cannot be found.")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role_policy(RoleName="fn-role", PolicyName="logs")
    iam.delete_role_policy(RoleName="fn-role", PolicyName="s3")
    iam.delete_role(RoleName="fn-role")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.put_role_policy(RoleName="fn-role", PolicyName="x", PolicyDocument="{}")


# ---------------------------------------------------------------------------
# Errors: IAM's codes, parsed by botocore; nothing stored


def test_errors_are_iam_errors_and_store_nothing(hearth, fresh_account):
    iam = aws(hearth, "iam", fresh_account)
    loose = aws(hearth, "iam", fresh_account, parameter_validation=False)
    trust = json.dumps(LAMBDA_TRUST_POLICY)
    iam.create_role(RoleName="taken", AssumeRolePolicyDocument=trust)

    with pytest.raises(iam.exceptions.EntityAlreadyExistsException) as e:
        iam.create_role(RoleName="TAKEN", AssumeRolePolicyDocument=trust)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert e.value.response["Error"]["Message"] == "Role with name TAKEN already exists."

    assert client_error(loose.create_role, RoleName="x y", AssumeRolePolicyDocument=trust) == (
        "ValidationError", 400,
        r"1 validation error detected: Value 'x y' at 'roleName' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: [\w+=,.@-]+")
    code, status, msg = client_error(loose.create_role, RoleName="r" * 65, AssumeRolePolicyDocument=trust,
                                     MaxSessionDuration=100, Path="no-slashes")
    assert (code, status) == ("ValidationError", 400) and msg.startswith("3 validation errors detected: "), msg
    assert "'maxSessionDuration'" in msg and "'path'" in msg and "length less than or equal to 64" in msg

    for doc in ("{not json", "[1, 2]"):
        with pytest.raises(iam.exceptions.MalformedPolicyDocumentException) as e:
            iam.create_role(RoleName="malformed", AssumeRolePolicyDocument=doc)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException) as e:
        iam.create_policy(PolicyName="malformed", PolicyDocument="{")
    assert e.value.response["Error"]["Message"] == "This policy contains invalid Json"
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        iam.put_role_policy(RoleName="taken", PolicyName="malformed", PolicyDocument="nope")

    with pytest.raises(iam.exceptions.InvalidInputException) as e:
        iam.attach_role_policy(RoleName="taken", PolicyArn="arn:aws:iam::aws:nothing-here")
    assert e.value.response["Error"]["Message"] == "ARN arn:aws:iam::aws:nothing-here is not valid."
    missing = f"arn:aws:iam::{fresh_account['AccountId']}:policy/Missing"
    with pytest.raises(iam.exceptions.NoSuchEntityException) as e:
        iam.attach_role_policy(RoleName="taken", PolicyArn=missing)
    assert e.value.response["Error"]["Message"] == f"Policy {missing} does not exist or is not attachable."

    # A role holds at most 10 managed policies.
    for i in range(10):
        iam.attach_role_policy(RoleName="taken", PolicyArn=f"arn:aws:iam::aws:policy/Policy{i}")
    with pytest.raises(iam.exceptions.LimitExceededException) as e:
        iam.attach_role_policy(RoleName="taken", PolicyArn="arn:aws:iam::aws:policy/OneTooMany")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert e.value.response["Error"]["Message"] == "Cannot exceed quota for PoliciesPerRole: 10"

    # Nothing of the failed calls was stored.
    assert role_names(iam) == ["taken"]
    assert iam.list_role_policies(RoleName="taken")["PolicyNames"] == []
    assert len(iam.list_attached_role_policies(RoleName="taken")["AttachedPolicies"]) == 10
    assert client_error(iam.get_policy, PolicyArn=f"arn:aws:iam::{fresh_account['AccountId']}:policy/malformed")[0] \
        == "NoSuchEntity"


def test_unknown_actions_and_raw_requests_get_iam_error_shapes(hearth, iam):
    # An IAM action Hearth does not implement: botocore parses the error.
    code, status, msg = client_error(iam.get_user)
    assert (code, status, msg) == ("InvalidAction", 400, "Could not find operation GetUser for version 2010-05-08")
    status, xml = iam_query(hearth, {"Action": "GetRole", "Version": "2010-05-08"})
    assert status == 400, xml
    assert xml.startswith('<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error>'
                          "<Type>Sender</Type><Code>ValidationError</Code>"), xml
    assert "Value null at &apos;roleName&apos; failed to satisfy constraint: Member must not be null" in xml
    status, xml = iam_query(hearth, {"Action": "GetRole", "Version": "2099-01-01", "RoleName": "x"})
    assert status == 400 and "<Code>InvalidAction</Code>" in xml, xml
    assert "Could not find operation GetRole for version 2099-01-01" in xml
    status, xml = iam_query(hearth, {"Version": "2010-05-08"})
    assert status == 400 and "<Code>MissingAction</Code>" in xml, xml
    # A bad signature is IAM's error too.
    bad = boto3.session.Session().client(
        "iam", endpoint_url=hearth.endpoint, region_name=REGION, aws_access_key_id=DEV_KEY,
        aws_secret_access_key="wrong", config=botocore.config.Config(retries={"max_attempts": 0}))
    assert client_error(bad.list_roles)[:2] == ("SignatureDoesNotMatch", 403)


def test_accounts_are_isolated(hearth, fresh_account, second_account):
    a = aws(hearth, "iam", fresh_account)
    b = aws(hearth, "iam", second_account)
    a.create_role(RoleName="private", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST_POLICY))
    arn = a.create_policy(PolicyName="Private", PolicyDocument=json.dumps(LOGS_POLICY))["Policy"]["Arn"]
    a.put_role_policy(RoleName="private", PolicyName="inline", PolicyDocument=json.dumps(LOGS_POLICY))
    role_b = unique_name("b-role")
    b.create_role(RoleName=role_b, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST_POLICY))

    for call, kw in [
        (b.get_role, {"RoleName": "private"}),
        (b.delete_role, {"RoleName": "private"}),
        (b.get_policy, {"PolicyArn": arn}),
        (b.delete_policy, {"PolicyArn": arn}),
        (b.attach_role_policy, {"RoleName": role_b, "PolicyArn": arn}),
        (b.attach_role_policy, {"RoleName": "private", "PolicyArn": BASIC_EXECUTION}),
        (b.get_role_policy, {"RoleName": "private", "PolicyName": "inline"}),
        (b.delete_role_policy, {"RoleName": "private", "PolicyName": "inline"}),
        (b.list_attached_role_policies, {"RoleName": "private"}),
    ]:
        code, status, _ = client_error(call, **kw)
        assert (code, status) == ("NoSuchEntity", 404), (call, kw)
    assert "private" not in role_names(b)
    # Nothing of A's changed.
    assert a.get_role(RoleName="private")["Role"]["RoleName"] == "private"
    assert a.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 0
    assert a.list_role_policies(RoleName="private")["PolicyNames"] == ["inline"]
    assert a.list_attached_role_policies(RoleName="private")["AttachedPolicies"] == []


def test_iam_entities_survive_a_restart(start_server):
    srv = start_server(unique_name("iam-restart"))
    acct = srv.create_account()
    iam = aws(srv, "iam", acct)
    role = iam.create_role(RoleName="durable", Path="/keep/", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST_POLICY),
                           Tags=[{"Key": "k", "Value": "v"}])["Role"]
    arn = iam.create_policy(PolicyName="Durable", PolicyDocument=json.dumps(LOGS_POLICY))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="durable", PolicyArn=arn)
    iam.put_role_policy(RoleName="durable", PolicyName="inline", PolicyDocument=json.dumps(LOGS_POLICY))

    srv.restart()
    iam = aws(srv, "iam", acct)
    assert iam.get_role(RoleName="durable")["Role"] == role
    assert iam.list_attached_role_policies(RoleName="durable")["AttachedPolicies"] == [
        {"PolicyName": "Durable", "PolicyArn": arn}]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1
    assert iam.get_role_policy(RoleName="durable", PolicyName="inline")["PolicyDocument"] == LOGS_POLICY
    # A function may name it after the restart.
    lam = srv.account_client(acct)
    name = unique_name("durable-fn")
    lam.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=role["Arn"], Handler="handler.handler",
                        Code={"ZipFile": py_zip()})


# ---------------------------------------------------------------------------
# Lambda: a function's role must exist in its account


def test_terraform_style_start_up(hearth, fresh_account):
    """GetCallerIdentity, CreateRole, CreateFunction with that role, Invoke,
    on a node with the default setting and an account that is not the dev
    account's."""
    sts = aws(hearth, "sts", fresh_account)
    iam = aws(hearth, "iam", fresh_account)
    lam = hearth.account_client(fresh_account)
    me = sts.get_caller_identity()
    assert me["Account"] == fresh_account["AccountId"] != DEV_ACCOUNT

    role = iam.create_role(RoleName="terraform-fn", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST_POLICY))
    arn = role["Role"]["Arn"]
    assert arn == f"arn:aws:iam::{me['Account']}:role/terraform-fn"
    iam.attach_role_policy(RoleName="terraform-fn", PolicyArn=BASIC_EXECUTION)
    name = unique_name("tf")
    created = lam.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=arn, Handler="handler.handler",
                                  Code={"ZipFile": py_zip()})
    assert created["Role"] == arn
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    assert invoke_ok(lam, name, {"hello": "iam"}).json() == {"ok": True, "event": {"hello": "iam"}}

    # A role that does not exist, another account's role, or one at another
    # path fails as on AWS, and stores nothing.
    for bad in (f"arn:aws:iam::{me['Account']}:role/not-created", ROLE,
                f"arn:aws:iam::{me['Account']}:role/other-path/terraform-fn"):
        missing = unique_name("no-role")
        code, status, msg = client_error(lam.create_function, FunctionName=missing, Runtime=PY_RUNTIME, Role=bad,
                                         Handler="handler.handler", Code={"ZipFile": py_zip()})
        assert (code, status, msg) == ("InvalidParameterValueException", 400, CANNOT_ASSUME), bad
        assert client_error(lam.get_function, FunctionName=missing)[0] == "ResourceNotFoundException"
    code, status, msg = client_error(lam.update_function_configuration, FunctionName=name,
                                     Role=f"arn:aws:iam::{me['Account']}:role/not-created")
    assert (code, status, msg) == ("InvalidParameterValueException", 400, CANNOT_ASSUME)
    assert lam.get_function_configuration(FunctionName=name)["Role"] == arn


def test_the_dev_account_needs_no_role_by_default(hearth, lam):
    """The README tour: the dev account's made-up role still works."""
    name = unique_name("tour")
    created = lam.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE, Handler="handler.handler",
                                  Code={"ZipFile": py_zip()})
    assert created["Role"] == ROLE
    lam.delete_function(FunctionName=name)


@pytest.mark.parametrize("setting", ["all", "none"])
def test_check_function_roles_setting(start_server, setting):
    srv = start_server(unique_name(f"roles-{setting}"), config=f'[iam]\ncheck_function_roles = "{setting}"\n')
    acct = srv.create_account()
    made_up = f"arn:aws:iam::{acct['AccountId']}:role/made-up"
    for client, role in ((srv.client(), ROLE), (srv.account_client(acct), made_up)):
        name = unique_name("setting")
        create = lambda: client.create_function(  # noqa: E731
            FunctionName=name, Runtime=PY_RUNTIME, Role=role, Handler="handler.handler", Code={"ZipFile": py_zip()})
        if setting == "all":
            assert client_error(create) == ("InvalidParameterValueException", 400, CANNOT_ASSUME)
        else:
            assert create()["Role"] == role
    if setting == "all":
        # With a real role, the dev account creates functions too.
        arn = aws(srv, "iam").create_role(RoleName="dev-role",
                                          AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST_POLICY))["Role"]["Arn"]
        assert srv.client().create_function(FunctionName=unique_name("dev"), Runtime=PY_RUNTIME, Role=arn,
                                            Handler="handler.handler", Code={"ZipFile": py_zip()})["Role"] == arn


def test_a_bad_check_function_roles_setting_stops_the_server(start_server):
    with pytest.raises(RuntimeError, match="check_function_roles"):
        start_server(unique_name("roles-bad"), config='[iam]\ncheck_function_roles = "sometimes"\n')
