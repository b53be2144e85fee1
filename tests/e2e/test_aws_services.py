"""The AWS services around Lambda on the same endpoint (issue 13), as real
clients call them: boto3 and the AWS CLI, signed with the account's keys.

So far: STS `GetCallerIdentity`, and the query protocol's error shape for
what is not there yet (botocore must parse every answer, errors included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from hearth_e2e import DEV_ACCOUNT, REGION


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
