"""Bad input to CreateFunction / UpdateFunctionCode / UpdateFunctionConfiguration:
each refused with Lambda's error code, and nothing stored afterwards (no
function, not listed, no code blob)."""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import zipfile
from functools import lru_cache
from pathlib import Path

import pytest

from hearth_e2e import (
    NODE_RUNTIME,
    PY_HANDLER,
    PY_RUNTIME,
    ROLE,
    WAITER,
    assert_no_blob,
    assert_not_stored,
    code_sha256,
    create_fn,
    expect_error,
    list_all_functions,
    make_zip,
    nonce,
    provided_zip,
    py_zip,
    unique_name,
)

INVALID_ZIP_MESSAGE = "Could not unzip uploaded file. Please check your file, then try to upload again."
UNZIPPED_LIMIT = 262144000
UNZIPPED_TOO_BIG = f"Unzipped size must be smaller than {UNZIPPED_LIMIT} bytes"


def refused_create(hearth, lam, *, zip_bytes: bytes | None = None, code: str | set[str],
                   status: int = 400, message: str | None = None, message_contains: str | None = None,
                   name: str | None = None, runtime: str | None = None, handler: str = "handler.handler",
                   **kw) -> dict:
    """CreateFunction that must fail with `code`; then checks nothing was stored."""
    name = name or unique_name("bad")
    zip_bytes = zip_bytes if zip_bytes is not None else py_zip()
    err = expect_error(
        lam.create_function, FunctionName=name, Runtime=runtime or PY_RUNTIME, Role=ROLE,
        Handler=handler, Code={"ZipFile": zip_bytes}, code=code, status=status,
        message=message, message_contains=message_contains, **kw,
    )
    assert_not_stored(lam, name)
    return err


# ---------------------------------------------------------------------------
# Names and configuration values


@pytest.mark.parametrize("bad_name,code", [
    ("my-function!", "ValidationException"),
    ("has.dot", "ValidationException"),
    ("sp ace", "ValidationException"),
    ("f\u00fcnf", "ValidationException"),
    ("a" * 65, "InvalidParameterValueException"),  # AWS answers a too-long name this way
], ids=["bang", "dot", "space", "non-ascii", "65-chars"])
def test_invalid_function_name(hearth, lam, bad_name, code):
    before = {f["FunctionName"] for f in list_all_functions(lam)}
    expect_error(lam.create_function, FunctionName=bad_name, Runtime=PY_RUNTIME, Role=ROLE,
                 Handler="handler.handler", Code={"ZipFile": py_zip()}, code=code, status=400)
    after = {f["FunctionName"] for f in list_all_functions(lam)}
    assert bad_name not in after
    assert after <= before, f"new functions appeared: {after - before}"


def test_name_of_64_chars_is_fine(lam):
    name = ("n" + unique_name("x").replace("-", "")) * 5
    name = name[:64]
    assert len(name) == 64
    create_fn(lam, name, wait=False)
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    lam.delete_function(FunctionName=name)


@pytest.mark.parametrize("field,value", [
    ("MemorySize", 64),
    ("MemorySize", 127),
    ("MemorySize", 10241),
    ("Timeout", 0),
    ("Timeout", 901),
])
def test_limits_out_of_range(hearth, lam_novalidate, field, value):
    err = refused_create(hearth, lam_novalidate, code="ValidationException", **{field: value})
    assert f"Value '{value}'" in err["Error"]["Message"]


def test_limits_at_the_bounds_are_fine(lam):
    name = unique_name("bounds")
    resp = create_fn(lam, name, wait=False, MemorySize=10240, Timeout=900)
    assert (resp["MemorySize"], resp["Timeout"]) == (10240, 900)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    upd = lam.update_function_configuration(FunctionName=name, MemorySize=128, Timeout=1)
    assert (upd["MemorySize"], upd["Timeout"]) == (128, 1)
    lam.delete_function(FunctionName=name)


def test_environment_over_4kb(hearth, lam):
    env = {"LARGE_VAR": "x" * 4096}
    refused_create(hearth, lam, Environment={"Variables": env}, code="InvalidParameterValueException",
                   message_contains="Lambda was unable to configure your environment variables because the "
                                    "environment variables you have provided exceeded the 4KB limit.")
    # Many keys adding up past 4 KB count too.
    many = {f"KEY_{i:03d}": "v" * 40 for i in range(100)}
    refused_create(hearth, lam, Environment={"Variables": many}, code="InvalidParameterValueException")


def test_environment_at_4kb_is_fine(lam):
    # {"A":"xxx…"} measures exactly 4096 bytes.
    env = {"A": "x" * (4096 - 8)}
    assert len(json.dumps(env, separators=(",", ":"))) == 4096
    name = unique_name("env4k")
    create_fn(lam, name, Environment={"Variables": env}, wait=False)
    assert lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"] == env
    lam.delete_function(FunctionName=name)


def test_reserved_environment_key(hearth, lam):
    refused_create(hearth, lam, Environment={"Variables": {"AWS_REGION": "x"}},
                   code="InvalidParameterValueException", message_contains="AWS_REGION")


def test_unknown_runtime(hearth, lam):
    rec_message = (
        "Value non-existent-runtime at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: "
        "[nodejs20.x, python3.14, provided.al2023, python3.12, python3.13, nodejs24.x, nodejs22.x, java25, "
        "python3.10, python3.11, java21, ruby3.3, ruby3.4, ruby3.2, python3.8, python3.9, java17, nodejs16.x, "
        "dotnet10, dotnet8, java11, dotnet6, nodejs18.x, provided.al2, java8.al2] or be a valid ARN"
    )
    refused_create(hearth, lam, runtime="non-existent-runtime", code="InvalidParameterValueException",
                   message=rec_message)
    refused_create(hearth, lam, runtime="PYTHON3.9", code="InvalidParameterValueException",
                   message_contains="Value PYTHON3.9 at 'runtime'")
    refused_create(hearth, lam, runtime="java21", code="InvalidParameterValueException")


@pytest.mark.parametrize("runtime,handler,files", [
    ("python3.12", "handler.handler", {"handler.py": PY_HANDLER}),
    ("nodejs22.x", "index.handler", {"index.js": b"exports.handler = async () => 1;\n"}),
])
def test_runtime_without_interpreter_on_host(start_server, runtime, handler, files):
    # Every python3.x maps to /usr/bin/python3 by default; a node whose
    # config maps these runtimes to interpreters that do not exist refuses them.
    srv = start_server(config='[runtimes]\n"python3.12" = "/nonexistent/python3"\n"nodejs*" = "/nonexistent/node"\n')
    lam = srv.client()
    refused_create(srv, lam, runtime=runtime, handler=handler, zip_bytes=make_zip({**files, "n": nonce()}),
                   code="InvalidParameterValueException")
    # The same node still takes a runtime that has an interpreter.
    create_fn(lam, zip_bytes=py_zip())


def test_invalid_role(hearth, lam):
    name = unique_name("role")
    z = py_zip()
    expect_error(lam.create_function, FunctionName=name, Runtime=PY_RUNTIME, Role="r1", Handler="handler.handler",
                 Code={"ZipFile": z}, code="ValidationException", status=400,
                 message=("1 validation error detected: Value 'r1' at 'role' failed to satisfy constraint: "
                          "Member must satisfy regular expression pattern: "
                          "arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+"))
    assert_not_stored(lam, name)
    assert_no_blob(hearth.data_dir, z)


# ---------------------------------------------------------------------------
# The code package


def test_malformed_base64_zipfile(hearth, lam):
    name = unique_name("b64")
    body = json.dumps({
        "FunctionName": name, "Runtime": PY_RUNTIME, "Role": ROLE, "Handler": "handler.handler",
        "Code": {"ZipFile": "%%% this is not base64 %%%"},
    })
    r = hearth.raw("POST", "/2015-03-31/functions", body, headers={"Content-Type": "application/json"})
    assert r.status == 400, (r.status, r.body)
    err = r.json()
    code = r.header("X-Amzn-ErrorType") or err.get("__type") or err.get("Type")
    assert code and code.split(":")[0] in {"InvalidRequestContentException", "InvalidParameterValueException"}, (r.headers, err)
    assert err.get("message") or err.get("Message"), err
    assert_not_stored(lam, name)


def test_not_a_zip(hearth, lam):
    refused_create(hearth, lam, zip_bytes=b"this is not a zip " + nonce().encode(),
                   code="InvalidParameterValueException", message=INVALID_ZIP_MESSAGE)
    # A truncated zip is not a zip either.
    whole = py_zip()
    refused_create(hearth, lam, zip_bytes=whole[: len(whole) // 2], code="InvalidParameterValueException")


def _leaked(root: Path, marker: str) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            if marker in n:
                found.append(Path(dirpath) / n)
    return found


@pytest.mark.parametrize("kind", ["dotdot", "nested_dotdot", "absolute", "symlink_absolute", "symlink_dotdot"])
def test_zip_entries_escaping_the_code_dir(hearth, lam, work_dir, kind):
    n = nonce()
    files = {"handler.py": PY_HANDLER}
    links = {}
    if kind == "dotdot":
        files[f"../evil-{n}.py"] = b"x = 1\n"
    elif kind == "nested_dotdot":
        files[f"sub/../../../evil-{n}.py"] = b"x = 1\n"
    elif kind == "absolute":
        files[f"/tmp/evil-{n}.py"] = b"x = 1\n"
    elif kind == "symlink_absolute":
        links[f"evil-{n}"] = "/etc/passwd"
    elif kind == "symlink_dotdot":
        links[f"sub/evil-{n}"] = "../../../../outside"
        files["sub/ok.py"] = b"y = 2\n"
    z = make_zip(files, symlinks=links)
    bad_entry = next(e for e in [*files, *links] if n in e)
    # The message names the offending entry, so the user can find it.
    refused_create(hearth, lam, zip_bytes=z, code="InvalidParameterValueException", message_contains=bad_entry)
    leaked = _leaked(work_dir, n) + ([Path(f"/tmp/evil-{n}.py")] if Path(f"/tmp/evil-{n}.py").exists() else [])
    assert not leaked, f"entries of a refused zip were written: {leaked}"


def test_symlink_inside_the_package_is_fine(lam):
    z = make_zip({"handler.py": PY_HANDLER, "lib/real.py": b"v = 1\n", "n": nonce()},
                 symlinks={"alias.py": "handler.py", "lib/link.py": "real.py"})
    name = unique_name("innerlink")
    resp = create_fn(lam, name, zip_bytes=z)
    assert resp["CodeSha256"] == code_sha256(z)
    lam.delete_function(FunctionName=name)


@lru_cache(maxsize=None)
def zip_bomb_single() -> bytes:
    """~300 KB zip holding one 300 MB entry of zeros, written in 1 MB chunks."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("handler.py", PY_HANDLER)
        zf.writestr("nonce.txt", nonce())
        zi = zipfile.ZipInfo("big.bin", date_time=(2024, 1, 1, 0, 0, 0))
        zi.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(zi, "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(300):
                f.write(chunk)
    return buf.getvalue()


@lru_cache(maxsize=None)
def zip_bomb_many() -> bytes:
    """15 entries of 20 MB each: no single entry is over the limit, the sum is."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("handler.py", PY_HANDLER)
        zf.writestr("nonce.txt", nonce())
        chunk = bytes(1 << 20)
        for i in range(15):
            zi = zipfile.ZipInfo(f"part{i:02d}.bin", date_time=(2024, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(zi, "w") as f:
                for _ in range(20):
                    f.write(chunk)
    return buf.getvalue()


def written_bytes(pid: int) -> int | None:
    """Bytes the process has passed to write(2) and friends so far."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def refused_bomb(hearth, lam, z: bytes, **kw) -> None:
    """The bomb is refused, and the server did not write (much) more than the
    unzipped limit while finding out."""
    before = written_bytes(hearth.proc.pid)
    refused_create(hearth, lam, zip_bytes=z, code="InvalidParameterValueException", **kw)
    after = written_bytes(hearth.proc.pid)
    if before is not None and after is not None:
        assert after - before <= UNZIPPED_LIMIT + 16 * 1024 * 1024, \
            f"the server wrote {after - before} bytes while refusing a zip bomb"


def test_zip_bomb_single_entry(hearth, lam):
    z = zip_bomb_single()
    assert len(z) < 2 * 1024 * 1024
    refused_bomb(hearth, lam, z, message=UNZIPPED_TOO_BIG)


def test_zip_bomb_many_entries(hearth, lam):
    z = zip_bomb_many()
    assert len(z) < 2 * 1024 * 1024
    refused_bomb(hearth, lam, z, message=UNZIPPED_TOO_BIG)


def lying_zip_bomb() -> bytes:
    """300 MB of zeros whose headers claim an uncompressed size of 1000 bytes:
    an unpacker that trusts the headers writes far past the limit."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("handler.py", PY_HANDLER)
        zi = zipfile.ZipInfo("big.bin", date_time=(2024, 1, 1, 0, 0, 0))
        zi.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(zi, "w") as f:  # < 2 GiB: no zip64, plain 32-bit size fields
            chunk = bytes(1 << 20)
            for _ in range(300):
                f.write(chunk)
        zf.writestr("nonce.txt", nonce())
    data = bytearray(buf.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("big.bin")
    assert info.file_size == 300 << 20 and not info.flag_bits & 0x08
    # Local header: uncompressed size at +22. Central directory entry: at +24.
    lh = info.header_offset
    assert data[lh:lh + 4] == b"PK\x03\x04"
    struct.pack_into("<I", data, lh + 22, 1000)
    cd = data.find(b"PK\x01\x02")
    while cd != -1:
        name_len = struct.unpack_from("<H", data, cd + 28)[0]
        if bytes(data[cd + 46:cd + 46 + name_len]) == b"big.bin":
            struct.pack_into("<I", data, cd + 24, 1000)
            break
        cd = data.find(b"PK\x01\x02", cd + 4)
    assert cd != -1
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        assert zf.getinfo("big.bin").file_size == 1000
    return bytes(data)


def test_zip_bomb_with_lying_sizes(hearth, lam):
    z = lying_zip_bomb()
    assert len(z) < 2 * 1024 * 1024
    refused_bomb(hearth, lam, z)


def _many_entries(count: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("handler.py", PY_HANDLER)
        zf.writestr("nonce.txt", nonce())
        for i in range(count - 2):
            zf.writestr(f"d{i // 1000:02d}/f{i:05d}", b"")
    return buf.getvalue()


def test_too_many_zip_entries(hearth, lam):
    z = _many_entries(20001)
    with zipfile.ZipFile(io.BytesIO(z)) as zf:
        assert len(zf.infolist()) == 20001
    refused_create(hearth, lam, zip_bytes=z, code="InvalidParameterValueException")


def test_zip_of_20000_entries_is_fine(lam):
    z = _many_entries(20000)
    name = unique_name("entries")
    resp = create_fn(lam, name, zip_bytes=z)
    assert resp["CodeSha256"] == code_sha256(z)
    lam.delete_function(FunctionName=name)


def test_zip_over_50mb(hearth, lam):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("handler.py", PY_HANDLER)
        zf.writestr("random.bin", os.urandom(51 * 1024 * 1024))
    z = buf.getvalue()
    assert len(z) > 52428800
    refused_create(hearth, lam, zip_bytes=z, code="RequestEntityTooLargeException", status=413,
                   message="Zipped size must be smaller than 52428800 bytes")


# ---------------------------------------------------------------------------
# Handler and bootstrap


def test_python_handler_file_missing(hearth, lam):
    refused_create(hearth, lam, handler="missing.handler", code="InvalidParameterValueException",
                   message_contains="missing")
    refused_create(hearth, lam, handler="pkg/missing.handler", code="InvalidParameterValueException",
                   message_contains="missing")


def test_python_handler_in_subdirectory_is_fine(lam):
    z = make_zip({"pkg/mod.py": PY_HANDLER, "n": nonce()})
    name = unique_name("subdir")
    create_fn(lam, name, zip_bytes=z, handler="pkg/mod.handler")
    lam.delete_function(FunctionName=name)


@pytest.mark.skipif(NODE_RUNTIME is None, reason="node is not installed on this host")
def test_node_handler_file_missing(hearth, lam):
    z = make_zip({"index.js": b"exports.handler = async () => 1;\n", "n": nonce()})
    refused_create(hearth, lam, runtime=NODE_RUNTIME, handler="missing.handler", zip_bytes=z,
                   code="InvalidParameterValueException")
    for handler, files in (
        ("index.handler", {"index.js": b"exports.handler = async () => 1;\n"}),
        ("app.handler", {"app.mjs": b"export const handler = async () => 1;\n"}),
    ):
        name = unique_name("node")
        create_fn(lam, name, runtime=NODE_RUNTIME, handler=handler, zip_bytes=make_zip({**files, "n": nonce()}))
        lam.delete_function(FunctionName=name)


@pytest.mark.parametrize("runtime", ["provided", "provided.al2", "provided.al2023"])
def test_provided_needs_executable_bootstrap(hearth, lam, runtime):
    refused_create(hearth, lam, runtime=runtime, handler="irrelevant",
                   zip_bytes=make_zip({"main.sh": b"#!/bin/sh\n", "n": nonce()}),
                   code="InvalidParameterValueException", message_contains="bootstrap")
    refused_create(hearth, lam, runtime=runtime, handler="irrelevant",
                   zip_bytes=provided_zip(executable=False), code="InvalidParameterValueException",
                   message_contains="bootstrap")
    name = unique_name("provided")
    z = provided_zip(executable=True)
    resp = create_fn(lam, name, runtime=runtime, handler="irrelevant", zip_bytes=z)
    assert resp["Runtime"] == runtime
    assert resp["CodeSha256"] == code_sha256(z)
    lam.delete_function(FunctionName=name)


# ---------------------------------------------------------------------------
# Updates that are refused leave the function as it was


def test_refused_updates_change_nothing(hearth, lam, lam_novalidate):
    name = unique_name("keep")
    z = py_zip()
    create_fn(lam, name, zip_bytes=z, MemorySize=256, Environment={"Variables": {"K": "v"}})
    before = lam.get_function_configuration(FunctionName=name)

    bad_zips = [
        b"not a zip at all " + nonce().encode(),
        make_zip({"handler.py": PY_HANDLER, f"../evil-{nonce()}": b"x"}),
        make_zip({"other.py": PY_HANDLER, "n": nonce()}),  # handler.py missing
        zip_bomb_single(),
    ]
    for bad in bad_zips:
        expect_error(lam.update_function_code, FunctionName=name, ZipFile=bad,
                     code="InvalidParameterValueException", status=400)
    expect_error(lam_novalidate.update_function_configuration, FunctionName=name, MemorySize=99999,
                 code="ValidationException", status=400)
    expect_error(lam_novalidate.update_function_configuration, FunctionName=name, Timeout=0,
                 code="ValidationException", status=400)
    expect_error(lam.update_function_configuration, FunctionName=name,
                 Environment={"Variables": {"BIG": "x" * 5000}}, code="InvalidParameterValueException", status=400)
    expect_error(lam.update_function_configuration, FunctionName=name, Runtime="cobol85",
                 code="InvalidParameterValueException", status=400)

    after = lam.get_function_configuration(FunctionName=name)
    for k in ("CodeSha256", "CodeSize", "MemorySize", "Timeout", "Environment", "Runtime", "RevisionId", "LastModified"):
        assert after[k] == before[k], k
    assert after["CodeSha256"] == code_sha256(z)
    lam.delete_function(FunctionName=name)


def test_refused_create_with_publish_stores_no_version(hearth, lam):
    name = unique_name("nopub")
    refused_create(hearth, lam, name=name, zip_bytes=b"junk" + nonce().encode(), Publish=True,
                   code="InvalidParameterValueException")
    expect_error(lam.get_function, FunctionName=name, Qualifier="1", code="ResourceNotFoundException", status=404)
    # The name is free: a good create succeeds and starts at version 1.
    resp = create_fn(lam, name, Publish=True)
    assert resp["Version"] == "1"
    lam.delete_function(FunctionName=name)


def test_base64_zipfile_roundtrip_through_raw_json(hearth, lam):
    """The raw JSON path with a correct base64 ZipFile works (control for the bad-base64 test)."""
    name = unique_name("rawok")
    z = py_zip()
    body = json.dumps({
        "FunctionName": name, "Runtime": PY_RUNTIME, "Role": ROLE, "Handler": "handler.handler",
        "Code": {"ZipFile": base64.b64encode(z).decode()},
    })
    r = hearth.raw("POST", "/2015-03-31/functions", body, headers={"Content-Type": "application/json"})
    assert r.status == 201, (r.status, r.body)
    assert r.json()["CodeSha256"] == code_sha256(z)
    lam.delete_function(FunctionName=name)


def test_refused_code_leaves_no_blob(hearth, lam):
    """Whatever the reason a create or code update is refused, its zip is not
    kept in the content-addressed store (refused uploads must not fill the disk)."""
    cases = [
        dict(zip_bytes=b"not a zip " + nonce().encode()),
        dict(zip_bytes=make_zip({"handler.py": PY_HANDLER, f"../evil-{nonce()}": b"x"})),
        dict(zip_bytes=zip_bomb_single()),
        dict(zip_bytes=make_zip({"other.py": PY_HANDLER, "n": nonce()})),  # handler file missing
        dict(zip_bytes=provided_zip(executable=False), runtime="provided.al2023", handler="x"),
    ]
    for case in cases:
        refused_create(hearth, lam, code="InvalidParameterValueException", **case)
        assert_no_blob(hearth.data_dir, case["zip_bytes"])
    name = unique_name("blobupd")
    create_fn(lam, name, wait=False)
    bad = make_zip({"other.py": PY_HANDLER, "n": nonce()})
    expect_error(lam.update_function_code, FunctionName=name, ZipFile=bad,
                 code="InvalidParameterValueException", status=400)
    assert_no_blob(hearth.data_dir, bad)
    lam.delete_function(FunctionName=name)
