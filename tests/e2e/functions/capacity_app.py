"""The python function of the capacity suite (handler `cap.handler`).

Every answer says which runtime process served it (`boot`, one per
sandbox), its uid, and the initialisation type the runtime was given. The
event's "op" picks what else it does:

- "sleep": holds its sandbox `seconds`, reporting the host's wall clock
  (time.time) when it started and ended;
- "tmp-write": writes /tmp/marker-<nonce>;
- "tmp-check": whether /tmp/marker-<nonce> exists, and every marker-* file in /tmp;
- anything else: just the identity.

`traces` lists what the runtime-warm rehearsal (an import of a module of
the runtime's own) could have left behind: any module or sys.path entry
named after it; `path0` is sys.path's first entry (the task root).
"""

import os
import sys
import time
import uuid

BOOT = uuid.uuid4().hex


def _markers():
    try:
        return sorted(n for n in os.listdir("/tmp") if n.startswith("marker-"))
    except OSError as e:
        return ["<listdir failed: %s>" % e]


def handler(event, context):
    event = event if isinstance(event, dict) else {}
    op = event.get("op")
    out = {
        "boot": BOOT,
        "uid": os.getuid(),
        "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        "memory_limit_in_mb": str(context.memory_limit_in_mb),
        "traces": [m for m in sys.modules if "rehearsal" in m] + [p for p in sys.path if "rehearsal" in p],
        "path0": sys.path[0],
    }
    if op == "sleep":
        out["start"] = time.time()
        time.sleep(float(event["seconds"]))
        out["end"] = time.time()
    elif op == "tmp-write":
        path = "/tmp/marker-" + event["nonce"]
        with open(path, "w") as f:
            f.write(event["nonce"])
        out["exists"] = os.path.exists(path)
        out["markers"] = _markers()
    elif op == "tmp-check":
        out["exists"] = os.path.exists("/tmp/marker-" + event["nonce"])
        out["markers"] = _markers()
    return out
