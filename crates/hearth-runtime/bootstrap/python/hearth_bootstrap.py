"""Hearth's Lambda runtime for python3.x functions.

Started through `bootstrap.py` (`python3 /var/runtime/python/bootstrap.py`)
with the Lambda environment (AWS_LAMBDA_RUNTIME_API, _HANDLER,
LAMBDA_TASK_ROOT, ...). It loads the handler, then serves invocations through
the Runtime API, one at a time, until the sandbox is destroyed. Error bodies,
error types and log lines follow AWS's Python runtime (awslambdaric).

Startup time matters (this runs on every cold start), so it imports only
what it needs: the HTTP client is a small one on `_socket` (http.client costs
~17 ms of imports), and traceback/logging are imported lazily. It
lives in a module rather than in the entry script so that Hearth can
precompile it when installing it. Python 3.8+, standard library only.

Runtime-warm ("await assignment") mode, when started with
HEARTH_AWAIT_ASSIGNMENT=1 and a minimal environment: everything above is
imported, then the runtime long-polls Hearth's assignment endpoint
(GET /2018-06-01/runtime/hearth/assignment, answered with
{"handler": ..., "env": {...}}) and, once assigned, replaces os.environ with
exactly the assigned environment, changes to the task root, sets sys.path
(PYTHONPATH from the assigned environment) and continues as a normal start.
Nothing else is imported before the assignment: an idle runtime-warm sandbox
should cost as little memory as possible. While it waits, it rehearses the
invocation path (`_rehearse`) and a handler's import (`_rehearse_import`,
a module of its own, forgotten afterwards), so the assigned start does not
pay for those first runs.
"""

import sys

sys.dont_write_bytecode = True  # /var/task is read-only; never write .pyc

import os  # noqa: E402 (already imported by site: free)
import time  # noqa: E402
import _socket  # noqa: E402
import importlib  # noqa: E402 (loads every handler; ahead, so a runtime-warm start has it)

_HERE = os.path.dirname(os.path.abspath(__file__))  # this runtime's own frames live here
_API_BASE = "/2018-06-01/runtime/"
_ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
_THEN_NEXT = {"Hearth-Then-Next": "1"}  # see _handle
_ERROR_THEN_NEXT = {_ERROR_TYPE_HEADER: "Unhandled", "Hearth-Then-Next": "1"}
_request_id = ""  # of the invocation in progress, for log records


# JSON through the C accelerator alone. `import json` imports re and enum:
# ~1 MiB of memory in every sandbox, idle or not, and ~7 ms of every start.
# `json.loads` and `json.JSONEncoder(...).encode` do exactly this (the same C
# scanner and encoder, the same whitespace and "Extra data" handling, the
# same errors); a Python without `_json` falls back to the json module.
try:
    from _json import make_scanner as _c_make_scanner  # noqa: E402
    from _json import make_encoder as _c_make_encoder  # noqa: E402
    from _json import encode_basestring_ascii as _c_str_ascii  # noqa: E402
    from _json import encode_basestring as _c_str_utf8  # noqa: E402
except ImportError:
    _c_make_scanner = None

_JSON_WS = " \t\n\r"


def _json_error(msg, doc, pos):
    from json.decoder import JSONDecodeError  # only on bad input

    return JSONDecodeError(msg, doc, pos)


if _c_make_scanner is not None:

    class _ScanContext:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__
        memo = {}

    _json_scan = _c_make_scanner(_ScanContext)

    def _json_loads(s):
        if s.startswith("\ufeff"):
            raise _json_error("Unexpected UTF-8 BOM (decode using utf-8-sig)", s, 0)
        try:
            obj, end = _json_scan(s, len(s) - len(s.lstrip(_JSON_WS)))
        except StopIteration as err:
            raise _json_error("Expecting value", s, err.value) from None
        rest = s[end:]
        if rest.strip(_JSON_WS):
            raise _json_error("Extra data", s, end + len(rest) - len(rest.lstrip(_JSON_WS)))
        return obj

    class _JsonEncoder:
        def __init__(self, default, ensure_ascii):
            self._default = default
            self._str = _c_str_ascii if ensure_ascii else _c_str_utf8

        def encode(self, obj):
            if isinstance(obj, str):
                return self._str(obj)
            encode = _c_make_encoder({}, self._default, self._str, None, ": ", ", ", False, False, True)
            return "".join(encode(obj, 0))

else:  # pragma: no cover (CPython always has _json)
    import json

    _json_loads = json.loads

    def _JsonEncoder(default, ensure_ascii):
        return json.JSONEncoder(default=default, ensure_ascii=ensure_ascii)


class RuntimeApiError(Exception):
    pass


class _Client:
    """A minimal HTTP/1.1 keep-alive client for the Runtime API.

    `channel`: the descriptor of a connected Unix socket to the same
    endpoint, which Hearth's sandbox may give the runtime
    (HEARTH_RUNTIME_API_FD): used first, as the connection; if it ever
    fails, the client falls back to TCP for good."""

    def __init__(self, address, channel=None):
        host, _, port = address.rpartition(":")
        family = _socket.AF_INET
        if host.startswith("["):
            host, family = host[1:-1], _socket.AF_INET6
        self._addr = (host or "127.0.0.1", int(port))
        self._family = family
        self._host_header = address
        self._sock = None
        self._buf = b""
        self._channel = None
        if channel is not None:
            try:
                os.set_inheritable(channel, False)  # not for the handler's children
                self._channel = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, channel)
            except OSError:
                pass

    def _connect(self):
        channel, self._channel = self._channel, None
        if channel is not None:
            self._sock = channel
            self._buf = b""
            return
        s = _socket.socket(self._family, _socket.SOCK_STREAM)
        try:
            s.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            s.connect(self._addr)
        except BaseException:
            s.close()
            raise
        self._sock = s
        self._buf = b""

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._buf = b""

    def request(self, method, path, body=None, headers=None):
        """Returns (status, {lower-case header: value}, body bytes)."""
        head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, self._host_header)
        if body is not None:
            head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        if headers:
            for k, v in headers.items():
                head += "%s: %s\r\n" % (k, v)
        head = (head + "\r\n").encode("latin-1")
        # A reused connection may have been closed by the server while idle:
        # retry once on a fresh one. A fresh connection that fails is an error.
        for attempt in (0, 1):
            # A failure on the channel, too, is retried once (over TCP).
            reused = self._sock is not None or self._channel is not None
            if self._sock is None:
                self._connect()
            try:
                if body is None:
                    self._sock.sendall(head)
                elif len(body) < 65536:
                    self._sock.sendall(head + body)
                else:
                    self._sock.sendall(head)
                    self._sock.sendall(body)
                return self._read_response()
            except (OSError, RuntimeApiError):
                self.close()
                if not reused or attempt:
                    raise

    def _fill(self):
        # 64 KiB stays under malloc's mmap threshold: no mmap/munmap per read.
        data = self._sock.recv(65536)
        if not data:
            raise RuntimeApiError("connection closed by the Runtime API")
        self._buf += data

    def _read_response(self):
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            self._fill()
        head = self._buf[:end].decode("latin-1").split("\r\n")
        self._buf = self._buf[end + 4:]
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise RuntimeApiError("malformed status line: %r" % head[0])
        status = int(parts[1])
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            length = headers.get("content-length")
            if length is not None:
                body = self._read_exact(int(length))
            else:
                body = self._read_to_eof()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def _read_exact(self, n):
        if len(self._buf) >= n:
            out, self._buf = self._buf[:n], self._buf[n:]
            return out
        parts = [self._buf]
        have = len(self._buf)
        self._buf = b""
        while have < n:
            data = self._sock.recv(min(n - have, 4194304))
            if not data:
                raise RuntimeApiError("connection closed by the Runtime API")
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def _read_line(self):
        while True:
            i = self._buf.find(b"\r\n")
            if i >= 0:
                line, self._buf = self._buf[:i], self._buf[i + 2:]
                return line
            self._fill()

    def _read_chunked(self):
        parts = []
        while True:
            size = int(self._read_line().split(b";", 1)[0], 16)
            if size == 0:
                while self._read_line():  # trailers
                    pass
                return b"".join(parts)
            parts.append(self._read_exact(size))
            self._read_exact(2)

    def _read_to_eof(self):
        parts = [self._buf]
        self._buf = b""
        while True:
            data = self._sock.recv(65536)
            if not data:
                break
            parts.append(data)
        self.close()
        return b"".join(parts)


class FaultException(Exception):
    """A failure the runtime itself names (Runtime.*), as awslambdaric does."""

    MARSHAL_ERROR = "Runtime.MarshalError"
    UNMARSHAL_ERROR = "Runtime.UnmarshalError"
    MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
    IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
    USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
    HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
    BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"

    def __init__(self, exception_type, msg, trace=None):
        Exception.__init__(self, msg)
        self.exception_type = exception_type
        self.msg = msg
        self.trace = trace


def _make_error(message, error_type, stack_trace, request_id):
    return {
        "errorMessage": message if message else "",
        "errorType": error_type if error_type else "",
        "requestId": request_id if request_id is not None else "",
        "stackTrace": stack_trace if stack_trace else [],
    }


def _fault_result(etype, value, tb, request_id):
    """An exception as Lambda's error body: frames formatted as
    traceback.format_list does, without this file's leading frames."""
    import traceback

    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(tb)]
    i = 0
    while i < len(frames) and os.path.dirname(os.path.abspath(frames[i][0])) == _HERE:
        i += 1
    try:
        message = str(value)
    except Exception:  # a broken __str__ must not take the runtime down
        message = "<exception str() failed>"
    return _make_error(message, etype.__name__, traceback.format_list(frames[i:]), request_id)


def _log_error(error):
    """The log line AWS's Python runtime writes for an error."""
    line = "[ERROR]"
    etype = error.get("errorType")
    if etype:
        line += " " + etype
    message = error.get("errorMessage")
    if message:
        if etype:
            line += ":"
        line += " " + message
    lines = [line]
    trace = error.get("stackTrace")
    if trace is not None:
        lines.append("Traceback (most recent call last):")
        for element in trace:
            lines.extend(element.splitlines() if element else [""])
    sys.stdout.write("\n".join(lines) + "\n")


def _decimal_default(o):
    dec = sys.modules.get("decimal")
    if dec is not None and isinstance(o, dec.Decimal):
        if o.is_nan():
            return float("nan")
        return int(o) if o == o.to_integral_value() else float(o)
    raise TypeError("Object of type %s is not JSON serializable" % o.__class__.__name__)


def _configure_encoder():
    """AWS's python3.12+ runtimes emit UTF-8; older ones \\u-escape non-ASCII."""
    global _encoder
    execution_env = os.environ.get("AWS_EXECUTION_ENV", "")
    try:
        ensure_ascii = int(execution_env.rpartition("python3.")[2]) < 12
    except ValueError:
        ensure_ascii = False
    _encoder = _JsonEncoder(_decimal_default, ensure_ascii)


_configure_encoder()


def _to_json_bytes(obj):
    text = _encoder.encode(obj)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: fall back to \u escapes
        return _JsonEncoder(_decimal_default, True).encode(obj).encode("ascii")


def _load_handler(spec):
    """The handler function named `module.function`, as awslambdaric loads
    it. A missing function is reported at invocation time, as on AWS."""
    try:
        modname, fname = spec.rsplit(".", 1)
    except ValueError as e:
        raise FaultException(
            FaultException.MALFORMED_HANDLER_NAME, "Bad handler '%s': %s" % (spec, e)
        )
    if modname.split(".")[0] in sys.builtin_module_names:
        raise FaultException(
            FaultException.BUILT_IN_MODULE_CONFLICT,
            "Cannot use built-in module %s as a handler module" % modname,
        )
    try:
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise FaultException(
            FaultException.IMPORT_MODULE_ERROR,
            "Unable to import module '%s': %s" % (modname, e),
        )
    except SyntaxError as e:
        trace = [' File "%s" Line %s\n %s' % (e.filename, e.lineno, e.text)]
        raise FaultException(
            FaultException.USER_CODE_SYNTAX_ERROR,
            "Syntax error in module '%s': %s" % (modname, e),
            trace,
        )
    try:
        return getattr(module, fname)
    except AttributeError:
        fault = FaultException(
            FaultException.HANDLER_NOT_FOUND,
            "Handler '%s' missing on module '%s'" % (fname, modname),
        )

        def missing_handler(*_args):
            raise fault

        return missing_handler


class CognitoIdentity(object):
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]


class Client(object):
    __slots__ = [
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    ]


class ClientContext(object):
    __slots__ = ["custom", "env", "client"]


def _obj_from_dict(cls, d):
    if d is None:
        return None
    obj = cls()
    for field in cls.__slots__:
        setattr(obj, field, d.get(field))
    return obj


class LambdaContext(object):
    """The `context` argument, with awslambdaric's attributes."""

    # The sandbox's environment does not change: read it once, not per event.
    _env = None

    def __init__(self, request_id, client_context, cognito_identity, deadline_ms, invoked_function_arn):
        env = LambdaContext._env
        if env is None:
            get = os.environ.get
            env = LambdaContext._env = (
                get("AWS_LAMBDA_LOG_GROUP_NAME"),
                get("AWS_LAMBDA_LOG_STREAM_NAME"),
                get("AWS_LAMBDA_FUNCTION_NAME"),
                get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
                get("AWS_LAMBDA_FUNCTION_VERSION"),
            )
        self.aws_request_id = request_id
        (
            self.log_group_name,
            self.log_stream_name,
            self.function_name,
            self.memory_limit_in_mb,
            self.function_version,
        ) = env
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = None
        self.client_context = _obj_from_dict(ClientContext, client_context)
        if self.client_context is not None:
            self.client_context.client = _obj_from_dict(Client, self.client_context.client)
        self.identity = _obj_from_dict(CognitoIdentity, {})
        if cognito_identity is not None:
            self.identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
            self.identity.cognito_identity_pool_id = cognito_identity.get("cognitoIdentityPoolId")
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        remaining = self._deadline_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,"
            "function_name=%s,memory_limit_in_mb=%s,function_version=%s,"
            "invoked_function_arn=%s,client_context=%s,identity=%s])"
            % (
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
                self.client_context,
                self.identity,
            )
        )


def _parse_json_header(headers, name):
    value = headers.get(name)
    if not value:
        return None
    try:
        return _json_loads(value)
    except ValueError:
        return None


_logging_ready = False


def _setup_logging_if_used():
    """If the function uses `logging`, give the root logger AWS's handler
    (`[LEVEL]\\t<time>Z\\t<request id>\\t<message>`), unless the function
    configured one itself. Done lazily: importing logging costs startup."""
    global _logging_ready
    if _logging_ready or "logging" not in sys.modules:
        return
    _logging_ready = True
    import logging

    root = logging.getLogger()
    if root.handlers:
        return

    class _RequestIdFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _request_id
            return True

    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    root.addHandler(handler)


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _setup_sys_path(task_root, pythonpath=()):
    # sys.path[0] is the entry script's directory: replace it with the task
    # root, then the layer directories, as AWS orders them. PYTHONPATH comes
    # next: at a normal start the interpreter already put it there; a
    # runtime-warm one passes the assigned entries.
    path = [p for p in sys.path if p and os.path.abspath(p) != _HERE]
    minor = "python%d.%d" % sys.version_info[:2]
    front = [task_root, "/opt/python/lib/%s/site-packages" % minor, "/opt/python"]
    front += [p for p in pythonpath if p not in front]
    sys.path[:] = front + [p for p in path if p not in front]
    # Forget what was probed of these before the code was mounted.
    for p in front:
        sys.path_importer_cache.pop(p, None)


def _await_assignment(client):
    """Runtime-warm: waits, parked on Hearth's assignment endpoint, until the
    daemon assigns this sandbox to a function; returns the assignment."""
    status, _, body = client.request("GET", _API_BASE + "hearth/assignment")
    if status != 200:
        sys.stderr.write("Runtime API refused the assignment poll: %d %s\n" % (status, body[:200]))
        _flush()
        sys.exit(1)
    return _json_loads(body.decode("utf-8"))


def _apply_assignment(assignment):
    """Makes this process the function's: exactly the assigned environment
    (the boot environment only had what the runtime needed), the task root
    as working directory. Returns the handler and the PYTHONPATH entries."""
    environ = os.environ
    tz = environ.get("TZ")
    for name in list(environ):  # clear(), without its popitem() per name
        del environ[name]
    for name, value in assignment["env"].items():
        environ[name] = value
    if environ.get("TZ") != tz:
        time.tzset()
    task_root = environ.get("LAMBDA_TASK_ROOT", "/var/task")
    try:
        os.chdir(task_root)
    except OSError as e:
        sys.stderr.write("Cannot change to the task root: %s\n" % e)
    pythonpath = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return assignment["handler"], pythonpath


def _handle(client, handler, status, headers, body):
    """Runs one invocation and posts its answer. Returns the next invocation
    (status, headers, body) when the Runtime API sent it in reply to the
    answer (Hearth-Then-Next), else None: the caller then asks `next`."""
    global _request_id
    request_id = headers.get("lambda-runtime-aws-request-id", "")
    _request_id = request_id
    trace_id = headers.get("lambda-runtime-trace-id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    elif "_X_AMZN_TRACE_ID" in os.environ:
        del os.environ["_X_AMZN_TRACE_ID"]
    error = None
    try:
        try:
            deadline_ms = int(headers.get("lambda-runtime-deadline-ms", "0"))
        except ValueError:
            deadline_ms = 0
        context = LambdaContext(
            request_id,
            _parse_json_header(headers, "lambda-runtime-client-context"),
            _parse_json_header(headers, "lambda-runtime-cognito-identity"),
            deadline_ms,
            headers.get("lambda-runtime-invoked-function-arn"),
        )
        try:
            event = _json_loads(body.decode("utf-8"))
        except ValueError as e:  # UnicodeDecodeError is a ValueError too
            raise FaultException(FaultException.UNMARSHAL_ERROR, "Unable to unmarshal input: %s" % e)
        _setup_logging_if_used()
        result = handler(event, context)
        try:
            payload = _to_json_bytes(result)
        except (TypeError, ValueError, OverflowError, RecursionError) as e:
            raise FaultException(FaultException.MARSHAL_ERROR, "Unable to marshal response: %s" % e)
    except FaultException as e:
        error = _make_error(e.msg, e.exception_type, e.trace, request_id)
    except Exception:
        etype, value, tb = sys.exc_info()
        error = _fault_result(etype, value, tb, request_id)
        del tb
    # Hearth's Runtime API answers an answer sent with _THEN_NEXT with the
    # next invocation (one exchange per invocation); 202 means it did not.
    if error is None:
        _flush()
        status, headers, reply = client.request(
            "POST", _API_BASE + "invocation/%s/response" % request_id, payload, _THEN_NEXT
        )
    else:
        _log_error(error)
        _flush()
        status, headers, reply = client.request(
            "POST",
            _API_BASE + "invocation/%s/error" % request_id,
            _to_json_bytes(error),
            _ERROR_THEN_NEXT,
        )
    if status == 200:
        return status, headers, reply
    if status != 202:
        # 413 (response too large) is already reported to the invoker.
        sys.stderr.write("Runtime API refused the answer for %s: %d %s\n" % (request_id, status, reply[:200]))
        sys.stderr.flush()
    return None


def _rehearse():
    """Runs the invocation path's own code once on made-up input — never
    the handler, never the Runtime API — so the first real event does not
    pay for first executions (CPython's adaptive interpreter warming up,
    lazily built objects). Provisioned sandboxes wait for their first event
    with this done."""
    try:
        c = _Client.__new__(_Client)
        c._sock = None
        c._buf = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Lambda-Runtime-Aws-Request-Id: rehearsal\r\nLambda-Runtime-Deadline-Ms: 0\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )
        for _ in range(2):
            c._buf = c._buf if c._buf else b""
            status, headers, body = c._read_response()
            LambdaContext(
                headers.get("lambda-runtime-aws-request-id", ""),
                _parse_json_header(headers, "lambda-runtime-client-context"),
                _parse_json_header(headers, "lambda-runtime-cognito-identity"),
                int(headers.get("lambda-runtime-deadline-ms", "0")),
                headers.get("lambda-runtime-invoked-function-arn"),
            ).get_remaining_time_in_millis()
            _json_loads(body.decode("utf-8"))
            _to_json_bytes({"statusCode": 200, "body": [1, "x", None, 1.5]})
            c._buf = (
                b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                b"Content-Length: 15\r\n\r\n{\"status\":\"OK\"}"
            )
            c._read_response()
            c._buf = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Lambda-Runtime-Aws-Request-Id: rehearsal\r\nLambda-Runtime-Deadline-Ms: 0\r\n"
                b"Content-Length: 2\r\n\r\n{}"
            )
    except Exception:
        pass
    finally:
        # Read again from the real environment (a runtime-warm sandbox
        # rehearses before its assignment gives it one).
        LambdaContext._env = None


def _rehearse_import():
    """Runtime-warm: imports a small module of the runtime's own through the
    path a handler's module takes (a new sys.path entry, the path finder,
    the source loader, compile, exec), then forgets it. An interpreter's
    first import from a new directory costs about twice a later one (its
    first run of the compiler and of importlib's finders and loaders): this
    pays that while idle, not in the assigned start (Init Duration)."""
    here = os.path.join(_HERE, "rehearsal")
    saved = sys.path[:]
    try:
        sys.path[:0] = [here]
        _load_handler("_hearth_rehearsal.handler")
    except Exception:
        pass
    finally:
        sys.path[:] = saved
        sys.modules.pop("_hearth_rehearsal", None)
        sys.path_importer_cache.pop(here, None)


def main():
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except Exception:
        pass
    # The sandbox's Unix socket to the Runtime API, if it gave one: taken
    # out of the environment (the handler never sees it).
    channel = os.environ.pop("HEARTH_RUNTIME_API_FD", None)
    try:
        channel = int(channel) if channel is not None else None
    except ValueError:
        channel = None
    client = _Client(os.environ.get("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"), channel)
    assignment = None
    rehearsed = False
    if os.environ.get("HEARTH_AWAIT_ASSIGNMENT") == "1":
        # Rehearsed while idle, not after the assignment, so the assigned
        # start (Init Duration) does not pay for it; nothing of either
        # rehearsal is left for the handler to see.
        _rehearse()
        _rehearse_import()
        rehearsed = True
        assignment = _await_assignment(client)

    init_error = None
    try:
        if assignment is None:
            spec, pythonpath = os.environ.get("_HANDLER", ""), ()
        else:
            spec, pythonpath = _apply_assignment(assignment)
            assignment = None
            _configure_encoder()
        _setup_sys_path(os.environ.get("LAMBDA_TASK_ROOT", "/var/task"), pythonpath)
        handler = _load_handler(spec)
    except FaultException as e:
        init_error = _make_error(e.msg, e.exception_type, e.trace, "")
    except Exception:
        etype, value, tb = sys.exc_info()
        init_error = _fault_result(etype, value, tb, "")
        del tb
    if init_error is not None:
        _log_error(init_error)
        _flush()
        status, _, reply = client.request(
            "POST",
            _API_BASE + "init/error",
            _to_json_bytes(init_error),
            {_ERROR_TYPE_HEADER: init_error["errorType"]},
        )
        if status != 202:
            sys.stderr.write("Runtime API refused init/error: %d %s\n" % (status, reply[:200]))
        _flush()
        sys.exit(1)

    if not rehearsed:
        _rehearse()
    following = None
    while True:
        if following is None:
            following = client.request("GET", _API_BASE + "invocation/next")
        status, headers, body = following
        if status != 200:
            sys.stderr.write("Runtime API refused next: %d %s\n" % (status, body[:200]))
            _flush()
            sys.exit(1)
        following = _handle(client, handler, status, headers, body)

