"""The narrow state-store interface and its records.

The engine talks only to ``StateStore``; ``sqlite.py`` is the embedded implementation and a
PostgreSQL backend can implement the same protocol. Every method that changes state is one
transaction and appends the given history ``Event`` in that same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aetherflow.events import Event
from aetherflow.model import empty_map


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    run_id: str
    flow_id: str
    flow_file: str
    flow_sha256: str
    flow_text: str = ""
    flow_version: int | None = None
    params: Mapping[str, Any] = field(default_factory=empty_map)
    business_key: str | None = None
    key_scope: str | None = None  # flow id (unique.scope: flow) or "*" (global)
    status: str = "RUNNING"
    pid: int | None = None
    host: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    updated_at: float | None = None
    finished_at: float | None = None
    attempt: int = 1
    plugin_paths: tuple[str, ...] = ()
    selected_jobs: tuple[str, ...] = ()
    error: str | None = None
    workspace_root: str | None = None
    cancel_reason: str | None = None
    due_at: float | None = None
    profile: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    run_id: str
    job_id: str
    status: str
    reason: str | None = None
    outcome: str | None = None
    outputs: Mapping[str, Any] = field(default_factory=empty_map)
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRecord:
    run_id: str
    job_id: str
    step_id: str
    status: str
    attempt: int = 0
    outcome: str | None = None
    outputs: Mapping[str, Any] = field(default_factory=empty_map)
    masked_keys: tuple[str, ...] = ()
    error: str | None = None
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    run_id: str
    job_id: str
    step_id: str
    attempt: int
    status: str
    outcome: str | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitRecord:
    run_id: str
    job_id: str
    step_id: str
    kind: str  # event | timer | retry
    events: tuple[str, ...] = ()
    due_at: float | None = None
    created_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedEvent:
    id: int
    run_id: str
    job_id: str
    step_id: str
    name: str
    data: Mapping[str, Any] = field(default_factory=empty_map)
    received_at: float = 0.0
    consumed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LockRecord:
    name: str
    run_id: str | None
    pid: int | None
    host: str | None
    since: float
    kind: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StepWrite:
    """One step state change (the engine builds these; the store persists them)."""

    job_id: str
    step_id: str
    status: str
    attempt: int
    outcome: str | None = None
    outputs: Mapping[str, Any] | None = None
    masked_keys: Sequence[str] = ()
    error: str | None = None
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    #: this attempt's own status when it differs from the step's: a FAILED attempt whose retry
    #: is parked (the step is WAITING, the attempt stays FAILED in `runs show`)
    attempt_status: str | None = None


class StateStore(Protocol):
    path: str

    def close(self) -> None: ...

    # runs ------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, event: Event) -> None: ...
    def get_run(self, run_id: str) -> RunRecord | None: ...
    def find_runs(self, prefix: str) -> list[RunRecord]: ...
    def list_runs(
        self, *, status: str | None = None, flow_id: str | None = None, key: str | None = None, limit: int = 50
    ) -> list[RunRecord]: ...
    def update_run(self, run_id: str, event: Event | None, **fields: Any) -> None: ...
    def active_run_for_key(self, key: str) -> RunRecord | None: ...
    def delete_runs(self, run_ids: Sequence[str]) -> None: ...

    # jobs and steps --------------------------------------------------------------------
    def set_job(self, run_id: str, job_id: str, status: str, event: Event | None, **fields: Any) -> None: ...
    def set_step(self, run_id: str, write: StepWrite, event: Event | None, *, sync: bool = True) -> None: ...
    def sync(self) -> None: ...
    def jobs(self, run_id: str) -> dict[str, JobRecord]: ...
    def steps(self, run_id: str) -> dict[tuple[str, str], StepRecord]: ...
    def attempts(self, run_id: str) -> list[AttemptRecord]: ...
    def history(self, run_id: str) -> list[Event]: ...
    def append_history(self, event: Event) -> None: ...

    # waits and events ------------------------------------------------------------------
    def set_wait(self, wait: WaitRecord, write: StepWrite, event: Event | None) -> None: ...
    def waits(self, run_id: str) -> list[WaitRecord]: ...
    def clear_waits(self, run_id: str, event: Event | None) -> None: ...
    def cancel_run(self, run_id: str, reason: str, now: float, event: Event | None) -> None: ...
    def add_event(self, ev: ReceivedEvent, event: Event | None) -> int: ...
    def pending_events(self, run_id: str) -> list[ReceivedEvent]: ...
    def consume_event(self, event_id: int) -> None: ...
    def due_runs(self, now: float, *, flow_id: str | None = None, limit: int | None = None) -> list[RunRecord]: ...
    def claim_run(self, run_id: str, expect_status: str, pid: int, host: str, event: Event | None) -> bool: ...

    # locks -----------------------------------------------------------------------------
    def record_lock(self, lock: LockRecord, event: Event | None) -> None: ...
    def remove_lock(self, name: str, run_id: str | None, event: Event | None) -> None: ...
    def locks(self) -> list[LockRecord]: ...
    def lock_holder(self, name: str) -> LockRecord | None: ...
