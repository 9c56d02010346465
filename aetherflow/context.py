"""Run and step contexts handed to steps: frozen, read-only, built once per run / per step.

``StepContext`` is what a step sees (SPEC section 4): ``env``, ``params``, ``connectors``,
``run_id``, ``flow_id``, ``job_id``, ``step_id``, ``attempt``, ``idempotency_key``, ``workspace``
(the job directory), ``log`` (masks secrets), a cancel token and the step's deadline.

What aetherflow-core's ``RunContext`` offered is there too, for plugins written against it:
``job_dir(job_id)``, ``artifacts_dir(job_id)``, ``scratch_dir(job_id)``, ``manifests_dir(job_id)``
(that job's directories in this run; created), ``work_root``, ``layout``, ``settings`` (a
read-only ``CoreSettings``), ``resources`` (each resource's resolved kind, driver, config and
options, read-only), ``acquire_lock(key, ttl_seconds)`` / ``release_lock(key)`` (the named
locks of ``with_lock``, without waiting; what a step leaves held is released when it ends).
``state`` (its state store) is not given to steps: reading it raises a ``StepError`` naming what
to use instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aetherflow.compat import CoreSettings
from aetherflow.errors import LockBusyError, StepError
from aetherflow.model import EMPTY, empty_map
from aetherflow.workspace import JobWorkspace, job_workspace

if TYPE_CHECKING:
    from aetherflow.events import Event
    from aetherflow.state.store import Lock


class StepLocks(Protocol):
    """``ctx.locks``: named locks shared by every process that uses the run's store, for
    built-in steps such as ``with_lock``. ``acquire`` raises ``LockBusyError`` (naming the
    holder) when the lock is not free within ``wait_seconds``."""

    def acquire(self, key: str, wait_seconds: float = 0.0) -> Lock: ...
    def release(self, lock: Lock) -> None: ...


#: the cancel reason of a run whose own time limit expired (flow.timeout_seconds, run --timeout);
#: a step's ``timeout_seconds`` is ``"timeout"`` on the step's own token
RUN_TIMEOUT = "run timeout"


class CancelToken:
    """Set once when work must stop (signal, cancel, timeout). Thread-safe.

    ``reason`` tells why (``"SIGTERM"``, ``"SIGINT"``, ``"timeout"``, ``"cancel"``,
    :data:`RUN_TIMEOUT`). A child
    token (``CancelToken(parent)``) is also set when its parent is; waiters registered with
    ``wake`` are woken when the token (or a parent) is set.
    """

    __slots__ = ("_event", "reason", "_parent", "_wakers", "_guard")

    def __init__(self, parent: CancelToken | None = None) -> None:
        self._event = threading.Event()
        self.reason: str | None = None
        self._parent = parent
        self._wakers: list[threading.Event] = []
        self._guard = threading.Lock()

    def set(self, reason: str) -> None:
        with self._guard:
            if not self._event.is_set():
                self.reason = reason
            self._event.set()
            wakers = list(self._wakers)
        for w in wakers:
            w.set()

    def is_set(self) -> bool:
        if self._event.is_set():
            return True
        return self._parent is not None and self._parent.is_set()

    def why(self) -> str | None:
        if self._event.is_set():
            return self.reason
        return self._parent.why() if self._parent is not None else None

    def wake(self, event: threading.Event) -> None:
        """Set ``event`` when this token (or a parent) is set."""
        with self._guard:
            self._wakers.append(event)
            already = self._event.is_set()
        if self._parent is not None:
            self._parent.wake(event)
        if already:
            event.set()

    def unwake(self, event: threading.Event) -> None:
        with self._guard:
            if event in self._wakers:
                self._wakers.remove(event)
        if self._parent is not None:
            self._parent.unwake(event)

    def wait(self, timeout: float | None) -> bool:
        """Sleep up to ``timeout`` seconds; return True early when the token is set."""
        if self.is_set():
            return True
        ev = threading.Event()
        self.wake(ev)
        try:
            ev.wait(timeout)
        finally:
            self.unwake(ev)
        return self.is_set()


class MaskingAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Logger adapter that prefixes job/step and masks secrets in every message."""

    def __init__(self, logger: logging.Logger, prefix: str, mask: Callable[[str], str]) -> None:
        super().__init__(logger, {})
        self._prefix = prefix
        self._mask = mask

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return self._mask(f"{self._prefix}{msg}"), kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        if args:
            try:
                msg = str(msg) % args
            except (TypeError, ValueError):
                msg = f"{msg} {args}"
        msg, kwargs = self.process(msg, kwargs)
        self.logger.log(level, msg, **kwargs)


class HeldLocks:
    """The named locks one step took with ``ctx.acquire_lock`` (key → lock). Thread-safe."""

    __slots__ = ("_guard", "_held")

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: dict[str, Lock] = {}

    def add(self, key: str, lock: Lock) -> None:
        with self._guard:
            self._held[key] = lock

    def take(self, key: str) -> Lock | None:
        with self._guard:
            return self._held.pop(key, None)

    def holds(self, key: str) -> bool:
        with self._guard:
            return key in self._held

    def take_all(self) -> list[Lock]:
        with self._guard:
            held, self._held = list(self._held.values()), {}
        return held


@dataclass(frozen=True, slots=True, kw_only=True)
class StepContext:
    run_id: str
    flow_id: str
    job_id: str
    step_id: str
    attempt: int
    env: Mapping[str, str]
    params: Mapping[str, Any]
    connectors: Mapping[str, Any]
    ws: JobWorkspace
    log: logging.LoggerAdapter  # type: ignore[type-arg]
    cancel: CancelToken
    deadline: float | None = None  # time.monotonic() value, or None
    mask: Callable[[str], str] = field(default=lambda s: s)
    flow_file: str = ""
    layout: Mapping[str, Any] = field(default_factory=empty_map)
    #: set when a WAITING step is executed again: {"kind": "timer"|"event"|"retry", "due_at": ..}
    wakeup: Mapping[str, Any] | None = None
    #: engine services for built-ins: run a nested step, take a named lock
    invoke: Callable[..., Any] | None = None
    locks: StepLocks | None = None
    inline_wait_max: float = 60.0
    clock: Callable[[], float] = time.time
    #: report a one-line status (e.g. the last output line); shown live, never stored
    progress: Callable[[str], None] | None = None
    #: locks taken with acquire_lock, released by release_lock or at the step's end
    held_locks: HeldLocks = field(default_factory=HeldLocks)
    #: the run's history so far, oldest first (read-only; secrets masked): ``ctx.history()``
    history: Callable[[], tuple[Event, ...]] | None = None
    #: keep what the step's command wrote: ``output("stdout" | "stderr", chunk_bytes)``; stored
    #: masked with the attempt, for ``aetherflow runs logs``
    output: Callable[[str, bytes], None] | None = None

    @property
    def idempotency_key(self) -> str:
        """``run_id/job_id/step_id``: stable across attempts and resumes."""
        return f"{self.run_id}/{self.job_id}/{self.step_id}"

    @property
    def workspace(self) -> Path:
        """This job's directory: ``<root>/<flow_id>/<job_id>/<run_id>/``."""
        return self.ws.path

    @property
    def work_root(self) -> Path:
        return self.ws.root

    def remaining(self) -> float | None:
        """Seconds left before the step's timeout, or None without a timeout."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def cancelled(self) -> bool:
        return self.cancel.is_set() or (self.deadline is not None and time.monotonic() >= self.deadline)

    # aetherflow-core's RunContext ------------------------------------------------------------
    def job_dir(self, job_id: str | None = None) -> Path:
        """The directory of job ``job_id`` (default: this step's job) in this run; created."""
        return self._dir(job_id, None)

    def artifacts_dir(self, job_id: str | None = None) -> Path:
        return self._dir(job_id, "artifacts")

    def scratch_dir(self, job_id: str | None = None) -> Path:
        return self._dir(job_id, "scratch")

    def manifests_dir(self, job_id: str | None = None) -> Path:
        return self._dir(job_id, "manifests")

    def _dir(self, job_id: str | None, sub: str | None) -> Path:
        ws = self.ws
        if job_id is not None and job_id != self.job_id:
            ws = job_workspace(ws.root, self.flow_id, job_id, self.run_id, ws.layout)
        p = ws.path if sub is None else ws.path / ws.layout[sub]
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def settings(self) -> CoreSettings:
        """aetherflow-core's settings fields, read-only, with aetherflow's values."""
        return CoreSettings.from_env(self.env, work_root=str(self.ws.root))

    @property
    def resources(self) -> Mapping[str, Any]:
        """Each resource's resolved ``kind``, ``driver``, ``config`` and ``options`` (read-only;
        secrets included, as the connectors get them: never put them in outputs or logs)."""
        return getattr(self.connectors, "resources", EMPTY)  # type: ignore[no-any-return]

    @property
    def state(self) -> Any:
        raise StepError(
            "ctx.state (aetherflow-core's state store) is not given to steps: aetherflow records run, job and "
            "step state itself. Return values as StepResult outputs and read earlier ones as {{ steps.ID.KEY }} "
            "or jobs.ID.outputs; take a named lock with ctx.acquire_lock(key) or the with_lock step",
            code="step.no_state_store",
        )

    def acquire_lock(self, key: str, ttl_seconds: float | None = None) -> bool:
        """Take the named lock ``key`` (the lock ``with_lock`` takes) without waiting: True when
        held (also when this step holds it already), False when another holder has it.
        ``ttl_seconds`` is accepted and ignored: an OS lock never expires under a live holder."""
        if self.locks is None:
            raise StepError("named locks are not available here", code="step.no_locks")
        if self.held_locks.holds(key):
            return True
        try:
            lock = self.locks.acquire(key, 0.0)
        except LockBusyError:
            return False
        self.held_locks.add(key, lock)
        return True

    def release_lock(self, key: str) -> None:
        """Release the lock ``key`` this step took with ``acquire_lock`` (no-op otherwise)."""
        lock = self.held_locks.take(key)
        if lock is not None and self.locks is not None:
            self.locks.release(lock)

    def release_held_locks(self) -> None:
        """Release what the step left held (the engine calls this when the step ends)."""
        for lock in self.held_locks.take_all():
            if self.locks is not None:
                self.locks.release(lock)
