"""The Lambda control plane through boto3: lifecycle, waiters, listing,
versions, aliases, concurrency, account settings and name resolution.

Shapes are compared with AWS's recorded responses
(/work/shared/lambda/aws-recorded, found beside the repo as shared/lambda/…).
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path

import pytest

from hearth_e2e import (
    DEV_ACCOUNT,
    PY_HANDLER,
    PY_RUNTIME,
    REGION,
    ROLE,
    WAITER,
    code_sha256,
    create_fn,
    expect_error,
    list_all_functions,
    py_zip,
    unique_name,
)

LAST_MODIFIED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Fields of AWS's FunctionConfiguration that Hearth does not produce (it
# now produces them all: RuntimeVersionConfig names where the function runs).
HEARTH_OMITS: set[str] = set()


def arn(name: str, qualifier: str | None = None, account: str = DEV_ACCOUNT) -> str:
    a = f"arn:aws:lambda:{REGION}:{account}:function:{name}"
    return f"{a}:{qualifier}" if qualifier else a


def not_found_message(name: str, qualifier: str | None = None, account: str = DEV_ACCOUNT) -> str:
    return f"Function not found: {arn(name, qualifier, account)}"


# ---------------------------------------------------------------------------
# The AWS recording


def _recordings_dir() -> Path | None:
    """shared/ sits beside the repo (as on developer machines and in CI)."""
    candidates = []
    if os.environ.get("HEARTH_SHARED_DIR"):
        candidates.append(Path(os.environ["HEARTH_SHARED_DIR"]))
    parents = Path(__file__).resolve().parents
    if len(parents) > 3:
        candidates.append(parents[3] / "shared")  # <repo>/tests/e2e/x.py -> <repo>/../shared
    candidates.append(Path("/work/shared"))
    for base in candidates:
        d = base / "lambda" / "aws-recorded"
        if d.is_dir():
            return d
    return None


def recorded(test_suffix: str) -> dict:
    d = _recordings_dir()
    if d is None:
        pytest.skip("AWS recordings (shared/lambda/aws-recorded) not found beside the repo")
    for f in sorted(d.glob("*.snapshot.json")):
        data = json.loads(f.read_text())
        for k, v in data.items():
            if k.endswith(test_suffix):
                return v["recorded-content"]
    raise AssertionError(f"no recording for {test_suffix}")


def without_meta(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "ResponseMetadata"}


# ---------------------------------------------------------------------------
# Lifecycle


def test_function_lifecycle_matches_aws_shapes(lam):
    rec = recorded("TestLambdaFunction::test_function_lifecycle")
    rec_create = without_meta(rec["create_response"]["CreateFunctionResponse"])
    rec_get = without_meta(rec["get_function_response"])
    rec_update_conf = without_meta(rec["update_func_conf_response"])
    rec_update_code = without_meta(rec["update_code_response"])

    name = unique_name("lifecycle")
    zip1 = py_zip()
    # As the recorded test: handler.handler, 256 MB, 5 s, an (empty) environment.
    created = lam.create_function(
        FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE, Handler="handler.handler",
        Code={"ZipFile": zip1}, MemorySize=256, Timeout=5, Environment={"Variables": {}},
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert set(without_meta(created)) == set(rec_create) - HEARTH_OMITS
    assert created["FunctionName"] == name
    assert created["FunctionArn"] == arn(name)
    assert created["Runtime"] == PY_RUNTIME
    assert created["Role"] == ROLE
    assert created["Handler"] == "handler.handler"
    assert created["CodeSize"] == len(zip1)
    assert created["CodeSha256"] == code_sha256(zip1)
    assert created["Description"] == ""
    assert created["MemorySize"] == 256
    assert created["Timeout"] == 5
    assert created["Version"] == "$LATEST"
    assert created["Environment"] == {"Variables": {}}
    assert created["TracingConfig"] == {"Mode": "PassThrough"}
    assert created["PackageType"] == "Zip"
    assert created["Architectures"] == ["x86_64"]
    assert created["EphemeralStorage"] == {"Size": 512}
    assert created["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    assert created["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"}
    assert LAST_MODIFIED.match(created["LastModified"]), created["LastModified"]
    assert UUID.match(created["RevisionId"]), created["RevisionId"]
    assert created["State"] == "Pending"
    assert created["StateReason"] == rec_create["StateReason"]
    assert created["StateReasonCode"] == rec_create["StateReasonCode"]

    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAITER)

    got = lam.get_function(FunctionName=name)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert set(without_meta(got)) >= {"Configuration", "Code"}
    assert set(without_meta(got)) <= {"Configuration", "Code", "Tags", "Concurrency"}
    conf = got["Configuration"]
    assert set(conf) == set(rec_get["Configuration"]) - HEARTH_OMITS
    assert conf["State"] == "Active"
    assert conf["LastUpdateStatus"] == "Successful"
    assert conf["CodeSha256"] == code_sha256(zip1)
    assert conf["MemorySize"] == 256 and conf["Timeout"] == 5
    assert got["Code"]["RepositoryType"] == "S3"
    assert isinstance(got["Code"].get("Location"), str)

    only_conf = lam.get_function_configuration(FunctionName=name)
    assert without_meta(only_conf) == conf

    # UpdateFunctionConfiguration: InProgress, then Successful (function_updated_v2).
    upd = lam.update_function_configuration(
        FunctionName=name, Description="Changed-Description", MemorySize=512, Timeout=10,
        Environment={"Variables": {"ENV_A": "a"}},
    )
    assert upd["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert set(without_meta(upd)) == set(rec_update_conf) - HEARTH_OMITS
    assert upd["LastUpdateStatus"] == "InProgress"
    assert upd["LastUpdateStatusReasonCode"] == rec_update_conf["LastUpdateStatusReasonCode"]
    assert upd["RevisionId"] != conf["RevisionId"]
    assert (upd["Description"], upd["MemorySize"], upd["Timeout"]) == ("Changed-Description", 512, 10)
    assert upd["Environment"] == {"Variables": {"ENV_A": "a"}}
    assert upd["CodeSha256"] == code_sha256(zip1)

    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    conf2 = lam.get_function(FunctionName=name)["Configuration"]
    assert conf2["LastUpdateStatus"] == "Successful"
    assert conf2["State"] == "Active"
    assert conf2["Description"] == "Changed-Description"
    assert conf2["MemorySize"] == 512 and conf2["Timeout"] == 10
    assert conf2["Environment"] == {"Variables": {"ENV_A": "a"}}

    # UpdateFunctionCode.
    zip2 = py_zip()
    upc = lam.update_function_code(FunctionName=name, ZipFile=zip2)
    assert set(without_meta(upc)) == set(rec_update_code) - HEARTH_OMITS
    assert upc["CodeSha256"] == code_sha256(zip2)
    assert upc["CodeSize"] == len(zip2)
    assert upc["LastUpdateStatus"] == "InProgress"
    assert upc["Description"] == "Changed-Description"  # configuration kept
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    conf3 = lam.get_function(FunctionName=name)["Configuration"]
    assert conf3["CodeSha256"] == code_sha256(zip2)
    assert conf3["LastUpdateStatus"] == "Successful"

    listed = {f["FunctionName"]: f for f in list_all_functions(lam)}
    assert listed[name]["CodeSha256"] == code_sha256(zip2)
    assert listed[name]["FunctionArn"] == arn(name)

    # DeleteFunction: 204, then not found with Lambda's message.
    deleted = lam.delete_function(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(lam.get_function, FunctionName=name, code="ResourceNotFoundException",
                 status=404, message=not_found_message(name))
    expect_error(lam.delete_function, FunctionName=name, code="ResourceNotFoundException", status=404)
    assert name not in {f["FunctionName"] for f in list_all_functions(lam)}


def test_defaults_and_must_have_fields(lam):
    name = unique_name("defaults")
    z = py_zip()
    created = create_fn(lam, name, zip_bytes=z)
    assert created["Timeout"] == 3
    assert created["MemorySize"] == 128
    assert created["Description"] == ""
    assert "LastUpdateStatus" not in created  # AWS omits it right after create
    conf = lam.get_function_configuration(FunctionName=name)
    must_have = {
        "FunctionName", "FunctionArn", "Runtime", "Role", "Handler", "CodeSize", "Description",
        "Timeout", "MemorySize", "LastModified", "CodeSha256", "Version", "TracingConfig",
        "RevisionId", "State", "LastUpdateStatus", "PackageType", "Architectures",
        "EphemeralStorage", "SnapStart", "LoggingConfig",
    }
    missing = must_have - set(conf)
    assert not missing, f"missing fields: {missing}"
    # No environment given: AWS omits Environment; and empty Layers are omitted too.
    assert "Environment" not in conf
    assert "Layers" not in conf or conf["Layers"] == []
    lam.delete_function(FunctionName=name)


def test_create_existing_name_conflicts(lam):
    name = unique_name("dup")
    z = py_zip()
    create_fn(lam, name, zip_bytes=z)
    expect_error(lam.create_function, FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE,
                 Handler="handler.handler", Code={"ZipFile": py_zip()},
                 code="ResourceConflictException", status=409, message_contains=name)
    # The original is untouched.
    assert lam.get_function(FunctionName=name)["Configuration"]["CodeSha256"] == code_sha256(z)
    lam.delete_function(FunctionName=name)


def test_update_with_wrong_revision_id_is_refused(lam):
    name = unique_name("rev")
    create_fn(lam, name)
    expect_error(lam.update_function_configuration, FunctionName=name, Description="x",
                 RevisionId="00000000-0000-0000-0000-000000000000",
                 code="PreconditionFailedException", status=412)
    expect_error(lam.update_function_code, FunctionName=name, ZipFile=py_zip(),
                 RevisionId="00000000-0000-0000-0000-000000000000",
                 code="PreconditionFailedException", status=412)
    rev = lam.get_function(FunctionName=name)["Configuration"]["RevisionId"]
    ok = lam.update_function_configuration(FunctionName=name, Description="y", RevisionId=rev)
    assert ok["Description"] == "y"
    lam.delete_function(FunctionName=name)


def _random_zip(mb: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("handler.py", PY_HANDLER)
        zf.writestr("data.bin", os.urandom(mb * 1024 * 1024))
    return buf.getvalue()


def test_large_code_package(lam):
    """Zips well past a web framework's default body limit (up to 50 MB zipped
    is allowed) go through CreateFunction and UpdateFunctionCode."""
    name = unique_name("large")
    z1 = _random_zip(10)
    created = lam.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE,
                                  Handler="handler.handler", Code={"ZipFile": z1})
    assert created["CodeSha256"] == code_sha256(z1)
    assert created["CodeSize"] == len(z1)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    z2 = _random_zip(30)
    updated = lam.update_function_code(FunctionName=name, ZipFile=z2)
    assert updated["CodeSha256"] == code_sha256(z2)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    assert lam.get_function(FunctionName=name)["Configuration"]["CodeSize"] == len(z2)
    lam.delete_function(FunctionName=name)


# ---------------------------------------------------------------------------
# Listing


def test_list_functions_pagination(hearth, fresh_client):
    lam = fresh_client
    assert list_all_functions(lam) == []
    names = sorted(unique_name(f"page{i}") for i in range(7))
    for n in names:
        create_fn(lam, n, wait=False)

    seen: list[str] = []
    pages = []
    marker = None
    for _ in range(10):  # bounded: 7 functions in pages of 3 need 3 pages
        kw = {"MaxItems": 3}
        if marker:
            kw["Marker"] = marker
        page = lam.list_functions(**kw)
        pages.append(len(page["Functions"]))
        assert len(page["Functions"]) <= 3
        seen.extend(f["FunctionName"] for f in page["Functions"])
        marker = page.get("NextMarker")
        if not marker:
            break
    assert pages == [3, 3, 1], pages
    assert len(seen) == len(set(seen)), f"duplicates across pages: {seen}"
    assert sorted(seen) == names

    # boto3's paginator follows the same markers.
    via_paginator = []
    for page in lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2, "MaxItems": 100}):
        via_paginator.extend(f["FunctionName"] for f in page["Functions"])
    assert sorted(via_paginator) == names

    everything = lam.list_functions()
    assert sorted(f["FunctionName"] for f in everything["Functions"]) == names
    assert "NextMarker" not in everything
    for n in names:
        lam.delete_function(FunctionName=n)
    assert lam.list_functions()["Functions"] == []


# ---------------------------------------------------------------------------
# Versions


def test_versions(lam):
    name = unique_name("ver")
    z1 = py_zip()
    created = create_fn(lam, name, zip_bytes=z1, Publish=True)
    assert created["Version"] == "1"
    assert created["FunctionArn"] == arn(name, "1")

    # Nothing changed since version 1: publishing again returns version 1.
    again = lam.publish_version(FunctionName=name)
    assert again["ResponseMetadata"]["HTTPStatusCode"] in (200, 201)
    assert again["Version"] == "1"
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST", "1"]

    # Change the configuration, publish version 2 with the right preconditions.
    lam.update_function_configuration(FunctionName=name, Description="second")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    latest = lam.get_function(FunctionName=name)["Configuration"]

    expect_error(lam.publish_version, FunctionName=name, CodeSha256="somenonexistentsha256",
                 code="InvalidParameterValueException", status=400,
                 message=(f"CodeSHA256 (somenonexistentsha256) is different from current CodeSHA256 in "
                          f"$LATEST ({code_sha256(z1)}). Please try again with the CodeSHA256 in $LATEST."))
    expect_error(lam.publish_version, FunctionName=name, RevisionId="wrong-revision-id",
                 code="PreconditionFailedException", status=412,
                 message_contains="The Revision Id provided does not match the latest Revision Id")
    # The refused publishes created nothing.
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST", "1"]

    v2 = lam.publish_version(FunctionName=name, CodeSha256=code_sha256(z1),
                             RevisionId=latest["RevisionId"], Description="v2 description")
    assert v2["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert v2["Version"] == "2"
    assert v2["FunctionArn"] == arn(name, "2")
    assert v2["Description"] == "v2 description"
    assert v2["CodeSha256"] == code_sha256(z1)
    assert v2["State"] == "Active"

    # Versions are immutable: updating $LATEST does not change them.
    z2 = py_zip()
    lam.update_function_code(FunctionName=name, ZipFile=z2)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    v1 = lam.get_function(FunctionName=name, Qualifier="1")["Configuration"]
    assert v1["Version"] == "1" and v1["CodeSha256"] == code_sha256(z1)
    assert v1["FunctionArn"] == arn(name, "1")
    assert lam.get_function_configuration(FunctionName=name, Qualifier="2")["Description"] == "v2 description"
    assert lam.get_function(FunctionName=name)["Configuration"]["CodeSha256"] == code_sha256(z2)

    # UpdateFunctionCode with Publish=True publishes version 3.
    z3 = py_zip()
    v3 = lam.update_function_code(FunctionName=name, ZipFile=z3, Publish=True)
    assert v3["Version"] == "3"
    assert v3["CodeSha256"] == code_sha256(z3)

    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2", "3"]
    assert versions[0]["FunctionArn"] == arn(name, "$LATEST")
    assert versions[1]["FunctionArn"] == arn(name, "1")

    # Paging through versions.
    p1 = lam.list_versions_by_function(FunctionName=name, MaxItems=2)
    assert [v["Version"] for v in p1["Versions"]] == ["$LATEST", "1"]
    p2 = lam.list_versions_by_function(FunctionName=name, MaxItems=2, Marker=p1["NextMarker"])
    assert [v["Version"] for v in p2["Versions"]] == ["2", "3"]
    assert "NextMarker" not in p2

    # Delete a version; $LATEST cannot be deleted through a qualifier.
    assert lam.delete_function(FunctionName=name, Qualifier="2")["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(lam.get_function, FunctionName=name, Qualifier="2",
                 code="ResourceNotFoundException", status=404, message=not_found_message(name, "2"))
    expect_error(lam.delete_function, FunctionName=name, Qualifier="$LATEST",
                 code="InvalidParameterValueException", status=400,
                 message="$LATEST version cannot be deleted without deleting the function.")
    expect_error(lam.get_function, FunctionName=name, Qualifier="99",
                 code="ResourceNotFoundException", status=404, message=not_found_message(name, "99"))
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST", "1", "3"]
    # Version numbers are never reused.
    lam.update_function_configuration(FunctionName=name, Description="fourth")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    assert lam.publish_version(FunctionName=name)["Version"] == "4"

    lam.delete_function(FunctionName=name)
    expect_error(lam.get_function, FunctionName=name, Qualifier="1", code="ResourceNotFoundException", status=404)
    expect_error(lam.list_versions_by_function, FunctionName=name, code="ResourceNotFoundException", status=404)


def test_publish_on_missing_function(lam):
    name = unique_name("nope")
    expect_error(lam.publish_version, FunctionName=name, code="ResourceNotFoundException", status=404)


# ---------------------------------------------------------------------------
# Aliases


def test_aliases(lam):
    name = unique_name("alias")
    create_fn(lam, name, Publish=True)  # version 1
    lam.update_function_configuration(FunctionName=name, Description="two")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    assert lam.publish_version(FunctionName=name)["Version"] == "2"

    created = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1", Description="custom-alias",
                               RoutingConfig={"AdditionalVersionWeights": {"2": 0.25}})
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AliasArn"] == arn(name, "live")
    assert created["Name"] == "live"
    assert created["FunctionVersion"] == "1"
    assert created["Description"] == "custom-alias"
    assert created["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.25}}
    assert UUID.match(created["RevisionId"])
    rec = recorded("TestLambdaAlias::test_alias_lifecycle")["create_alias_1_1"]
    assert set(without_meta(created)) == set(without_meta(rec))

    got = lam.get_alias(FunctionName=name, Name="live")
    assert without_meta(got) == without_meta(created)

    # A qualifier naming the alias resolves to its version.
    via_alias = lam.get_function(FunctionName=name, Qualifier="live")["Configuration"]
    assert via_alias["Version"] == "1"
    assert via_alias["FunctionArn"] == arn(name, "live")
    assert lam.get_function_configuration(FunctionName=f"{name}:live")["Version"] == "1"

    lam.create_alias(FunctionName=name, Name="stable", FunctionVersion="2")
    lam.create_alias(FunctionName=name, Name="edge", FunctionVersion="$LATEST")
    names = [a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]]
    assert sorted(names) == ["edge", "live", "stable"]
    only_v2 = lam.list_aliases(FunctionName=name, FunctionVersion="2")["Aliases"]
    assert [a["Name"] for a in only_v2] == ["stable"]
    listed_live = next(a for a in lam.list_aliases(FunctionName=name)["Aliases"] if a["Name"] == "live")
    assert listed_live["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.25}}

    # Errors, with AWS's codes.
    expect_error(lam.create_alias, FunctionName=name, Name="live", FunctionVersion="1",
                 code="ResourceConflictException", status=409,
                 message=f"Alias already exists: {arn(name, 'live')}")
    expect_error(lam.create_alias, FunctionName=name, Name="ghost", FunctionVersion="10",
                 code="ResourceNotFoundException", status=404, message=not_found_message(name, "10"))
    expect_error(lam.create_alias, FunctionName=name, Name="toomuch", FunctionVersion="1",
                 RoutingConfig={"AdditionalVersionWeights": {"2": 2.0}},
                 code="ValidationException", status=400)
    expect_error(lam.create_alias, FunctionName=name, Name="same", FunctionVersion="1",
                 RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}},
                 code="InvalidParameterValueException", status=400)
    expect_error(lam.create_alias, FunctionName=name, Name="twoextra", FunctionVersion="1",
                 RoutingConfig={"AdditionalVersionWeights": {"2": 0.2, "3": 0.2}},
                 code="InvalidParameterValueException", status=400)
    expect_error(lam.create_alias, FunctionName=name, Name="12345", FunctionVersion="1",
                 code="ValidationException", status=400)
    expect_error(lam.get_alias, FunctionName=name, Name="nosuchalias",
                 code="ResourceNotFoundException", status=404,
                 message=f"Cannot find alias arn: {arn(name, 'nosuchalias')}")
    expect_error(lam.get_function, FunctionName=name, Qualifier="nosuchalias",
                 code="ResourceNotFoundException", status=404, message=not_found_message(name, "nosuchalias"))
    expect_error(lam.update_alias, FunctionName=name, Name="nosuchalias", FunctionVersion="1",
                 code="ResourceNotFoundException", status=404,
                 message=f"Alias not found: {arn(name, 'nosuchalias')}")
    expect_error(lam.create_alias, FunctionName=name, Name="latestsplit", FunctionVersion="$LATEST",
                 RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}},
                 code="InvalidParameterValueException", status=400,
                 message="$LATEST is not supported for an alias pointing to more than 1 version")
    # A version an alias points at cannot be deleted.
    expect_error(lam.delete_function, FunctionName=name, Qualifier="1",
                 code="ResourceConflictException", status=409)
    assert lam.get_function(FunctionName=name, Qualifier="1")["Configuration"]["Version"] == "1"

    # Update: move to version 2, drop the routing; wrong RevisionId refused.
    expect_error(lam.update_alias, FunctionName=name, Name="live", FunctionVersion="2",
                 RevisionId="00000000-0000-0000-0000-000000000000",
                 code="PreconditionFailedException", status=412)
    upd = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                           RoutingConfig={"AdditionalVersionWeights": {}}, RevisionId=created["RevisionId"])
    assert upd["FunctionVersion"] == "2"
    assert not upd.get("RoutingConfig", {}).get("AdditionalVersionWeights")
    assert upd["RevisionId"] != created["RevisionId"]
    assert upd["Description"] == "custom-alias"  # unchanged fields stay
    upd2 = lam.update_alias(FunctionName=name, Name="live", RoutingConfig={"AdditionalVersionWeights": {"1": 0.7}})
    assert upd2["FunctionVersion"] == "2"
    assert upd2["RoutingConfig"] == {"AdditionalVersionWeights": {"1": 0.7}}
    assert lam.get_alias(FunctionName=name, Name="live")["RoutingConfig"] == {"AdditionalVersionWeights": {"1": 0.7}}
    assert lam.get_function(FunctionName=name, Qualifier="live")["Configuration"]["Version"] == "2"

    # Delete.
    assert lam.delete_alias(FunctionName=name, Name="stable")["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(lam.get_alias, FunctionName=name, Name="stable", code="ResourceNotFoundException", status=404)
    assert sorted(a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]) == ["edge", "live"]

    lam.delete_function(FunctionName=name)
    expect_error(lam.get_alias, FunctionName=name, Name="live", code="ResourceNotFoundException", status=404)


# ---------------------------------------------------------------------------
# Reserved concurrency and account settings


def test_reserved_concurrency(lam):
    name = unique_name("conc")
    create_fn(lam, name)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    put = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    assert put["ReservedConcurrentExecutions"] == 5
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 5
    assert lam.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 5}
    assert lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)["ReservedConcurrentExecutions"] == 0
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 0

    # Over what the account can spare (1000 total, 100 kept unreserved).
    expect_error(lam.put_function_concurrency, FunctionName=name, ReservedConcurrentExecutions=901,
                 code="InvalidParameterValueException", status=400,
                 message_contains="below its minimum value")
    expect_error(lam.put_function_concurrency, FunctionName=f"{name}:1", ReservedConcurrentExecutions=1,
                 code="InvalidParameterValueException", status=400)
    expect_error(lam.put_function_concurrency, FunctionName=unique_name("missing"), ReservedConcurrentExecutions=1,
                 code="ResourceNotFoundException", status=404)
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 0

    assert lam.delete_function_concurrency(FunctionName=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    assert "Concurrency" not in lam.get_function(FunctionName=name)
    lam.delete_function(FunctionName=name)


def test_account_settings(fresh_client):
    lam = fresh_client
    rec = recorded("TestLambdaAccountSettings::test_account_settings")["acc_settings_modded"]
    s0 = lam.get_account_settings()
    assert sorted(s0["AccountLimit"]) == sorted(rec["AccountLimit"])
    assert sorted(s0["AccountUsage"]) == sorted(rec["AccountUsage"])
    assert s0["AccountLimit"]["CodeSizeUnzipped"] == 262144000
    assert s0["AccountLimit"]["CodeSizeZipped"] == 52428800
    assert s0["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert s0["AccountLimit"]["UnreservedConcurrentExecutions"] == 1000
    assert s0["AccountLimit"]["TotalCodeSize"] == 80530636800
    assert s0["AccountUsage"] == {"FunctionCount": 0, "TotalCodeSize": 0}

    z = py_zip()
    name = unique_name("settings")
    create_fn(lam, name, zip_bytes=z)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=10)
    s1 = lam.get_account_settings()
    assert s1["AccountUsage"]["FunctionCount"] == 1
    assert s1["AccountUsage"]["TotalCodeSize"] == len(z)
    assert s1["AccountLimit"]["UnreservedConcurrentExecutions"] == 990

    lam.delete_function(FunctionName=name)
    s2 = lam.get_account_settings()
    assert s2["AccountUsage"]["FunctionCount"] == 0
    assert s2["AccountLimit"]["UnreservedConcurrentExecutions"] == 1000


# ---------------------------------------------------------------------------
# Name resolution


def test_name_resolution(lam):
    name = unique_name("resolve")
    create_fn(lam, name, Publish=True)
    lam.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")

    for ref in (name, arn(name), f"{DEV_ACCOUNT}:function:{name}"):
        conf = lam.get_function(FunctionName=ref)["Configuration"]
        assert conf["FunctionName"] == name and conf["Version"] == "$LATEST", ref
        assert lam.get_function_configuration(FunctionName=ref)["FunctionName"] == name

    for ref, version in (
        (f"{name}:1", "1"),
        (arn(name, "1"), "1"),
        (f"{DEV_ACCOUNT}:function:{name}:1", "1"),
        (f"{name}:prod", "1"),
        (arn(name, "prod"), "1"),
        (f"{name}:$LATEST", "$LATEST"),
    ):
        conf = lam.get_function(FunctionName=ref)["Configuration"]
        assert conf["FunctionName"] == name and conf["Version"] == version, ref

    # Updates, publishing and concurrency accept ARNs too.
    lam.update_function_configuration(FunctionName=arn(name), Description="by arn")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    assert lam.get_function_configuration(FunctionName=name)["Description"] == "by arn"
    lam.put_function_concurrency(FunctionName=f"{DEV_ACCOUNT}:function:{name}", ReservedConcurrentExecutions=2)
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 2

    # A qualifier in the name and a different Qualifier parameter disagree.
    expect_error(lam.get_function, FunctionName=f"{name}:1", Qualifier="prod",
                 code="InvalidParameterValueException", status=400,
                 message="The derived qualifier from the function name does not match the specified qualifier.")
    # Same qualifier twice is fine.
    assert lam.get_function(FunctionName=f"{name}:1", Qualifier="1")["Configuration"]["Version"] == "1"

    # Malformed references: ValidationException, as AWS.
    for bad in (
        "my-function!",
        f"arn:aws:lambda:{REGION}:{DEV_ACCOUNT}:function:{name}:1:2",
        f"function:{name}:$LATEST:extra",
        f"invalid-account:function:{name}",
        f"arn:aws:lambda::{DEV_ACCOUNT}:function:{name}",
        f"arn:aws:lambda:{REGION}::function:{name}",
        f"arn:aws:ec2:{REGION}:{DEV_ACCOUNT}:instance:i-1234567890abcdef0",
        f"arn:aws:lambda:{REGION}:{DEV_ACCOUNT}:function:{name}:$LATES",
    ):
        expect_error(lam.get_function, FunctionName=bad, code="ValidationException", status=400)
    expect_error(lam.get_function, FunctionName=name, Qualifier="invalid!",
                 code="ValidationException", status=400)
    expect_error(lam.get_function, FunctionName=name, Qualifier="a" * 129,
                 code="ValidationException", status=400)

    # Well-formed but absent.
    expect_error(lam.get_function, FunctionName="a" * 65, code="ResourceNotFoundException", status=404,
                 message=not_found_message("a" * 65))
    # As recorded: a lower-case $latest in an ARN is well-formed, and names nothing.
    expect_error(lam.get_function, FunctionName=arn(name, "$latest"), code="ResourceNotFoundException", status=404)
    lam.delete_function(FunctionName=arn(name))
    expect_error(lam.get_function, FunctionName=name, code="ResourceNotFoundException", status=404)
