"""What the executor is given (``RunInputs``, ``Services``), what its parts share while it runs
(``RunState``) and what it returns (``RunResult``)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aetherflow.context import CancelToken
from aetherflow.engine.plan import Plan
from aetherflow.events import Event
from aetherflow.model import FlowSpec, JobStatus, RunStatus
from aetherflow.registry import Registry
from aetherflow.state.store import ReceivedEvent, RunRecord, StateStore, WaitRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    store: StateStore
    registry: Registry
    emit: Callable[[Event], None]
    log: logging.Logger
    cancel: CancelToken
    clock: Callable[[], float] = time.time
    hooks: Callable[[str, Mapping[str, Any]], None] = lambda name, info: None
    pid: int = 0
    host: str = ""
    inline_wait_max: float = 60.0
    should_cancel: Callable[[], str | None] = lambda: None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInputs:
    flow: FlowSpec
    run: RunRecord
    plan: Plan
    env: Mapping[str, str]
    params: Mapping[str, Any]
    secrets: Mapping[str, str]  # revealed values, for {{ secrets.NAME }}
    connectors: Mapping[str, Any]
    workspace_root: Path
    mask: Callable[[str], str]
    mask_outputs: Callable[[Mapping[str, Any]], tuple[dict[str, Any], tuple[str, ...]]]


@dataclass(slots=True)
class RunResult:
    status: RunStatus
    jobs: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    waits: list[WaitRecord] = field(default_factory=list)
    failed_steps: list[tuple[str, str, str]] = field(default_factory=list)  # job, step, error
    interrupt: str | None = None


class RunState:
    """What the scheduler and the jobs share while the run executes: the result so far, the
    ``jobs`` template root, the run's waits and its received events not yet consumed. Status
    changes go through :meth:`set_job_status` (parallel jobs run in threads)."""

    def __init__(self, waits: list[WaitRecord], events: list[ReceivedEvent]) -> None:
        self.result = RunResult(status=RunStatus.RUNNING)
        self.jobs_scope: dict[str, dict[str, Any]] = {}
        self.waits = {(w.job_id, w.step_id): w for w in waits}
        self.events = events
        self.lock = threading.Lock()

    def set_job_status(self, job_id: str, status: str, reason: str | None = None) -> None:
        with self.lock:
            self.result.jobs[job_id] = status
            if reason:
                self.result.reasons[job_id] = reason
            entry = self.jobs_scope.setdefault(job_id, {"outputs": {}, "steps": {}, "outcome": None})
            entry["status"] = status
            entry["skip_reason"] = reason if status == JobStatus.SKIPPED else None
