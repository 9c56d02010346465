"""Telemetry: history events, the Observer protocol, error-isolating fan-out, JSON-lines log.

Every state change the engine records is also an ``Event``; the same events go to the store's
history (``runs show --history``), to observers registered by plugins (``register_observer``)
and to ``--events-log FILE``. Event names are stable (docs/waiting.md, Telemetry):

run.started run.resumed run.finished run.waiting run.cancelled run.interrupted run.timed_out
run.scheduled run.crash_noticed
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
    """One state change of a run. ``business_key``, ``flow_version``, ``tags`` and ``meta`` (the
    flow's ``metadata`` under the caller's ``run --meta``) label every event of the run for
    observers and the events log; the store's history keeps them once, on the run."""

    name: str
    run_id: str
    ts: float  # wall-clock epoch seconds
    flow_id: str = ""
    job_id: str | None = None
    step_id: str | None = None
    attempt: int | None = None
    data: Mapping[str, Any] = field(default_factory=empty_map)
    business_key: str | None = None
    flow_version: int | None = None
    tags: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=empty_map)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"event": self.name, "ts": self.ts, "run_id": self.run_id, "flow_id": self.flow_id}
        if self.job_id is not None:
            d["job_id"] = self.job_id
        if self.step_id is not None:
            d["step_id"] = self.step_id
        if self.attempt is not None:
            d["attempt"] = self.attempt
        if self.business_key is not None:
            d["business_key"] = self.business_key
        if self.flow_version is not None:
            d["flow_version"] = self.flow_version
        if self.tags:
            d["tags"] = list(self.tags)
        if self.meta:
            d["meta"] = thaw(self.meta)
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
TRANSIENT_EVENTS = frozenset({"step.progress", "run.plan"})


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


class CoreEventLines:
    """Observer writing aetherflow-core's log events (``AETHERFLOW_LOG_FORMAT``), so log parsers
    written for it keep working: ``run_start``, ``job_start``, ``step_start``, ``step_end``,
    ``job_end`` and ``run_summary`` (with ``status_counts``: jobs by status), one per line, as a
    JSON object (``fmt="json"``: ``ts_ms``, ``event`` and the fields) or as ``event key=value ...``
    (``fmt="text"``). They are made from aetherflow's own events (docs/migrating.md has the
    mapping): run.started / run.resumed, job.started, step.started, step.finished / step.failed,
    job.finished / job.skipped / job.blocked, and the run's end."""

    RUN_ENDS = frozenset({"run.finished", "run.waiting", "run.interrupted", "run.cancelled", "run.timed_out"})

    def __init__(self, stream: IO[str], fmt: str = "json") -> None:
        self._stream = stream
        self._fmt = fmt
        self._run_ts: float | None = None
        self._job_ts: dict[str, float] = {}
        self._step_ts: dict[tuple[str, str], tuple[float, str]] = {}
        self._jobs: dict[str, dict[str, Any]] = {}

    def __call__(self, ev: Event) -> None:
        n, d, job, step = ev.name, ev.data, ev.job_id or "", ev.step_id or ""
        ids = {"flow_id": ev.flow_id, "run_id": ev.run_id}
        if n in ("run.started", "run.resumed"):
            self._run_ts = ev.ts
            self._write(ev, "run_start", **ids, **({"yaml": d["flow_file"]} if d.get("flow_file") else {}))
        elif n == "job.started":
            self._job_ts[job] = ev.ts
            self._jobs[job] = {"job_id": job, "status": "RUNNING", "duration_ms": 0, "skip_reason": None, "steps": []}
            self._write(ev, "job_start", **ids, job_id=job)
        elif n == "step.started":
            self._step_ts[(job, step)] = (ev.ts, str(d.get("type", "")))
            self._write(ev, "step_start", **ids, job_id=job, step_id=step, step_type=str(d.get("type", "")))
        elif n in ("step.finished", "step.failed") and (job, step) in self._step_ts:
            started, step_type = self._step_ts.pop((job, step))
            status = str(d.get("status", "SUCCESS")) if n == "step.finished" else "FAILED"
            row = {"step_id": step, "step_type": step_type, "status": status, "duration_ms": _ms(ev.ts - started)}
            if job in self._jobs:
                self._jobs[job]["steps"].append(row)
            self._write(ev, "step_end", **ids, job_id=job, **row)
        elif n in ("job.finished", "job.skipped", "job.blocked"):
            status = str(d.get("status") or n.split(".")[1].upper())
            reason = d.get("reason") if status != "SUCCESS" else None
            summary = self._jobs.setdefault(job, {"job_id": job, "status": status, "duration_ms": 0, "skip_reason": None,
                                                  "steps": []})
            summary["status"], summary["skip_reason"] = status, reason
            if job in self._job_ts:
                summary["duration_ms"] = _ms(ev.ts - self._job_ts.pop(job))
                self._write(ev, "job_end", **ids, job_id=job, status=status, duration_ms=summary["duration_ms"],
                            skip_reason=reason)
        elif n in self.RUN_ENDS:
            counts: dict[str, int] = {}
            for j in self._jobs.values():
                counts[j["status"]] = counts.get(j["status"], 0) + 1
            duration = _ms(ev.ts - self._run_ts) if self._run_ts is not None else 0
            self._write(ev, "run_summary", **ids, duration_ms=duration, status_counts=counts,
                        jobs=list(self._jobs.values()))

    def _write(self, ev: Event, name: str, **fields: Any) -> None:
        if self._fmt == "json":
            line = json.dumps({"ts_ms": int(ev.ts * 1000), "event": name, **fields}, ensure_ascii=False, default=str)
        else:
            line = " ".join([name, *(f"{k}={v}" for k, v in fields.items())])
        self._stream.write(line + "\n")
        self._stream.flush()


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000))
