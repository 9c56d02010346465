"""The one duration grammar: ``wait`` steps, ``wait_for_event`` timeouts, ``runs prune
--older-than`` and every other option or setting that takes a length of time; and the one
point-in-time parser (``wait`` ``until:``, ``resume --at``).

Grammar: a non-negative number (decimals allowed) followed by an optional unit, spaces allowed
around and between: ``ms``, ``s``, ``m`` (minutes), ``h``, ``d``, ``w`` (7 days). Without a unit
the number is seconds, unless the caller requires a unit (``runs prune --older-than 30`` would
otherwise mean 30 seconds). A JSON number (``seconds: 90``) is seconds. Examples: ``90``,
``500ms``, ``30s``, ``1.5d``, ``2w``.

A time is ISO-8601 as ``datetime.fromisoformat`` reads it, spaces around allowed: with an offset
(``2026-11-23T06:00:00+01:00``, ``Z`` for UTC) it is that instant; without one it is local time
(``2026-11-23 06:00``); a date alone is its midnight, local time.
"""

from __future__ import annotations

import re

__all__ = ["EXAMPLES", "TIME_EXAMPLES", "parse_duration", "parse_time"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
#: what an error message shows as valid examples
EXAMPLES = "e.g. 90, 30s, 30m, 2h, 1.5d or 2w"
#: what an error message shows as valid times
TIME_EXAMPLES = "e.g. 2026-11-23T06:00:00+01:00, 2026-11-23T05:00:00Z or 2026-11-23 06:00 (local time)"


def parse_duration(value: object, *, unit_required: bool = False) -> float | None:
    """Seconds, or ``None`` when ``value`` is not a duration (the caller says so in its own
    error, with :data:`EXAMPLES`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 and not unit_required else None
    if not isinstance(value, str):
        return None
    m = _DURATION.match(value)
    if m is None or (unit_required and m.group(2) is None):
        return None
    return float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1.0)


def parse_time(value: object) -> float | None:
    """Epoch seconds of an ISO-8601 time (a time without an offset is local time), or ``None``
    when ``value`` is not one (the caller says so in its own error, with :data:`TIME_EXAMPLES`)."""
    if not isinstance(value, str):
        return None
    from datetime import datetime  # only when a time is given

    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return when.timestamp()
