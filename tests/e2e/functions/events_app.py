"""The function of the events suite (handler `events_app.handler`).

Each invocation prints one line, `EVENT <json>`, with the event it received,
its request id, the wall-clock time it started and its runtime process's
BOOT id; then fails if the event says `fail`, sleeps if it says `sleep`,
and returns `{"ok": <id>}`. A destination function of the same code prints
the invocation record it receives.
"""

import json
import time
import uuid

BOOT = uuid.uuid4().hex


def handler(event, context):
    started = time.time()
    print("EVENT " + json.dumps({"event": event, "rid": context.aws_request_id, "t": started, "boot": BOOT}),
          flush=True)
    if isinstance(event, dict):
        if event.get("sleep"):
            time.sleep(event["sleep"])
        if event.get("fail"):
            raise RuntimeError(f"intentional failure {event.get('id')}")
        return {"ok": event.get("id")}
    return {"ok": None}
