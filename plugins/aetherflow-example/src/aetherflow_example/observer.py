"""An observer: appends every run event, one JSON object a line, to the file named by the
environment variable ``AETHERFLOW_EXAMPLE_EVENTS``, and does nothing when it is not set.

Observers receive the same ``Event`` objects as ``--events-log``; aetherflow isolates them, so an
observer that raises is logged and never fails a run. Observers get no step context, so this one
reads its setting from the environment at call time (it never changes the environment).
"""

from __future__ import annotations

import json
import os

from aetherflow.core.api import Event, register_observer

ENV_VAR = "AETHERFLOW_EXAMPLE_EVENTS"


@register_observer
def append_event(event: Event) -> None:
    target = os.environ.get(ENV_VAR)
    if not target:
        return
    line = json.dumps(event.as_dict(), sort_keys=True, ensure_ascii=False, default=str)
    # one write of one complete line in append mode: concurrent runs never interleave within a line
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
