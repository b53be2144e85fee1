"""Lambda layers through boto3: PublishLayerVersion, GetLayerVersion(ByArn),
ListLayers, ListLayerVersions (filters, paging), DeleteLayerVersion, layer
version permissions within and across accounts, and functions that name
layers: their content merged in order under a read-only /opt in process
sandboxes (Python's `python/`, Node's `nodejs/node_modules`), Lambda's
errors for bad `Layers`, and bad layer input that stores nothing.

The microVM case (a Python function in a microVM importing from its layer)
is in test_vm_python.py, which has the CPython-for-WASI fixture.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from hearth_e2e import (
    DEV_ACCOUNT,
    NODE_RUNTIME,
    PY_RUNTIME,
    REGION,
    code_sha256,
    create_fn,
    expect_error,
    invoke_ok,
    make_zip,
    nonce,
    py_zip,
    unique_name,
)


def layer_zip(files: dict) -> bytes:
    return make_zip({**files, "nonce.txt": nonce()})


def publish(client, name: str, files: dict, **kw) -> dict:
    r = client.publish_layer_version(LayerName=name, Content={"ZipFile": layer_zip(files)}, **kw)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 201
    return r


def layer_arn(name: str, account: str = DEV_ACCOUNT) -> str:
    return f"arn:aws:lambda:{REGION}:{account}:layer:{name}"


def test_publish_get_list_delete(lam):
    name = unique_name("layer")
    zip_bytes = layer_zip({"python/mod.py": "X = 1\n"})
    r = lam.publish_layer_version(
        LayerName=name, Description="first", Content={"ZipFile": zip_bytes},
        CompatibleRuntimes=["python3.12", "python3.11"], CompatibleArchitectures=["x86_64"],
        LicenseInfo="MIT",
    )
    assert r["LayerArn"] == layer_arn(name)
    assert r["LayerVersionArn"] == layer_arn(name) + ":1"
    assert r["Version"] == 1
    assert r["Description"] == "first"
    assert r["CompatibleRuntimes"] == ["python3.12", "python3.11"]
    assert r["CompatibleArchitectures"] == ["x86_64"]
    assert r["LicenseInfo"] == "MIT"
    assert r["Content"]["CodeSha256"] == code_sha256(zip_bytes)
    assert r["Content"]["CodeSize"] == len(zip_bytes)
    assert r["CreatedDate"].endswith("+0000")
    # The download URL gives back the zip, without credentials.
    with urllib.request.urlopen(r["Content"]["Location"], timeout=30) as resp:
        assert resp.read() == zip_bytes

    g = lam.get_layer_version(LayerName=name, VersionNumber=1)
    assert g["LayerVersionArn"] == r["LayerVersionArn"]
    assert g["Content"]["CodeSha256"] == code_sha256(zip_bytes)
    # By ARN, and with the layer ARN as the name.
    g = lam.get_layer_version_by_arn(Arn=layer_arn(name) + ":1")
    assert g["Version"] == 1 and g["Description"] == "first"
    g = lam.get_layer_version(LayerName=layer_arn(name), VersionNumber=1)
    assert g["Version"] == 1

    r2 = publish(lam, name, {"python/mod.py": "X = 2\n"}, CompatibleRuntimes=["nodejs20.x"])
    assert r2["Version"] == 2
    versions = lam.list_layer_versions(LayerName=name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    assert versions[1]["LayerVersionArn"] == layer_arn(name) + ":1"
    assert versions[1]["LicenseInfo"] == "MIT"

    layers = {l["LayerName"]: l for l in lam.list_layers()["Layers"]}
    assert layers[name]["LayerArn"] == layer_arn(name)
    assert layers[name]["LatestMatchingVersion"]["Version"] == 2
    py = {l["LayerName"]: l for l in lam.list_layers(CompatibleRuntime="python3.12")["Layers"]}
    assert py[name]["LatestMatchingVersion"]["Version"] == 1

    assert lam.delete_layer_version(LayerName=name, VersionNumber=2)["ResponseMetadata"]["HTTPStatusCode"] == 204
    # Deleting again (or what never existed) succeeds, as on AWS.
    lam.delete_layer_version(LayerName=name, VersionNumber=2)
    expect_error(lam.get_layer_version, LayerName=name, VersionNumber=2,
                 code="ResourceNotFoundException", status=404)
    # Numbers are not reused.
    assert publish(lam, name, {"a.txt": "a"})["Version"] == 3
    lam.delete_layer_version(LayerName=name, VersionNumber=1)
    lam.delete_layer_version(LayerName=name, VersionNumber=3)
    assert lam.list_layer_versions(LayerName=name)["LayerVersions"] == []
    assert name not in {l["LayerName"] for l in lam.list_layers()["Layers"]}


def test_paging_and_filters(lam):
    name = unique_name("paged")
    for i in range(5):
        publish(lam, name, {"f.txt": str(i)},
                CompatibleRuntimes=["python3.12"] if i % 2 == 0 else ["nodejs20.x"],
                CompatibleArchitectures=["x86_64"] if i < 3 else ["arm64"])
    seen, marker = [], None
    while True:
        kw = {"Marker": marker} if marker else {}
        page = lam.list_layer_versions(LayerName=name, MaxItems=2, **kw)
        seen += [v["Version"] for v in page["LayerVersions"]]
        assert len(page["LayerVersions"]) <= 2
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == [5, 4, 3, 2, 1]
    py = lam.list_layer_versions(LayerName=name, CompatibleRuntime="python3.12")["LayerVersions"]
    assert [v["Version"] for v in py] == [5, 3, 1]
    arm = lam.list_layer_versions(LayerName=name, CompatibleArchitecture="arm64")["LayerVersions"]
    assert [v["Version"] for v in arm] == [5, 4]
    both = lam.list_layer_versions(LayerName=name, CompatibleRuntime="nodejs20.x",
                                   CompatibleArchitecture="x86_64")["LayerVersions"]
    assert [v["Version"] for v in both] == [2]
    # boto3's paginator follows NextMarker through ListLayers.
    names = []
    for page in lam.get_paginator("list_layers").paginate(PaginationConfig={"PageSize": 1}):
        assert len(page["Layers"]) <= 1
        names += [l["LayerName"] for l in page["Layers"]]
    assert name in names and names == sorted(names)


def test_permissions_within_and_across_accounts(lam, hearth, second_account):
    other = hearth.account_client(second_account)
    other_id = second_account["AccountId"]
    name = unique_name("shared")
    publish(lam, name, {"python/shared_mod.py": "VALUE = 'shared'\n"})
    arn = layer_arn(name) + ":1"

    expect_error(lam.get_layer_version_policy, LayerName=name, VersionNumber=1,
                 code="ResourceNotFoundException", status=404)
    err = expect_error(other.get_layer_version_by_arn, Arn=arn, code="AccessDeniedException", status=403)
    assert f"is not authorized to perform: lambda:GetLayerVersion on resource: {arn}" in err["Error"]["Message"]
    # A function of the other account cannot use it yet.
    fname = unique_name("cross")
    expect_error(create_fn, other, fname, Layers=[arn], code="AccessDeniedException", status=403)
    expect_error(other.get_function, FunctionName=fname, code="ResourceNotFoundException")

    r = lam.add_layer_version_permission(
        LayerName=name, VersionNumber=1, StatementId="other", Action="lambda:GetLayerVersion",
        Principal=other_id,
    )
    stmt = json.loads(r["Statement"])
    assert stmt == {
        "Sid": "other", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{other_id}:root"},
        "Action": "lambda:GetLayerVersion", "Resource": arn,
    }
    rev = r["RevisionId"]
    policy = lam.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert policy["RevisionId"] == rev
    doc = json.loads(policy["Policy"])
    assert doc["Version"] == "2012-10-17" and doc["Statement"] == [stmt]

    expect_error(lam.add_layer_version_permission, LayerName=name, VersionNumber=1, StatementId="other",
                 Action="lambda:GetLayerVersion", Principal="*", code="ResourceConflictException", status=409)
    expect_error(lam.add_layer_version_permission, LayerName=name, VersionNumber=1, StatementId="x",
                 Action="lambda:GetLayerVersion", Principal="*", RevisionId="stale",
                 code="PreconditionFailedException", status=412)
    expect_error(lam.add_layer_version_permission, LayerName=name, VersionNumber=1, StatementId="y",
                 Action="lambda:GetLayerVersion", Principal="999999999999",
                 code="InvalidParameterValueException", status=400)
    expect_error(lam.add_layer_version_permission, LayerName=name, VersionNumber=9, StatementId="z",
                 Action="lambda:GetLayerVersion", Principal="*", code="ResourceNotFoundException", status=404)

    # Now the other account reads it and uses it.
    assert other.get_layer_version_by_arn(Arn=arn)["Version"] == 1
    assert other.get_layer_version(LayerName=layer_arn(name), VersionNumber=1)["Version"] == 1
    handler = "import shared_mod\n\ndef handler(event, context):\n    return shared_mod.VALUE\n"
    create_fn(other, fname, zip_bytes=py_zip({"handler.py": handler}), Layers=[arn])
    cfg = other.get_function_configuration(FunctionName=fname)
    assert cfg["Layers"][0]["Arn"] == arn
    assert invoke_ok(other, fname, {}).json() == "shared"
    # But it may not manage the layer.
    expect_error(other.delete_layer_version, LayerName=layer_arn(name), VersionNumber=1,
                 code="AccessDeniedException", status=403)
    expect_error(other.list_layer_versions, LayerName=layer_arn(name), code="AccessDeniedException", status=403)

    lam.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="other")
    expect_error(lam.remove_layer_version_permission, LayerName=name, VersionNumber=1, StatementId="other",
                 code="ResourceNotFoundException", status=404)
    expect_error(other.get_layer_version_by_arn, Arn=arn, code="AccessDeniedException", status=403)
    # `*` grants every account.
    lam.add_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="all",
                                     Action="lambda:GetLayerVersion", Principal="*")
    assert json.loads(lam.get_layer_version_policy(LayerName=name, VersionNumber=1)["Policy"])[
        "Statement"][0]["Principal"] == "*"
    assert other.get_layer_version_by_arn(Arn=arn)["Version"] == 1
    other.delete_function(FunctionName=fname)


def test_python_layers_merge_in_order_read_only(lam):
    a, b = unique_name("la"), unique_name("lb")
    va = publish(lam, a, {
        "python/layer_mod.py": "WHO = 'a'\n",
        "python/only_a.py": "X = 'from a'\n",
        "python/lib/python3.99/site-packages/ignored.py": "",
    })
    vb = publish(lam, b, {"python/layer_mod.py": "WHO = 'b'\n"})
    handler = (
        "import os, sys\n"
        "import layer_mod, only_a\n"
        "def handler(event, context):\n"
        "    try:\n"
        "        open('/opt/new.txt', 'w').write('x')\n"
        "        wrote = True\n"
        "    except OSError as e:\n"
        "        wrote = str(e)\n"
        "    return {'who': layer_mod.WHO, 'a': only_a.X, 'wrote': wrote,\n"
        "            'opt': sorted(os.listdir('/opt')), 'path': [p for p in sys.path if p.startswith('/opt')]}\n"
    )
    name = unique_name("pylayers")
    create_fn(lam, name, zip_bytes=py_zip({"handler.py": handler}),
              Layers=[va["LayerVersionArn"], vb["LayerVersionArn"]])
    cfg = lam.get_function_configuration(FunctionName=name)
    assert [l["Arn"] for l in cfg["Layers"]] == [va["LayerVersionArn"], vb["LayerVersionArn"]]
    assert cfg["Layers"][0]["CodeSize"] == va["Content"]["CodeSize"]
    first = invoke_ok(lam, name, {})
    # Pooled (general-runtime) or cold: either way /opt is the function's.
    placement = first.response["ResponseMetadata"]["HTTPHeaders"].get("x-hearth-placement")
    out = first.json()
    assert out["who"] == "b", (placement, out)  # the later layer wins
    assert out["a"] == "from a"
    assert out["wrote"] is not True and "Read-only" in out["wrote"], out
    assert "python" in out["opt"] and "nonce.txt" in out["opt"]
    assert "/opt/python" in out["path"]

    # Publishing a version snapshots the layers; reordering $LATEST's
    # layers changes what it sees but not the version.
    v1 = lam.publish_version(FunctionName=name)
    assert [l["Arn"] for l in v1["Layers"]] == [va["LayerVersionArn"], vb["LayerVersionArn"]]
    lam.update_function_configuration(FunctionName=name,
                                      Layers=[vb["LayerVersionArn"], va["LayerVersionArn"]])
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert invoke_ok(lam, name, {}).json()["who"] == "a"
    assert invoke_ok(lam, name, {}, qualifier=v1["Version"]).json()["who"] == "b"

    # A deleted layer version stays usable by the functions that name it.
    lam.delete_layer_version(LayerName=b, VersionNumber=1)
    assert invoke_ok(lam, name, {}, qualifier=v1["Version"]).json()["who"] == "b"
    # Removing every layer.
    lam.update_function_configuration(FunctionName=name, Layers=[])
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert "Layers" not in lam.get_function_configuration(FunctionName=name)
    lam.delete_function(FunctionName=name)


@pytest.mark.skipif(NODE_RUNTIME is None, reason="no Node.js on this host")
def test_node_finds_layer_modules(lam):
    layer = unique_name("nodelayer")
    v = publish(lam, layer, {"nodejs/node_modules/greeting/index.js": "module.exports = () => 'hi from layer';\n"})
    name = unique_name("nodefn")
    handler = "const g = require('greeting');\nexports.handler = async () => g();\n"
    create_fn(lam, name, zip_bytes=make_zip({"index.js": handler, "n.txt": nonce()}),
              runtime=NODE_RUNTIME, handler="index.handler", Layers=[v["LayerVersionArn"]])
    assert invoke_ok(lam, name, {}).json() == "hi from layer"
    lam.delete_function(FunctionName=name)


def test_bad_layers_on_functions(lam):
    layer = unique_name("few")
    v = publish(lam, layer, {"a.txt": "a"})
    arn = v["LayerVersionArn"]
    name = unique_name("badlayers")
    missing = layer_arn(layer) + ":7"
    expect_error(create_fn, lam, name, Layers=[missing], code="InvalidParameterValueException", status=400,
                 message=f"Layer version {missing} does not exist.")
    six = []
    for _ in range(6):
        six.append(publish(lam, unique_name("six"), {"a.txt": "a"})["LayerVersionArn"])
    expect_error(create_fn, lam, name, Layers=six, code="InvalidParameterValueException", status=400,
                 message="Cannot reference more than 5 layers.")
    expect_error(lam.get_function, FunctionName=name, code="ResourceNotFoundException")
    # Five is fine; an update naming a missing version changes nothing.
    create_fn(lam, name, Layers=six[:5])
    absent = layer_arn(unique_name("absent")) + ":1"
    expect_error(lam.update_function_configuration, FunctionName=name, Layers=[arn, absent],
                 code="InvalidParameterValueException", message=f"Layer version {absent} does not exist.")
    # The same layer twice.
    expect_error(lam.update_function_configuration, FunctionName=name, Layers=[arn, missing],
                 code="InvalidParameterValueException", status=400)
    assert [l["Arn"] for l in lam.get_function_configuration(FunctionName=name)["Layers"]] == six[:5]
    lam.delete_function(FunctionName=name)


def test_oversize_layers_are_refused(lam):
    # A layer whose content unzips to 200 MB (compresses to little), twice:
    # together over Lambda's 250 MB.
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", b"\0" * (200 * 1024 * 1024))
        zf.writestr("n.txt", nonce())
    big = lam.publish_layer_version(LayerName=unique_name("big"), Content={"ZipFile": buf.getvalue()})
    small = publish(lam, unique_name("small"), {"s.bin": "x" * 1000})
    buf2 = io.BytesIO()
    with zipfile.ZipFile(buf2, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big2.bin", b"\1" * (60 * 1024 * 1024))
        zf.writestr("n.txt", nonce())
    big2 = lam.publish_layer_version(LayerName=unique_name("big"), Content={"ZipFile": buf2.getvalue()})
    name = unique_name("toobig")
    err = expect_error(create_fn, lam, name, Layers=[big["LayerVersionArn"], big2["LayerVersionArn"]],
                       code="InvalidParameterValueException", status=400,
                       message_contains="Function code combined with layers exceeds the maximum allowed size of 262144000 bytes. The actual size is ")
    assert err["Error"]["Message"].endswith(" bytes.")
    create_fn(lam, name, Layers=[big["LayerVersionArn"], small["LayerVersionArn"]])
    lam.delete_function(FunctionName=name)


def test_bad_layer_input_stores_nothing(lam, lam_novalidate, hearth):
    name = unique_name("badinput")
    # S3 content is refused clearly.
    expect_error(lam.publish_layer_version, LayerName=name, Content={"S3Bucket": "my-bucket", "S3Key": "k.zip"},
                 code="InvalidParameterValueException", status=400, message_contains="S3")
    # Not a zip.
    expect_error(lam.publish_layer_version, LayerName=name, Content={"ZipFile": b"not a zip"},
                 code="InvalidParameterValueException", status=400)
    # Over 50 MB zipped (random bytes do not compress).
    import os
    expect_error(lam.publish_layer_version, LayerName=name, Content={"ZipFile": os.urandom(50 * 1024 * 1024 + 1)},
                 code="RequestEntityTooLargeException", status=413)
    # Malformed base64, sent raw.
    r = hearth.raw("POST", f"/2018-10-31/layers/{name}/versions",
                   json.dumps({"Content": {"ZipFile": "!!!not base64!!!"}}),
                   headers={"Content-Type": "application/json"})
    assert r.status == 400, r.body
    assert r.header("x-amzn-ErrorType").startswith("InvalidRequestContentException"), r.headers
    # A bad name and version number.
    expect_error(lam_novalidate.publish_layer_version, LayerName="bad name!", Content={"ZipFile": layer_zip({"a": "a"})},
                 code="ValidationException", status=400)
    expect_error(lam_novalidate.get_layer_version, LayerName=name, VersionNumber=0,
                 code="ValidationException", status=400)
    # Nothing was stored.
    assert lam.list_layer_versions(LayerName=name)["LayerVersions"] == []
    assert name not in {l["LayerName"] for l in lam.list_layers()["Layers"]}
    assert publish(lam, name, {"a": "a"})["Version"] == 1
