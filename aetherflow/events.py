"""Telemetry: history events, the Observer protocol, error-isolating fan-out, JSON-lines log.

Every state change the engine records is also an ``Event``; the same events go to the store's
history (``runs show --history``), to observers registered by plugins (``register_observer``)
and to ``--events-log FILE``. Event names are stable (docs/events.md):

run.started run.resumed run.finished run.waiting run.cancelled run.interrupted run.timed_out
run.crash_noticed
job.started job.finished job.skipped job.blocked
step.started step.finished step.failed step.retry step.waiting step.restored
event.received timer.fired lock.acquired lock.released lock.waiting flow.changed_accepted
notify.sent notify.failed

An observer that raises is logged and dropped for that event; it never fails a run.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, TypeVar, runtime_checkable

from aetherflow.model import empty_map, thaw

OBSERVER_MARK = "__aetherflow_observer__"
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    name: str
    run_id: str
    ts: float  # wall-clock epoch seconds
    flow_id: str = ""
    job_id: str | None = None
    step_id: str | None = None
    attempt: int | None = None
    data: Mapping[str, Any] = field(default_factory=empty_map)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"event": self.name, "ts": self.ts, "run_id": self.run_id, "flow_id": self.flow_id}
        if self.job_id is not None:
            d["job_id"] = self.job_id
        if self.step_id is not None:
            d["step_id"] = self.step_id
        if self.attempt is not None:
            d["attempt"] = self.attempt
        if self.data:
            d["data"] = thaw(self.data)
        return d


@runtime_checkable
class Observer(Protocol):
    def __call__(self, event: Event) -> None: ...


def register_observer(obj: T) -> T:
    """Mark a callable (or a class whose instances are callables) as an observer.
    Plugins use it; the plugin loader collects marked objects into the registry."""
    setattr(obj, OBSERVER_MARK, True)
    return obj


class Fanout:
    """Deliver events to observers; an observer that raises is logged, never propagated."""

    def __init__(self, observers: Iterable[Callable[[Event], None]], log: logging.Logger) -> None:
        self._observers = tuple(observers)
        self._log = log
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        for obs in self._observers:
            try:
                with self._lock:
                    obs(event)
            except BaseException as exc:  # noqa: BLE001 - isolation is the point (SystemExit too)
                self._log.warning("observer %r failed on %s: %s", getattr(obs, "__name__", obs), event.name, exc)


#: events offered to observers only (live display); never stored nor written to the events log
TRANSIENT_EVENTS = frozenset({"step.progress"})


class JsonLinesLog:
    """Observer writing one JSON object per line, flushed per event."""

    def __init__(self, stream: IO[str], mask: Callable[[str], str] = lambda s: s) -> None:
        self._stream = stream
        self._mask = mask

    def __call__(self, event: Event) -> None:
        if event.name in TRANSIENT_EVENTS:
            return
        line = json.dumps(event.as_dict(), ensure_ascii=False, default=str, sort_keys=True)
        self._stream.write(self._mask(line) + "\n")
        self._stream.flush()
