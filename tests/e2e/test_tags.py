"""TagResource, UntagResource and ListTags through boto3, in Lambda's shapes
(compared with AWS's recorded TestLambdaTag* responses: 204 bodies, the
`Tags` map, and the errors for a bad ARN, a missing function, a qualified
ARN, empty input and too many tags), plus Hearth's own tag
`hearth:isolation`, whose value is checked.
"""

from __future__ import annotations

from hearth_e2e import DEV_ACCOUNT, REGION, create_fn, expect_error, unique_name


def fn_arn(name: str, qualifier: str | None = None, account: str = DEV_ACCOUNT) -> str:
    a = f"arn:aws:lambda:{REGION}:{account}:function:{name}"
    return f"{a}:{qualifier}" if qualifier else a


def test_tag_lifecycle(lam):
    name = unique_name("tags")
    create_fn(lam, name, Tags={"created": "yes"})
    arn = fn_arn(name)
    assert lam.list_tags(Resource=arn)["Tags"] == {"created": "yes"}
    r = lam.tag_resource(Resource=arn, Tags={"A": "tag-a"})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    lam.tag_resource(Resource=arn, Tags={"B": "tag-b", "C": "tag-c"})
    lam.tag_resource(Resource=arn, Tags={"C": "tag-c-newsuffix", "D": "tag-d"})
    assert lam.list_tags(Resource=arn)["Tags"] == {
        "created": "yes", "A": "tag-a", "B": "tag-b", "C": "tag-c-newsuffix", "D": "tag-d",
    }
    r = lam.untag_resource(Resource=arn, TagKeys=["A", "created"])
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    lam.untag_resource(Resource=arn, TagKeys=["B", "C", "not-there"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"D": "tag-d"}
    # GetFunction shows them.
    assert lam.get_function(FunctionName=name)["Tags"] == {"D": "tag-d"}
    lam.untag_resource(Resource=arn, TagKeys=["D"])
    assert lam.list_tags(Resource=arn)["Tags"] == {}
    lam.delete_function(FunctionName=name)


def test_tag_errors_are_lambdas(lam):
    name = unique_name("tags")
    create_fn(lam, name)
    arn = fn_arn(name)
    e = expect_error(lam.tag_resource, Resource="arn:aws:something", Tags={"A": "a"},
                     code="ValidationException", status=400)
    assert e["Error"]["Message"].startswith(
        "1 validation error detected: Value 'arn:aws:something' at 'resource' failed to satisfy constraint"
    )
    missing = fn_arn("doesnotexist-" + unique_name())
    expect_error(lam.tag_resource, Resource=missing, Tags={"A": "a"}, code="ResourceNotFoundException",
                 status=404, message=f"Function not found: {missing}")
    for q in ("1", "$LATEST"):
        expect_error(lam.tag_resource, Resource=fn_arn(name, q), Tags={"A": "a"},
                     code="InvalidParameterValueException", status=400,
                     message="Tags on function aliases and versions are not supported. Please specify a function ARN.")
    expect_error(lam.tag_resource, Resource=arn, Tags={}, code="InvalidParameterValueException", status=400,
                 message="An error occurred and the request cannot be processed.")
    expect_error(lam.untag_resource, Resource=arn, TagKeys=[], code="ValidationException", status=400)
    too_many = {f"{i}_key": f"{i}_value" for i in range(51)}
    expect_error(lam.tag_resource, Resource=arn, Tags=too_many, code="InvalidParameterValueException",
                 status=400, message="Number of tags exceeds resource tag limit.")
    lam.tag_resource(Resource=arn, Tags={f"{i}_key": f"{i}_value" for i in range(50)})
    expect_error(lam.tag_resource, Resource=arn, Tags={"one_more": "x"}, code="InvalidParameterValueException",
                 message="Number of tags exceeds resource tag limit.")
    assert len(lam.list_tags(Resource=arn)["Tags"]) == 50
    expect_error(lam.tag_resource, Resource=arn, Tags={"aws:reserved": "x"}, code="InvalidParameterValueException")
    assert len(lam.list_tags(Resource=arn)["Tags"]) == 50
    lam.delete_function(FunctionName=name)


def test_the_isolation_tag_is_checked(lam):
    name = unique_name("tags")
    expect_error(create_fn, lam, name, Tags={"hearth:isolation": "vm"}, code="InvalidParameterValueException",
                 message_contains="hearth:isolation")
    expect_error(lam.get_function, FunctionName=name, code="ResourceNotFoundException")
    create_fn(lam, name, Tags={"hearth:isolation": "process"})
    arn = fn_arn(name)
    lam.tag_resource(Resource=arn, Tags={"hearth:isolation": "microvm"})
    expect_error(lam.tag_resource, Resource=arn, Tags={"hearth:isolation": "kvm"},
                 code="InvalidParameterValueException")
    assert lam.list_tags(Resource=arn)["Tags"] == {"hearth:isolation": "microvm"}
    lam.delete_function(FunctionName=name)


def test_another_accounts_function_is_not_found(lam, second_account, hearth):
    name = unique_name("tags")
    create_fn(lam, name)
    other = hearth.account_client(second_account)
    arn = fn_arn(name)
    expect_error(other.list_tags, Resource=arn, code="ResourceNotFoundException", status=404)
    expect_error(other.tag_resource, Resource=arn, Tags={"x": "y"}, code="ResourceNotFoundException")
    assert lam.list_tags(Resource=arn)["Tags"] == {}
    lam.delete_function(FunctionName=name)
