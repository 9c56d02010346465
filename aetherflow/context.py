"""Run and step contexts handed to steps: frozen, read-only, built once per run / per step.

``StepContext`` is what a step sees (SPEC section 4): ``env``, ``params``, ``connectors``,
``run_id``, ``flow_id``, ``job_id``, ``step_id``, ``attempt``, ``idempotency_key``, ``workspace``
(the job directory), ``log`` (masks secrets), a cancel token and the step's deadline. The
aetherflow-core helpers ``job_dir()``, ``artifacts_dir()``, ``scratch_dir()`` and
``manifests_dir()`` are kept for plugins written against that package.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aetherflow.model import empty_map
from aetherflow.workspace import JobWorkspace

if TYPE_CHECKING:
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

    # aetherflow-core compatible helpers (job_id argument accepted and must match) ---------
    def job_dir(self, job_id: str | None = None) -> Path:
        return self._dir(None)

    def artifacts_dir(self, job_id: str | None = None) -> Path:
        return self._dir("artifacts")

    def scratch_dir(self, job_id: str | None = None) -> Path:
        return self._dir("scratch")

    def manifests_dir(self, job_id: str | None = None) -> Path:
        return self._dir("manifests")

    def _dir(self, sub: str | None) -> Path:
        p = self.ws.path if sub is None else self.ws.path / sub
        p.mkdir(parents=True, exist_ok=True)
        return p
