"""The AWS services around Lambda on the same endpoint (issue 13), as real
clients call them: boto3 and the AWS CLI, signed with the account's keys.

So far: STS `GetCallerIdentity` and `AssumeRole` (temporary credentials
Hearth accepts), and the query protocol's error shape for what is not there
yet (botocore must parse every answer, errors included). IAM: test_iam.py.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from hearth_e2e import DEV_ACCOUNT, LAMBDA_TRUST_POLICY, REGION, invoke_ok, py_zip, unique_name


def sts(hearth, key: str = "test", secret: str = "test"):
    return boto3.session.Session().client(
        "sts", endpoint_url=hearth.endpoint, region_name=REGION,
        aws_access_key_id=key, aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 0}),
    )


def client_error(call) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as e:
        call()
    err = e.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"].get("Message", "")


def test_get_caller_identity_names_each_account(hearth, second_account):
    me = sts(hearth).get_caller_identity()
    assert (me["Account"], me["Arn"], me["UserId"]) == (DEV_ACCOUNT, f"arn:aws:iam::{DEV_ACCOUNT}:root", DEV_ACCOUNT)
    assert me["ResponseMetadata"]["HTTPStatusCode"] == 200 and me["ResponseMetadata"]["RequestId"]
    other = sts(hearth, second_account["AccessKeyId"], second_account["SecretAccessKey"]).get_caller_identity()
    assert other["Account"] == second_account["AccountId"] != DEV_ACCOUNT
    assert other["Arn"] == f"arn:aws:iam::{second_account['AccountId']}:root"


def test_sts_errors_parse_with_sts_codes(hearth):
    code, status, msg = client_error(lambda: sts(hearth, secret="wrong").get_caller_identity())
    assert (code, status) == ("SignatureDoesNotMatch", 403), msg
    code, status, _ = client_error(lambda: sts(hearth, key="AKIANOSUCHKEY0000000").get_caller_identity())
    assert (code, status) == ("InvalidClientTokenId", 403)
    # An STS action that is not there yet says so in STS's own shape.
    code, status, msg = client_error(lambda: sts(hearth).get_session_token())
    assert (code, status) == ("InvalidAction", 400) and "GetSessionToken" in msg, msg


def test_aws_cli_get_caller_identity(hearth, tmp_path):
    aws = Path(sys.executable).parent / "aws"
    if not aws.exists():
        pytest.fail(f"the AWS CLI is not installed in the venv ({aws}); see tests/e2e/requirements.txt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_MAX_ATTEMPTS="1", AWS_PAGER="")
    cp = subprocess.run([str(aws), "--endpoint-url", hearth.endpoint, "--output", "json", "sts", "get-caller-identity"],
                        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["Account"] == DEV_ACCOUNT


def test_lambda_routes_are_unchanged_beside_the_query_protocol(hearth, lam):
    """`/` with a JSON-protocol request (`X-Amz-Target`) answers in the JSON
    protocols' error shape, and the Lambda API is untouched."""
    r = hearth.raw("POST", "/", "{}", headers={"Content-Type": "application/x-amz-json-1.1",
                                               "X-Amz-Target": "Logs_20140328.DescribeLogGroups"})
    assert r.status == 400 and r.json()["__type"] == "UnknownOperationException", (r.status, r.body)
    assert "Logs_20140328.DescribeLogGroups" in r.json()["message"]
    assert "Functions" in lam.list_functions()


# ---- STS AssumeRole: temporary credentials Hearth then accepts ------------


def _client(server, service: str, creds: dict):
    return boto3.session.Session().client(
        service, endpoint_url=server.endpoint, region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds.get("SessionToken"),
        config=botocore.config.Config(retries={"max_attempts": 0}),
    )


def _role(server, account: dict, name: str = "deployer", **kw) -> str:
    iam = _client(server, "iam", account)
    return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST_POLICY), **kw)["Role"]["Arn"]


def test_assume_role_gives_credentials_hearth_accepts(hearth, fresh_account):
    arn = _role(hearth, fresh_account)
    sts_ = _client(hearth, "sts", fresh_account)
    got = sts_.assume_role(RoleArn=arn, RoleSessionName="ci-run", DurationSeconds=900)
    creds = got["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and creds["SessionToken"], creds
    left = (creds["Expiration"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 800 < left <= 900, creds["Expiration"]
    account = fresh_account["AccountId"]
    assert got["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{account}:assumed-role/deployer/ci-run"
    assert got["AssumedRoleUser"]["AssumedRoleId"].startswith("AROA")
    assert got["AssumedRoleUser"]["AssumedRoleId"].endswith(":ci-run")
    # The session is the account's, and says who it is.
    me = _client(hearth, "sts", creds).get_caller_identity()
    assert (me["Account"], me["Arn"]) == (account, got["AssumedRoleUser"]["Arn"])
    assert me["UserId"] == got["AssumedRoleUser"]["AssumedRoleId"]
    # Lambda takes the credentials: the session creates and invokes a function.
    lam = _client(hearth, "lambda", creds)
    name = unique_name("sess")
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=arn, Handler="handler.handler",
                        Code={"ZipFile": py_zip()})
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    assert invoke_ok(lam, name, {"x": 1}).status == 200
    # …and only this account's: the owner sees it, another account does not.
    assert hearth.account_client(fresh_account).get_function(FunctionName=name)
    # Without its token, with another's, or with a tampered one: refused.
    for bad in ({**creds, "SessionToken": None},
                {**creds, "SessionToken": creds["SessionToken"][:-4] + "AAAA"}):
        code, status, _ = client_error(lambda b=bad: _client(hearth, "sts", b).get_caller_identity())
        assert (code, status) == ("InvalidClientTokenId", 403)
        with pytest.raises(ClientError) as e:
            _client(hearth, "lambda", bad).list_functions()
        assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
    # A wrong secret with the right token fails the signature.
    code, _, _ = client_error(lambda: _client(hearth, "sts", {**creds, "SecretAccessKey": "x" * 40}).get_caller_identity())
    assert code == "SignatureDoesNotMatch"


def test_assume_role_is_scoped_to_the_account_and_validated(hearth, fresh_account, second_account):
    arn = _role(hearth, fresh_account, "scoped", MaxSessionDuration=3600)
    other = _client(hearth, "sts", second_account)
    code, status, msg = client_error(lambda: other.assume_role(RoleArn=arn, RoleSessionName="x1"))
    assert (code, status) == ("AccessDenied", 403) and "sts:AssumeRole" in msg, msg
    mine = _client(hearth, "sts", fresh_account)
    missing = arn.replace(":role/scoped", ":role/nope")
    assert client_error(lambda: mine.assume_role(RoleArn=missing, RoleSessionName="x1"))[:2] == ("AccessDenied", 403)
    code, status, msg = client_error(lambda: mine.assume_role(RoleArn=arn, RoleSessionName="x y"))
    assert (code, status) == ("ValidationError", 400) and "roleSessionName" in msg, msg
    code, _, msg = client_error(lambda: mine.assume_role(RoleArn=arn, RoleSessionName="long", DurationSeconds=7200))
    assert code == "ValidationError" and "MaxSessionDuration" in msg, msg
    with pytest.raises(Exception):  # botocore refuses < 900 before sending
        mine.assume_role(RoleArn=arn, RoleSessionName="short", DurationSeconds=60)


def test_sessions_outlive_a_restart(start_server):
    srv = start_server(unique_name("sts-restart"))
    acct = srv.create_account()
    arn = _role(srv, acct, "keeper")
    creds = _client(srv, "sts", acct).assume_role(RoleArn=arn, RoleSessionName="s1")["Credentials"]
    srv.restart()
    me = _client(srv, "sts", creds).get_caller_identity()
    assert me["Account"] == acct["AccountId"] and ":assumed-role/keeper/s1" in me["Arn"]
