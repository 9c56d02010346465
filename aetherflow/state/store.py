"""The state store's interface and its records: everything the engine and the commands ask of a
store, and nothing else.

A backend (``state/sqlite.py``; a PostgreSQL one implements the same protocol) is chosen by
``state/backends.py`` from a store location and passes the one contract test suite
(``tests/state/test_store_contract.py``). Nothing outside ``state/`` knows which backend it
talks to.

Rules every backend keeps:

- Every method that changes state is one transaction, and appends the given history ``Event``
  (when not ``None``) in that same transaction.
- Every text written (outputs, errors, reasons, history data, params) passes through the mask
  set with ``set_mask`` first: no secret reaches the store.
- ``lock(name)`` is a named lock shared by every process using this store and released by the
  system when its holder dies (the run executor lock, flow and job locks, ``with_lock``);
  ``lock_is_free`` probes one without keeping it. Holder *records* (``record_lock``) are only
  for messages and ``locks list``.
- An unreadable, corrupt or unreachable store raises ``StateError`` with a recovery hint; it is
  never reset.
- Fencing: the store object that creates a run (``create_run``) or claims it (``claim_run``)
  becomes its executor and takes a new *generation* of the run. Every later write it makes for
  that run checks, in the write's own transaction, that the generation is still the current
  one; when another executor has claimed the run since, the write is refused with
  ``StateError`` (code ``state.fenced``) and nothing of it is stored. Writes of store objects
  that do not execute the run (``cancel``, an event delivered by ``resume --event``) are not
  fenced.
- A store that can lose what it holds (a database connection with its locks) calls the
  handler given to ``set_lost_handler`` once, from any thread, when it does, and refuses every
  later write (``StateError``, code ``state.lost``); the caller stops the run's steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, Unpack

from aetherflow.events import Event
from aetherflow.model import EMPTY, empty_map, freeze


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
    tags: tuple[str, ...] = ()  # the flow's tags
    flow_metadata: Mapping[str, Any] = field(default_factory=empty_map)  # the flow's metadata
    meta: Mapping[str, Any] = field(default_factory=empty_map)  # the caller's `run --meta K=V`
    #: the steps' metadata updates merged in the order they were recorded (written by set_step)
    runtime_metadata: Mapping[str, Any] = field(default_factory=empty_map)


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
    metadata: Mapping[str, Any] = field(default_factory=empty_map)  # the step result's metadata updates


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
class OutputChunk:
    """A piece of what a step attempt wrote on ``stream`` (``stdout`` or ``stderr``), in the
    order the store received it (``seq``, per run, increasing; 0 in a chunk being written)."""

    run_id: str
    job_id: str
    step_id: str
    attempt: int
    stream: str
    text: str
    at: float = 0.0
    seq: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowSummary:
    """One flow's runs in a store, for metrics and ``aetherflow status``: how many runs have
    each stored status, the newest run, when the newest SUCCESS finished, and how many step
    attempts were recorded FAILED."""

    flow_id: str
    runs_by_status: Mapping[str, int] = field(default_factory=empty_map)
    last_run: RunRecord | None = None
    last_success_at: float | None = None
    step_failures: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RunDump:
    """Every row of one run, for copying it to another store (``aetherflow store copy``):
    received events consumed or not, the history in its order. Lock holder rows are not part of
    it (they describe processes of the source store)."""

    run: RunRecord
    jobs: tuple[JobRecord, ...] = ()
    steps: tuple[StepRecord, ...] = ()
    attempts: tuple[AttemptRecord, ...] = ()
    waits: tuple[WaitRecord, ...] = ()
    events: tuple[ReceivedEvent, ...] = ()
    history: tuple[Event, ...] = ()
    output: tuple[OutputChunk, ...] = ()  # every step attempt's captured output, in order
    notices: tuple[tuple[str, float], ...] = ()  # (kind, at) of the notifications sent once


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
    #: the step result's metadata updates: stored with the step and merged (key by key, later
    #: wins) into the run's ``runtime_metadata`` in the same transaction
    metadata: Mapping[str, Any] | None = None


class RunFields(TypedDict, total=False):
    """Run columns ``update_run`` may change."""

    flow_sha256: str
    flow_text: str
    status: str
    pid: int | None
    host: str | None
    updated_at: float | None
    finished_at: float | None
    selected_jobs: tuple[str, ...]
    error: str | None
    cancel_reason: str | None
    due_at: float | None


class JobFields(TypedDict, total=False):
    """Job columns ``set_job`` writes besides the status."""

    reason: str | None
    outcome: str | None
    outputs: Mapping[str, Any] | None
    started_at: float | None
    finished_at: float | None


class Lock(Protocol):
    """A named lock of one store, shared by every process using it; the system releases it when
    its holder dies. ``acquire`` waits up to ``wait_seconds`` (0: one try) and says whether it is
    held; ``release`` of a lock not held does nothing."""

    @property
    def key(self) -> str: ...
    @property
    def is_held(self) -> bool: ...
    def acquire(self, wait_seconds: float = 0.0) -> bool: ...
    def release(self) -> None: ...


class RunReader(Protocol):
    """What commands that only look (``runs``, ``status``, ``locks list``, completion) use."""

    @property
    def location(self) -> str:
        """Where the store is, for people: a file path, or a URL without its password."""
        ...

    def get_run(self, run_id: str) -> RunRecord | None: ...
    def find_runs(self, prefix: str) -> list[RunRecord]: ...
    def list_runs(
        self, *, status: str | None = None, flow_id: str | None = None, key: str | None = None,
        tags: Sequence[str] = (), limit: int = 50,
    ) -> list[RunRecord]:
        """Newest first. ``key`` as in :meth:`runs_for_key`; ``tags``: runs having every one."""
        ...

    def run_ids(self, prefix: str, limit: int = 50) -> list[str]: ...
    def runs_for_key(self, key: str, *, flow_id: str | None = None, active_only: bool = False) -> list[RunRecord]:
        """Every run holding business key ``key``, newest first, however many and however old:
        ``NAME::VALUE`` (contains ``::``) is that exact key, a bare ``VALUE`` that value under
        any key name. ``active_only``: RUNNING and WAITING runs only."""
        ...

    def cancel_reason(self, run_id: str) -> str | None: ...
    def due_runs(self, now: float, *, flow_id: str | None = None, limit: int | None = None) -> list[RunRecord]: ...
    def jobs(self, run_id: str) -> dict[str, JobRecord]: ...
    def steps(self, run_id: str) -> dict[tuple[str, str], StepRecord]: ...
    def attempts(self, run_id: str) -> list[AttemptRecord]: ...
    def history(self, run_id: str) -> list[Event]: ...
    def waits(self, run_id: str) -> list[WaitRecord]: ...
    def pending_events(self, run_id: str) -> list[ReceivedEvent]: ...
    def output(
        self, run_id: str, *, job_id: str | None = None, step_id: str | None = None, attempt: int | None = None,
        after: int = 0, limit: int = 1000,
    ) -> list[OutputChunk]:
        """The run's captured output with ``seq > after``, in order, at most ``limit`` chunks
        (narrowed to one job, step or attempt when given)."""
        ...

    def flow_summaries(self) -> list[FlowSummary]:
        """A summary of every flow with runs in this store, by flow id."""
        ...

    def locks(self) -> list[LockRecord]: ...
    def lock_holder(self, name: str) -> LockRecord | None: ...
    def lock_is_free(self, name: str) -> bool: ...
    def dump_run(self, run_id: str) -> RunDump | None:
        """Every row of the run (``None`` when it is not recorded)."""
        ...

    def close(self) -> None: ...


class StateStore(RunReader, Protocol):
    """A store that also records: runs, jobs, steps, waits, events, history, lock holders."""

    def set_mask(self, mask: Callable[[str], str]) -> None: ...
    def lock(self, name: str) -> Lock: ...
    def set_lost_handler(self, handler: Callable[[str], None]) -> None:
        """``handler(reason)`` is called once, from any thread, if this store loses what it holds
        (its locks, its run to another executor); see the module docstring."""
        ...

    # runs
    def create_run(self, run: RunRecord, event: Event) -> None:
        """Insert a run; its business key held by an active run raises ``KeyInUseError`` naming
        the holder (its ``holder`` attribute is the run id), checked in the same transaction.
        Held means: the same key with the same ``key_scope``, or either scope ``"*"`` (a
        ``unique.scope: global`` run conflicts with every run holding its key, and the other
        way round)."""
        ...

    def update_run(self, run_id: str, event: Event | None, **fields: Unpack[RunFields]) -> None: ...
    def claim_run(self, run_id: str, expect_status: str, pid: int, host: str, event: Event | None) -> bool:
        """Move the run from ``expect_status`` to RUNNING for this executor, at once and only if it
        is still in that status; steps and attempts left RUNNING are recorded FAILED."""
        ...

    def cancel_run(self, run_id: str, reason: str, now: float, event: Event | None) -> None: ...
    def reschedule_run(self, run_id: str, due_at: float, event: Event | None) -> bool:
        """A WAITING run's waits and the run itself become due at ``due_at`` (``resume --at``),
        in one transaction and only if the run is still WAITING; False if it is not."""
        ...

    def delete_runs(self, run_ids: Sequence[str], *, finished_before: float | None = None) -> list[str]:
        """Delete every record of these runs (rows, history, tags, output, notices) and what the
        backend keeps for them beside (the run's executor lock, once nobody can hold it again);
        returns the ids deleted. A run whose executor lock is held (a live process executes or
        resumes it) is left alone. With ``finished_before``, only runs that are over (SUCCESS,
        FAILED, CANCELLED, INTERRUPTED, TIMED_OUT) and finished before that time."""
        ...

    def mark_notified(self, run_id: str, kind: str, event: Event | None) -> bool:
        """Record that notification ``kind`` (``crashed``) went out for the run: True for the
        one caller that records it first (atomic across clients), False afterwards. ``event``
        is appended to the history only by that caller."""
        ...

    def load_run(self, dump: RunDump) -> None:
        """Insert every row of a run from another store, in one transaction, as they are (no
        mask applied: they were masked when first written). A run id already recorded raises
        ``ConflictError`` (code ``store.run_exists``) and writes nothing."""
        ...

    # jobs and steps
    def set_job(self, run_id: str, job_id: str, status: str, event: Event | None, **fields: Unpack[JobFields]) -> None: ...
    def set_step(self, run_id: str, write: StepWrite, event: Event | None, *, sync: bool = True) -> None:
        """``sync=False`` only for a step result the caller follows at once with a synchronous
        write (the next step's RUNNING): the backend may then skip its own flush."""
        ...

    def set_steps(self, run_id: str, writes: Sequence[StepWrite], event: Event | None) -> None: ...
    def sync(self) -> None:
        """Make every write so far durable (those made with ``sync=False`` too)."""
        ...

    def append_history(self, event: Event) -> None: ...
    def append_output(self, run_id: str, chunks: Sequence[OutputChunk]) -> None:
        """Keep captured output (masked like everything written). Not flushed to disk by itself:
        it becomes durable with the next synchronous write."""
        ...

    # waits and events
    def set_wait(self, wait: WaitRecord, write: StepWrite, event: Event | None) -> None: ...
    def remove_wait(self, run_id: str, job_id: str, step_id: str) -> None: ...
    def clear_waits(self, run_id: str, event: Event | None) -> None: ...
    def add_event(self, ev: ReceivedEvent, event: Event | None) -> int: ...
    def consume_event(self, event_id: int) -> None: ...

    # lock holder records
    def record_lock(self, lock: LockRecord, event: Event | None) -> None: ...
    def remove_lock(self, name: str, run_id: str | None, event: Event | None) -> None: ...


#: the cancel token's reason when the store fails under a running run (its steps are stopped)
STORE_LOST = "store lost"


# lock names: the same on every backend ------------------------------------------------------


def run_lock_key(run_id: str) -> str:
    """Held by the process executing the run, for as long as it does."""
    return f"run:{run_id}"


def flow_lock_key(flow_id: str) -> str:
    return f"flow:{flow_id}"


def job_lock_key(flow_id: str, job_id: str) -> str:
    return f"job:{flow_id}:{job_id}"


def user_lock_key(key: str) -> str:
    """A ``with_lock`` lock."""
    return f"user:{key}"


def run_labels(rec: RunRecord) -> dict[str, Any]:
    """What labels every ``Event`` of this run (``Event(..., **run_labels(rec))``): its business
    key, flow version, tags, and the flow's metadata under the caller's ``--meta``."""
    return {"business_key": rec.business_key, "flow_version": rec.flow_version, "tags": tuple(rec.tags),
            "meta": freeze({**rec.flow_metadata, **rec.meta}) if rec.flow_metadata or rec.meta else EMPTY}


def shown_status(store: RunReader, rec: RunRecord) -> str:
    """The status to show: a run recorded RUNNING whose executor lock is free lost its process
    and is shown CRASHED."""
    if rec.status != "RUNNING":
        return rec.status
    return "CRASHED" if store.lock_is_free(run_lock_key(rec.run_id)) else "RUNNING"
