"""The python function of the invoke suite (handler `app.handler`).

It echoes its event unless the event is an object with an "__e2e" key naming
an operation: raise, print, sleep, exit, alloc, env, context, big, whoami,
version.
"""

import os
import sys
import time
import uuid

BOOT = uuid.uuid4().hex  # one per runtime process: tells sandboxes apart

VERSION_MARK = "unversioned"  # replaced per published version by the qualifier test


def handler(event, context):
    op = event.get("__e2e") if isinstance(event, dict) else None
    if op is None:
        return event
    if op == "raise":
        raise ValueError(event["message"])
    if op == "print":
        for line in event["lines"]:
            print(line, flush=True)
        return {"printed": len(event["lines"])}
    if op == "sleep":
        if event.get("announce"):
            print(event["announce"], flush=True)
        time.sleep(event["seconds"])
        return {"slept": event["seconds"]}
    if op == "exit":
        sys.exit(event["code"])
    if op == "alloc":
        chunks = []
        for _ in range(event["mb"] // 16):
            chunks.append(b"\x01" * (16 << 20))  # written, so resident
        return {"allocated_mb": 16 * len(chunks)}
    if op == "env":
        return dict(os.environ)
    if op == "context":
        cc = context.client_context
        client_context = None
        if cc is not None:
            client = cc.client
            client_context = {
                "custom": cc.custom,
                "env": cc.env,
                "client": None if client is None else {k: getattr(client, k) for k in client.__slots__},
            }
        return {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "memory_limit_in_mb": str(context.memory_limit_in_mb),
            "invoked_function_arn": context.invoked_function_arn,
            "log_group_name": context.log_group_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "client_context": client_context,
            "version_mark": VERSION_MARK,
        }
    if op == "big":
        return "x" * event["size"]
    if op == "whoami":
        time.sleep(event.get("seconds", 0))
        return {"boot": BOOT, "uid": os.getuid()}
    if op == "version":
        return {"mark": VERSION_MARK, "env_version": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")}
    raise ValueError("unknown op %r" % (op,))
