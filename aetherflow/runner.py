"""Runs and resumes: the run's records and locks around the engine's executor.

``Runner.run`` starts a run of a flow file (or continues the one ``--run-id`` names);
``Runner.resume`` continues a recorded run. Both prepare the run first (``prepare.py``: plugins,
flow, env, params, secrets, resources; a failure there records nothing), then, under the run's
executor lock (and the flow lock with ``locks.scope: flow``), record the run, build the
executor's inputs and services, execute, and record the end. The store, the plugin loader, the
clock and the cancel token are given by the caller (the CLI, or a test); nothing here prints or
reads the process environment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aetherflow import template
from aetherflow.config import OnLocked
from aetherflow.context import RUN_TIMEOUT, CancelToken
from aetherflow.errors import (
    AetherflowError,
    ConflictError,
    ExitCode,
    Interrupted,
    KeyInUseError,
    LockBusyError,
    NotFoundError,
    PluginError,
    ResolutionError,
    RunActiveError,
    SpecError,
    StateError,
    UsageError,
)
from aetherflow.events import Event, Fanout
from aetherflow.model import (
    KEY_SEPARATOR,
    MASKED_KEYS_FIELD,
    FlowSpec,
    NotifySpec,
    RunStatus,
    freeze,
    split_key,
    thaw,
)
from aetherflow.notify import Delivery, Notice, event_for_status
from aetherflow.prepare import (
    Prepared,
    load_checked,
    prepare,
    validation_cache,
    warn_plugin_errors,
    workspace_root,
)
from aetherflow.prepare import load_plugins as default_plugin_loader
from aetherflow.settings import Settings, state_location
from aetherflow.state.backends import open_store as default_store_opener
from aetherflow.state.backends import public_location
from aetherflow.state.catalog import StoreCatalog
from aetherflow.state.store import (
    STORE_LOST,
    Lock,
    LockRecord,
    ReceivedEvent,
    RunRecord,
    StateStore,
    flow_lock_key,
    run_labels,
    run_lock_key,
    shown_status,
)

if TYPE_CHECKING:
    from aetherflow.engine.services import RunResult
    from aetherflow.plugins import LoadedPlugins
    from aetherflow.resolve import Redactor

__all__ = [
    "Notifier",
    "RunOutcome",
    "RunRequest",
    "Runner",
    "cancel_run",
    "check_run_id",
    "new_run_id",
    "notify_crashed",
    "parse_event_data",
    "parse_meta_args",
    "schedule_resume",
]

log = logging.getLogger("aetherflow")

StoreOpener = Callable[..., StateStore]
PluginLoader = Callable[[Settings, Sequence[str]], "LoadedPlugins"]


class Notifier(Protocol):
    """Sends notices (``notify.Dispatcher``): to the config file's notifiers that want the
    event and to the flow's own (``flow_targets``, rendered with ``scope``); never raises.
    ``env`` renders the config file's notifiers."""

    env: Mapping[str, str]

    def wanted(self, event: str, flow_id: str | None, flow_targets: Sequence[NotifySpec] = ()) -> list[NotifySpec]: ...
    def send(self, notice: Notice, *, flow_targets: Sequence[NotifySpec] = (), scope: Mapping[str, Any] | None = None,
             resources: Mapping[str, Any] | None = None, mask: Callable[[str], str] = ...) -> list[Delivery]: ...


@dataclass(slots=True, kw_only=True)
class RunRequest:
    flow_path: str
    run_id: str | None = None
    jobs: tuple[str, ...] = ()
    with_upstream: bool = False
    params: Mapping[str, str] = field(default_factory=dict)
    key: str | None = None
    profile: str | None = None
    profiles_file: str | None = None
    env_files: tuple[str, ...] = ()
    dry_run: bool = False
    reruns: tuple[str, ...] = ()
    accept_changes: bool = False
    event: str | None = None
    event_data: Any = None
    due_only: bool = False  # claim only if still WAITING and due (resume --due)
    meta: Mapping[str, str] = field(default_factory=dict)  # `run --meta K=V`: the caller's telemetry labels
    timeout: float | None = None  # run --timeout: bounds this execution (else flow.timeout_seconds)
    on_locked: OnLocked | None = None  # run: what to do when the flow lock or business key is held
    flow_id: str | None = None  # resume last --flow ID: the newest run of this flow


@dataclass(slots=True)
class RunOutcome:
    run_id: str
    flow_id: str
    status: str
    store: str  # the store's location
    jobs: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    failed_steps: list[tuple[str, str, str]] = field(default_factory=list)
    waits: list[dict[str, Any]] = field(default_factory=list)
    interrupt: str | None = None
    plan: list[dict[str, Any]] | None = None
    message: str | None = None
    all_skipped: bool = False
    warnings: list[str] = field(default_factory=list)


#: how long a run turned away by the flow lock looks for the holder's record, to name it
HOLDER_RECORD_WAIT = 5.0

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$")
#: the run id commands read as "the newest run" (``runs show last``), so no run may be named so
LAST = "last"


def check_run_id(run_id: str) -> None:
    """Run ids name directories (``<root>/<flow>/<job>/<run_id>``): letters, digits and
    ``_ . : @ + -``, at most 128 characters, no ``..``; and not ``last``."""
    if run_id == LAST:
        raise UsageError("--run-id last: 'last' means the newest run to runs show, runs logs, resume and cancel; "
                         "give another id", code="usage.run_id")
    if not _RUN_ID.match(run_id) or ".." in run_id:
        raise UsageError(
            f"invalid run id {run_id!r}: use letters, digits and _ . : @ + - (at most 128 characters, no '..')",
            code="usage.run_id",
        )


def new_run_id(clock: Callable[[], float]) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(clock())) + "-" + os.urandom(3).hex()


def _event(clock: Callable[[], float], rec: RunRecord, name: str, *, job_id: str | None = None,
           step_id: str | None = None, **data: Any) -> Event:
    return Event(name=name, run_id=rec.run_id, ts=clock(), flow_id=rec.flow_id, job_id=job_id, step_id=step_id,
                 data=freeze(data), **run_labels(rec))


_META_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
META_MAX_ENTRIES = 32
META_VALUE_MAX = 1000


def parse_meta_args(args: Sequence[str]) -> dict[str, str]:
    """``run --meta K=V`` (repeatable): the caller's telemetry labels of the run. Names like
    ``ticket`` or ``ci.job`` (letters, digits, ``_ . -``, at most 64), values text of at most
    1000 characters without control characters, each name once, at most 32."""
    out: dict[str, str] = {}
    for arg in args:
        name, sep, value = arg.partition("=")
        if not sep or not _META_NAME.match(name):
            raise UsageError(f"--meta {arg!r}: expected NAME=VALUE, NAME made of letters, digits, _ . - "
                             "(at most 64, starting with a letter or _)", code="usage.meta")
        if name in out:
            raise UsageError(f"--meta {name}: given twice", code="usage.meta")
        if len(value) > META_VALUE_MAX or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise UsageError(f"--meta {name}: the value must be at most {META_VALUE_MAX} characters without control "
                             "characters", code="usage.meta")
        out[name] = value
    if len(out) > META_MAX_ENTRIES:
        raise UsageError(f"--meta: at most {META_MAX_ENTRIES} entries", code="usage.meta")
    return out


class Runner:
    """Executes ``run`` and ``resume`` requests: locks, resolution, store records, executor.

    Seams (all optional but ``settings`` and ``cancel``): ``open_store(location, mask=...)``,
    ``load_plugins(settings, extra_paths)``, ``observers`` (called with every event), ``hooks``
    (test crash points), ``on_mask`` (told the run's mask function once secrets are known: the
    CLI masks its log handlers with it), ``pid`` and ``host`` recorded as the executor's,
    ``notifier`` (notices when a run ends, or cannot start: ``invalid``, ``lock_busy``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        cancel: CancelToken,
        open_store: StoreOpener = default_store_opener,
        load_plugins: PluginLoader = default_plugin_loader,
        observers: Sequence[Callable[[Event], None]] = (),
        hooks: Callable[[str, Mapping[str, Any]], None] | None = None,
        on_mask: Callable[[Callable[[str], str]], None] | None = None,
        pid: int | None = None,
        host: str | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.cancel = cancel
        self.open_store = open_store
        self.load_plugins = load_plugins
        self.catalog = StoreCatalog(settings.home, settings.state, opener=open_store)
        self.observers = list(observers)
        self.hooks = hooks or (lambda name, info: None)
        self.on_mask = on_mask or (lambda mask: None)
        self.pid = os.getpid() if pid is None else pid
        self.host = os.uname().nodename if host is None else host
        self.notifier = notifier
        #: what is known of the flow being run, for the notices sent when it cannot start
        self._known: tuple[FlowSpec | None, Prepared | None] = (None, None)

    def _event(self, rec: RunRecord, name: str, **kw: Any) -> Event:
        return _event(self.settings.clock, rec, name, **kw)

    def _plugins(self, extra_paths: Sequence[str] = ()) -> LoadedPlugins:
        loaded = self.load_plugins(self.settings, extra_paths)
        warn_plugin_errors(loaded)
        return loaded

    # -- new run -------------------------------------------------------------------------------
    def run(self, req: RunRequest) -> RunOutcome:
        """Start (or continue) a run; a flow that is invalid, or whose lock or business key is
        held, is notified (``invalid``, ``lock_busy``) before the error goes up."""
        self._known = (None, None)
        try:
            return self._run(req)
        except (SpecError, PluginError, ResolutionError) as exc:
            self._notify_not_started("invalid", req.flow_path, exc)
            raise
        except (LockBusyError, KeyInUseError) as exc:
            self._notify_not_started("lock_busy", req.flow_path, exc)
            raise

    def _run(self, req: RunRequest) -> RunOutcome:
        loaded_plugins = self._plugins()
        flow_file = load_checked(req.flow_path, loaded_plugins, cache=validation_cache(self.settings))
        flow = flow_file.flow
        self._known = (flow, None)
        location = state_location(self.settings, flow)
        opened: StateStore | None = None  # `--run-id`: the store looked in, kept for a new run
        executing = False  # from then on _execute closes the store
        try:
            if req.run_id:
                check_run_id(req.run_id)
                opened = self.open_store(location)
                existing = self._existing_run(opened, req, flow)
                if existing is not None:
                    opened.close()
                    opened = None
                    req.flow_path = existing.flow_file
                    if req.dry_run:
                        return self._dry_run_existing(existing, req, location, loaded_plugins)
                    return self.resume(req, run_id=req.run_id, location=location)
            if req.key is not None and flow.unique is None:
                raise UsageError("--key needs `flow.unique` in the flow file", code="usage.key_without_unique")
            business_key = None
            if req.key is not None and flow.unique is not None:
                name, value = split_key(req.key)
                if name is not None and name != flow.unique.key:
                    raise UsageError(f"--key {req.key!r} names the key '{name}', but flow '{flow.id}' keys its runs by "
                                     f"'{flow.unique.key}' (a key value cannot contain '{KEY_SEPARATOR}')", code="usage.key")
                business_key = f"{flow.unique.key}{KEY_SEPARATOR}{value}"
            from aetherflow.engine.plan import describe, make_plan, select_jobs

            selected = select_jobs(flow, req.jobs, req.with_upstream)
            now = self.settings.clock()
            run_id = req.run_id or new_run_id(lambda: now)
            prepared = prepare(self.settings, flow, loaded_plugins, params=req.params, env_files=req.env_files,
                               profile=req.profile, profiles_file=req.profiles_file,
                               run=template.run_scope(run_id, now, 1), source=flow_file, jobs=selected)
            self._known = (flow, prepared)
            self.on_mask(prepared.redactor.mask)
            if req.dry_run:
                plan = make_plan(flow, selected=selected, stored_jobs={}, stored_steps={}, reruns={})
                return RunOutcome(run_id=run_id, flow_id=flow.id, status="DRY_RUN", store=public_location(location),
                                  plan=describe(plan, flow))
            resources = prepared.resources()
            root = workspace_root(self.settings, flow, prepared.env)  # a missing value: exit 2, no store opened
            store = opened = opened or self.open_store(location, mask=prepared.redactor.mask)
            store.set_mask(prepared.redactor.mask)
            self.catalog.remember(store.location)
            rec = RunRecord(
                run_id=run_id,
                flow_id=flow.id,
                flow_file=str(Path(req.flow_path).absolute()),
                flow_sha256=flow.sha256,
                flow_text=flow.text,
                flow_version=flow.version,
                params=prepared.params,
                business_key=business_key,
                key_scope=(flow.id if flow.unique.scope == "flow" else "*") if business_key and flow.unique else None,
                status=RunStatus.RUNNING,
                pid=self.pid,
                host=self.host,
                created_at=now,
                started_at=now,
                updated_at=now,
                attempt=1,
                plugin_paths=tuple(str(Path(p).absolute()) for p in self.settings.plugin_paths),
                selected_jobs=tuple(req.jobs) if req.jobs else (),
                workspace_root=str(root),
                profile=req.profile,
                tags=flow.tags,
                flow_metadata=flow.metadata,
                meta=freeze(dict(req.meta)),
            )
            executing = True
            return self._execute(store, prepared, rec, req, resources=resources, selected=selected, new=True)
        finally:
            if opened is not None and not executing:
                opened.close()

    def _existing_run(self, store: StateStore, req: RunRequest, flow: FlowSpec) -> RunRecord | None:
        """``run --run-id ID``: the run ID of this flow, if recorded (its params are fixed)."""
        assert req.run_id is not None
        existing = store.get_run(req.run_id)
        if existing is None:
            return None
        if existing.flow_id != flow.id:
            raise UsageError(
                f"run {req.run_id} is a run of flow '{existing.flow_id}', not '{flow.id}' ({req.flow_path})",
                code="usage.run_id_other_flow",
            )
        if req.params:
            raise UsageError(
                f"run {req.run_id} exists: its params were fixed when it started; --param cannot change them",
                code="usage.params_of_existing_run",
            )
        if req.meta:
            raise UsageError(
                f"run {req.run_id} exists: its --meta was recorded when it started and cannot change",
                code="usage.meta_of_existing_run",
            )
        if req.key is not None and split_key(req.key)[1] != split_key(existing.business_key or "")[1]:
            held = f"business key '{existing.business_key}'" if existing.business_key else "no business key"
            raise UsageError(
                f"run {req.run_id} exists with {held}; --key cannot change it",
                code="usage.key_of_existing_run",
            )
        return existing

    # -- resume --------------------------------------------------------------------------------
    def resume(self, req: RunRequest, *, run_id: str, location: str | None = None) -> RunOutcome:
        if location is not None:
            store = self.open_store(location)
            found = store.get_run(run_id)
            if found is None:
                store.close()
                raise NotFoundError(f"unknown run id '{run_id}'")
            rec = found
        else:
            store, rec = self.catalog.find_run(run_id, flow_id=req.flow_id)
        run_id = rec.run_id
        try:
            early = self._nothing_to_resume(store, rec, req)
        except BaseException:
            store.close()
            raise
        if early is not None:
            store.close()
            return early
        run_lock = store.lock(run_lock_key(run_id))
        try:
            acquired = run_lock.acquire(0)
        except BaseException:
            store.close()
            raise
        if not acquired:
            store.close()
            raise RunActiveError(
                f"run {run_id} is being executed by pid {rec.pid} on {rec.host}",
                hint="wait for it to finish, or stop that process first",
            )
        flow_lock: Lock | None = None
        executing = False  # from then on _execute closes the store
        try:
            current = store.get_run(run_id)  # re-read under the lock
            assert current is not None
            rec = current
            early = self._nothing_to_resume(store, rec, req)
            if early is not None:
                return early
            if req.due_only and (rec.status != RunStatus.WAITING or rec.due_at is None
                                 or rec.due_at > self.settings.clock()):
                return RunOutcome(run_id=run_id, flow_id=rec.flow_id, status=rec.status, store=store.location,
                                  message="not due any more (claimed by another sweep)")
            (path, raw), raw_changed = self._flow_for_resume(rec, req)
            loaded_plugins = self._plugins(rec.plugin_paths)
            flow = load_checked(path, loaded_plugins, raw=raw, cache=validation_cache(self.settings)).flow
            prepared = prepare(self.settings, flow, loaded_plugins, stored_params=rec.params, env_files=req.env_files,
                               profile=req.profile, profiles_file=req.profiles_file,
                               run=template.run_scope(rec.run_id, rec.created_at, rec.attempt + 1))
            store.set_mask(prepared.redactor.mask)
            self.on_mask(prepared.redactor.mask)
            if req.event is not None:  # stored durably first, whatever happens next
                self._deliver_event(store, rec, req, Fanout([*self.observers, *loaded_plugins.observers], log),
                                    prepared.redactor)
            if flow.locks.scope == "flow":
                left = (f"event '{req.event}' is stored and run {run_id} is left WAITING and due: "
                        "`aetherflow resume --due` (or `aetherflow resume RUN_ID`) continues it"
                        if req.event is not None else
                        f"run {run_id} was left {rec.status}: resume it again later")
                flow_lock = self._flow_lock(store, flow, f"another run of the flow is still going; {left}",
                                            flow.locks.wait_seconds)
            resources = prepared.resources()
            if raw_changed:
                store.append_history(self._event(rec, "flow.changed_accepted", sha256=flow.sha256))
                store.update_run(run_id, None, flow_sha256=flow.sha256, flow_text=flow.text)
            from aetherflow.engine.plan import select_jobs

            selected = select_jobs(flow, req.jobs or rec.selected_jobs, req.with_upstream)
            if req.jobs:  # `run FLOW --run-id ID --job J`: run more jobs of an existing run
                store.update_run(run_id, None, selected_jobs=tuple(req.jobs))
            expect = rec.status
            resumed = self._event(rec, "run.resumed", attempt=rec.attempt + 1, previous_status=expect)
            if not store.claim_run(run_id, expect, self.pid, self.host, resumed):
                raise ConflictError(f"run {run_id} changed state while resuming; try again", code="run.claim_lost")
            claimed = store.get_run(run_id)
            assert claimed is not None
            executing = True
            return self._execute(store, prepared, claimed, req, resources=resources, selected=selected, new=False,
                                 run_lock=run_lock, flow_lock=flow_lock, start_event=resumed)
        finally:
            if flow_lock is not None:
                flow_lock.release()
            run_lock.release()
            if not executing:
                store.close()

    def _nothing_to_resume(self, store: StateStore, rec: RunRecord, req: RunRequest) -> RunOutcome | None:
        """A run that succeeded has nothing to resume (an outcome); a cancelled one, or an event
        for a run that does not wait, is an error."""
        if req.event is not None and rec.status != RunStatus.WAITING:
            raise _not_waiting(rec.run_id, shown_status(store, rec), req.event)
        if rec.status == RunStatus.SUCCESS and not req.reruns and not req.jobs:
            return RunOutcome(run_id=rec.run_id, flow_id=rec.flow_id, status=rec.status, store=store.location,
                              message=f"run {rec.run_id} already succeeded; nothing to resume")
        if rec.status == RunStatus.CANCELLED:
            raise UsageError(f"run {rec.run_id} was cancelled ({rec.cancel_reason or 'no reason given'}); "
                             "a cancelled run cannot be resumed", code="run.cancelled")
        return None

    def _dry_run_existing(self, rec: RunRecord, req: RunRequest, location: str, loaded_plugins: LoadedPlugins) -> RunOutcome:
        """``run --run-id EXISTING --dry-run``: the plan a resume would follow (what it restores,
        what it runs); takes no lock and changes nothing."""
        from aetherflow.engine.plan import describe, make_plan, parse_reruns, select_jobs

        store = self.open_store(location)
        try:
            (path, raw), _ = self._flow_for_resume(rec, req)
            flow = load_checked(path, loaded_plugins, raw=raw, cache=validation_cache(self.settings)).flow
            plan = make_plan(flow, selected=select_jobs(flow, rec.selected_jobs, False), stored_jobs=store.jobs(rec.run_id),
                             stored_steps=store.steps(rec.run_id), reruns=parse_reruns(flow, req.reruns))
        finally:
            store.close()
        return RunOutcome(run_id=rec.run_id, flow_id=flow.id, status="DRY_RUN", store=public_location(location), plan=describe(plan, flow))

    def _flow_for_resume(self, rec: RunRecord, req: RunRequest) -> tuple[tuple[str, bytes], bool]:
        """The flow file's path and bytes a resume uses, and whether they changed (accepted)."""
        path = rec.flow_file
        try:
            raw = Path(path).read_bytes()
        except OSError:
            log.warning("flow file %s is gone; resuming with the copy recorded at run start", path)
            return (path, rec.flow_text.encode("utf-8")), False
        from aetherflow.spec.semantic import sha256_text

        if sha256_text(raw) == rec.flow_sha256:
            return (path, raw), False
        if not req.accept_changes:
            import difflib  # only to say what changed

            diff = list(difflib.unified_diff(rec.flow_text.splitlines(), raw.decode("utf-8", "replace").splitlines(),
                                             "recorded", "current", lineterm="", n=0))
            changed = [d for d in diff if d[:1] in "+-" and not d.startswith(("+++", "---"))]
            summary = "; ".join(changed[:6]) + (f"; … {len(changed) - 6} more" if len(changed) > 6 else "")
            raise UsageError(
                f"flow file {path} changed since run {rec.run_id} started ({len(changed)} changed line(s): {summary})",
                code="resume.flow_changed",
                hint=f"review the change; `aetherflow resume {rec.run_id} --accept-changes` continues with the new file",
            )
        return (path, raw), True

    def _deliver_event(self, store: StateStore, rec: RunRecord, req: RunRequest, emit: Callable[[Event], None],
                       redactor: Redactor) -> None:
        if rec.status != RunStatus.WAITING:
            raise _not_waiting(rec.run_id, rec.status, req.event)
        waits = store.waits(rec.run_id)
        expected = sorted({e for w in waits for e in w.events})
        target = next((w for w in waits if req.event in w.events), None)
        if target is None:
            raise UsageError(
                f"run {rec.run_id} does not wait for event '{req.event}'; expected: {', '.join(expected) or 'no events (timers only)'}",
                code="event.unexpected",
            )
        data = req.event_data if req.event_data is not None else {}
        data = dict(data) if isinstance(data, dict) else {"data": data}
        masked, masked_keys = redactor.mask_outputs(data)
        if masked_keys:  # remembered, so a template reading them fails instead of seeing "***"
            masked[MASKED_KEYS_FIELD] = list(masked_keys)
        ev = self._event(rec, "event.received", job_id=target.job_id, step_id=target.step_id, event=req.event)
        now = self.settings.clock()
        store.add_event(
            ReceivedEvent(id=0, run_id=rec.run_id, job_id=target.job_id, step_id=target.step_id, name=str(req.event),
                          data=freeze(masked), received_at=now),
            ev,
        )
        store.update_run(rec.run_id, None, due_at=now)  # a stored event makes the run due for `resume --due`
        emit(ev)

    # -- execution -----------------------------------------------------------------------------
    def _execute(
        self, store: StateStore, prepared: Prepared, rec: RunRecord, req: RunRequest, *, resources: Mapping[str, Any],
        selected: Sequence[str], new: bool, run_lock: Lock | None = None, flow_lock: Lock | None = None,
        start_event: Event | None = None,
    ) -> RunOutcome:
        """Execute a recorded run (``new``: record it first). ``start_event`` is the stored
        ``run.resumed`` of a resume; observers get the very event the history has."""
        from aetherflow.connectors.base import LazyConnectors
        from aetherflow.engine.plan import make_plan, parse_reruns
        from aetherflow.engine.run import Executor, RunInputs, Services

        flow = prepared.flow
        redactor = prepared.redactor
        store.set_mask(redactor.mask)
        # a store that loses its connection (and with it the run's locks) stops the run's steps
        store.set_lost_handler(lambda why: self.cancel.set(STORE_LOST))
        held: list[Lock] = []
        outcome: RunOutcome | None = None
        fanout = Fanout([*self.observers, *prepared.plugins.observers], log)
        emit: Callable[[Event], None] = fanout if not redactor.active else (lambda ev: fanout(_masked_event(ev, redactor)))
        flow_lock_ev: Event | None = None  # recorded flow lock: its events go to observers too
        run_lock_recorded = False
        token = CancelToken(self.cancel)  # this execution's: a signal reaches it, its time limit stays its own
        timer: threading.Timer | None = None
        try:
            if run_lock is None:
                run_lock = store.lock(run_lock_key(rec.run_id))
                if not run_lock.acquire(0):
                    raise RunActiveError(f"run {rec.run_id} is being executed by another process")
                held.append(run_lock)
            if new:
                start_event = self._event(rec, "run.started", flow_file=rec.flow_file, params=thaw(prepared.params),
                                          business_key=rec.business_key, attempt=rec.attempt)
                held.extend(self._admit(store, flow, rec, start_event, req.on_locked or OnLocked()))
            elif flow.locks.scope == "flow":
                held.append(flow_lock or self._flow_lock(store, flow, "an earlier run is still going; this run was not started",
                                                         flow.locks.wait_seconds))
            store.record_lock(LockRecord(name=run_lock_key(rec.run_id), run_id=rec.run_id, pid=self.pid, host=self.host,
                                         since=self.settings.clock(), kind="run"), None)
            run_lock_recorded = True
            if flow.locks.scope == "flow":
                flow_lock_ev = self._event(rec, "lock.acquired", lock=flow_lock_key(flow.id))
                store.record_lock(LockRecord(name=flow_lock_key(flow.id), run_id=rec.run_id, pid=self.pid, host=self.host,
                                             since=self.settings.clock(), kind="flow"), flow_lock_ev)
            self.hooks("run.started", {"run_id": rec.run_id})
            limit = req.timeout or flow.timeout_seconds
            if limit:
                timer = threading.Timer(limit, token.set, args=(RUN_TIMEOUT,))
                timer.daemon = True
                timer.start()
            plan = make_plan(flow, selected=selected, stored_jobs=store.jobs(rec.run_id) if not new else {},
                             stored_steps=store.steps(rec.run_id) if not new else {}, reruns=parse_reruns(flow, req.reruns))
            connectors = LazyConnectors(resources, prepared.plugins.registry, log)
            inputs = RunInputs(
                flow=flow, run=rec, plan=plan, env=prepared.env, params=prepared.params,
                secrets=prepared.secret_values, connectors=connectors,
                workspace_root=Path(rec.workspace_root or workspace_root(self.settings, flow, prepared.env)),
                mask=redactor.mask, mask_outputs=redactor.mask_outputs,
            )
            svc = Services(
                store=store, registry=prepared.plugins.registry, emit=emit, log=log, cancel=token,
                clock=self.settings.clock, hooks=self.hooks, pid=self.pid, host=self.host,
                inline_wait_max=self.settings.inline_wait_max,
                should_cancel=lambda: store.cancel_reason(rec.run_id),
            )
            ex = Executor(inputs, svc)
            if start_event is not None:
                emit(start_event)
            # what the live view draws from the start: every job of the run, those restored whole
            emit(self._event(rec, "run.plan", jobs=[j for j in plan.order if j in plan.selected],
                             restored={j: str(r.status) for j, r in plan.restored_jobs.items()}))
            if flow_lock_ev is not None:
                emit(flow_lock_ev)
            result = ex.execute()
            if timer is not None:
                timer.cancel()
            warnings = connectors.close_all()
            ex.cleanup(result.status)
            outcome = self._record_end(store, flow, rec, result, emit, selected)
            outcome.warnings.extend(warnings)
            return outcome
        except StateError as exc:
            self.cancel.set(STORE_LOST)
            if outcome is None:
                with contextlib.suppress(StateError):  # a lost or superseded store refuses it
                    self._record_abort(store, rec, RunStatus.FAILED, str(exc))
            raise _store_failed(rec, exc) from exc
        except AetherflowError as exc:
            if outcome is None and not isinstance(exc, (ConflictError, Interrupted)):
                if self._record_abort(store, rec, RunStatus.FAILED, str(exc)):
                    outcome = RunOutcome(run_id=rec.run_id, flow_id=flow.id, status=RunStatus.FAILED, store=store.location,
                                         message=str(exc))
            raise
        except BaseException as exc:
            status = RunStatus.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
            self._record_abort(store, rec, status, _short(exc))
            raise
        finally:
            if timer is not None:
                timer.cancel()
            for lk in reversed(held):
                if lk.key.startswith("flow:") and flow_lock_ev is not None:
                    released = self._event(rec, "lock.released", lock=lk.key)
                    try:
                        store.remove_lock(lk.key, rec.run_id, released)
                        emit(released)
                    except StateError:
                        pass
                lk.release()
            if run_lock_recorded:
                try:
                    store.remove_lock(run_lock_key(rec.run_id), rec.run_id, None)
                except StateError:
                    pass
            try:
                if outcome is not None:  # after the locks are free: a slow notifier holds up no other run
                    self._notify_end(store, prepared, rec, outcome, resources)
            finally:
                store.close()

    def _record_abort(self, store: StateStore, rec: RunRecord, status: RunStatus, error: str) -> bool:
        """A run this process was executing ends early (an error, an interrupt): record it.
        Returns whether it did (the run was this process's and still RUNNING)."""
        try:
            cur = store.get_run(rec.run_id)
        except StateError:
            return False
        if cur is not None and cur.status == RunStatus.RUNNING and cur.pid == self.pid:
            store.update_run(rec.run_id, self._event(rec, "run.finished", status=status, error=error),
                             status=status, error=error, finished_at=self.settings.clock())
            return True
        return False

    # -- admission: the flow lock and the business key ------------------------------------------
    def _admit(self, store: StateStore, flow: FlowSpec, rec: RunRecord, started: Event, on_locked: OnLocked) -> list[Lock]:
        """Take the flow lock (``locks.scope: flow``) and record the new run (with its
        ``run.started``), whose business key must be free; returns the locks taken.
        ``on_locked: wait`` waits for both (up to its seconds, else for as long as it takes), the
        key before the lock, so that a run waiting for a key never holds the flow lock the key's
        holder needs to resume."""
        waiting = on_locked.mode == "wait"
        deadline = None if not waiting or on_locked.wait_seconds is None else time.monotonic() + on_locked.wait_seconds

        def key_free() -> bool:
            holders = store.runs_for_key(rec.business_key or "", active_only=True)
            return not any(r.key_scope == rec.key_scope or "*" in (r.key_scope, rec.key_scope) for r in holders)

        while True:
            if waiting and rec.business_key is not None:
                self._wait_until(key_free, deadline, f"business key '{rec.business_key}'")
            held: list[Lock] = []
            if flow.locks.scope == "flow":
                wait = _remaining(deadline) if waiting else flow.locks.wait_seconds
                held.append(self._flow_lock(store, flow, "an earlier run is still going; this run was not started", wait))
            try:
                store.create_run(rec, started)
                return held
            except KeyInUseError as exc:
                for lk in held:
                    lk.release()
                if not waiting or (deadline is not None and time.monotonic() >= deadline):
                    raise self._explain_key_holder(store, rec, exc) from exc

    def _acquire(self, lock: Lock, wait: float | None, what: str) -> bool:
        """``lock.acquire`` within ``wait`` seconds (``None``: no limit), a second at a time so
        that a signal stops the wait (``Interrupted``)."""
        if wait is not None and wait <= 0:
            return lock.acquire(0)
        deadline = None if wait is None else time.monotonic() + wait
        if lock.acquire(0):
            return True
        log.info("waiting for %s (%s)", what, "as long as it takes" if wait is None else f"at most {wait:g} s")
        while True:
            left = _remaining(deadline)
            if lock.acquire(1.0 if left is None else min(1.0, left)):
                return True
            if self.cancel.is_set():
                raise _stopped_waiting(self.cancel, what)
            if left is not None and left <= 1.0:
                return False

    def _wait_until(self, free: Callable[[], bool], deadline: float | None, what: str) -> None:
        """Poll ``free`` (every second at most) until true, the deadline (then return: the
        caller's own attempt fails naming the holder) or a signal (``Interrupted``)."""
        pause = 0.05
        if not free():
            log.info("waiting for %s to be free (%s)", what,
                     "as long as it takes" if deadline is None else f"at most {_remaining(deadline):g} s")
        while not free():
            left = _remaining(deadline)
            if left is not None and left <= 0:
                return
            if self.cancel.wait(pause if left is None else min(pause, left)):
                raise _stopped_waiting(self.cancel, what)
            pause = min(pause * 2, 1.0)

    # -- notifications -------------------------------------------------------------------------
    def _notify_end(self, store: StateStore, prepared: Prepared, rec: RunRecord, outcome: RunOutcome,
                    resources: Mapping[str, Any]) -> None:
        """The notice of a run that ended (or parked WAITING), with its result in the history."""
        event = event_for_status(str(outcome.status))
        if self.notifier is None or event is None or not self.notifier.wanted(event, rec.flow_id, prepared.flow.notify):
            return
        cur = store.get_run(rec.run_id) or rec
        notice = Notice(event=event, host=self.host, flow_id=rec.flow_id, flow_file=rec.flow_file, run_id=rec.run_id,
                        status=str(outcome.status), pid=self.pid, started_at=cur.started_at,
                        finished_at=cur.finished_at, failed_steps=tuple(outcome.failed_steps), error=cur.error,
                        waits=tuple(freeze(w) for w in outcome.waits), message=outcome.message,
                        resume_command=_resume_command(rec.run_id, store.location, str(outcome.status)),
                        store=store.location, at=self.settings.clock())
        scope = _notify_scope(prepared, True)
        deliveries = self.notifier.send(notice, flow_targets=prepared.flow.notify, scope=scope, resources=resources,
                                        mask=prepared.redactor.mask)
        _record_deliveries(store, rec, notice, deliveries, self.settings.clock)

    def _notify_not_started(self, event: str, flow_path: str, exc: AetherflowError) -> None:
        """The notice of a run that could not start (``invalid``, ``lock_busy``): nothing was
        recorded, so stderr (the dispatcher logs a failure) is its only report."""
        flow, prepared = self._known
        flow_id = flow.id if flow is not None else None
        targets = flow.notify if flow is not None else ()
        if self.notifier is None or not self.notifier.wanted(event, flow_id, targets):
            return
        from aetherflow import template

        mask = prepared.redactor.mask if prepared is not None else (lambda s: s)
        scope = (_notify_scope(prepared, False) if prepared is not None
                 else template.base_scope(env=self.settings.env, flow_id=flow_id or ""))
        holder = getattr(exc, "holder", None)
        notice = Notice(event=event, host=self.host, flow_id=flow_id, flow_file=str(Path(flow_path).absolute()),
                        status="NOT_STARTED", pid=self.pid, error=mask(exc.message), at=self.settings.clock(),
                        message=mask(exc.hint) if exc.hint else None,
                        resume_command=None if holder is None else f"aetherflow resume {holder}")
        self.notifier.send(notice, flow_targets=targets, scope=scope, resources=None, mask=mask)

    def _explain_key_holder(self, store: StateStore, rec: RunRecord, exc: KeyInUseError) -> KeyInUseError:
        """A key held by a run whose process is gone: say CRASHED and how to free the key."""
        holder = getattr(exc, "holder", None)
        if holder and store.lock_is_free(run_lock_key(holder)):
            held = store.get_run(holder)
            if held is not None and held.status == RunStatus.RUNNING:
                return KeyInUseError(
                    f"business key '{rec.business_key}' is held by run {holder}, which CRASHED (its process is gone)",
                    hint=f"continue it with `aetherflow resume {holder}` or free the key with `aetherflow cancel {holder}`",
                )
        return exc

    def _flow_lock(self, store: StateStore, flow: FlowSpec, hint: str, wait: float | None) -> Lock:
        """Acquire the flow lock (``flow.locks.scope: flow``) within ``wait`` seconds (``None``:
        as long as it takes), else LockBusyError (exit 3). A signal stops the wait."""
        flock = store.lock(flow_lock_key(flow.id))
        if not self._acquire(flock, wait, f"the flow lock of '{flow.id}'"):
            holder = store.lock_holder(flock.key)
            deadline = time.monotonic() + HOLDER_RECORD_WAIT
            while holder is None and time.monotonic() < deadline and not store.lock_is_free(flock.key):
                # runs started together: the holder records itself just after creating its run
                time.sleep(0.02)
                holder = store.lock_holder(flock.key)
            who = (f"run {holder.run_id} (pid {holder.pid} on {holder.host})" if holder else "another process")
            raise LockBusyError(f"flow '{flow.id}' is locked by {who} (locks.scope: flow)", hint=hint)
        return flock

    def _record_end(self, store: StateStore, flow: FlowSpec, rec: RunRecord, result: RunResult,
                    emit: Callable[[Event], None], selected: Sequence[str]) -> RunOutcome:
        now = self.settings.clock()
        status = result.status
        due = min((w.due_at for w in result.waits if w.due_at is not None), default=None)
        name = {RunStatus.WAITING: "run.waiting", RunStatus.INTERRUPTED: "run.interrupted", RunStatus.CANCELLED: "run.cancelled",
                RunStatus.TIMED_OUT: "run.timed_out"}.get(status, "run.finished")
        err = None
        if result.failed_steps:
            j, s, e = result.failed_steps[-1]
            err = f"{j}.{s}: {e}"
        ended = store.get_run(rec.run_id)
        runtime = thaw(ended.runtime_metadata) if ended is not None and ended.runtime_metadata else None
        extra: dict[str, Any] = {"runtime_metadata": runtime} if runtime else {}
        ev = self._event(rec, name, status=status, duration=round(now - (rec.started_at or now), 6), error=err, **extra)
        if status == RunStatus.CANCELLED:
            store.clear_waits(rec.run_id, None)
        if status == RunStatus.WAITING:
            store.update_run(rec.run_id, ev, status=status, updated_at=now, due_at=due, error=err)
        else:
            store.update_run(rec.run_id, ev, status=status, updated_at=now, due_at=due, error=err, finished_at=now)
        emit(ev)
        all_skipped = bool(selected) and all(result.jobs.get(j) == "SKIPPED" for j in selected)
        return RunOutcome(
            run_id=rec.run_id, flow_id=flow.id, status=status, store=store.location, jobs=dict(result.jobs),
            reasons=dict(result.reasons), failed_steps=list(result.failed_steps),
            waits=[{"job": w.job_id, "step": w.step_id, "kind": w.kind, "events": list(w.events), "due_at": w.due_at}
                   for w in result.waits],
            interrupt=result.interrupt, all_skipped=all_skipped,
        )


def _store_failed(rec: RunRecord, exc: StateError) -> StateError:
    """The error a run ends with when its store failed under it (its steps were stopped)."""
    if exc.code == "state.fenced":
        return StateError(f"run {rec.run_id} stopped: {exc.message}", code=exc.code,
                          hint=f"this process stopped its steps; see what the other executor records with "
                          f"`aetherflow runs show {rec.run_id}`")
    return StateError(
        f"run {rec.run_id} stopped: {exc.message}", code=exc.code,
        hint=f"this process stopped the run's steps and records nothing more; the run shows CRASHED (or as last "
        f"recorded): resume it with `aetherflow resume {rec.run_id}`, from any host that shares the store, once "
        "the store is reachable",
    )


def _notify_scope(prepared: Prepared, started: bool) -> dict[str, Any]:
    """What a flow's notifiers may read: env, params, secrets and, for a run that started, its
    ``run`` root."""
    from aetherflow import template

    return template.base_scope(env=prepared.env, flow_id=prepared.flow.id, params=prepared.params,
                               secrets=prepared.secret_values, run=prepared.run if started else None)


def _resume_command(run_id: str, location: str, status: str) -> str | None:
    """How to continue the run from any host that shares its store (``None``: nothing to do)."""
    if status in ("SUCCESS", "CANCELLED"):
        return None
    from aetherflow.state.backends import is_url

    where = f" --state {location}" if is_url(location) else ""
    return f"aetherflow resume {run_id}{where}"


def _record_deliveries(store: StateStore, rec: RunRecord, notice: Notice, deliveries: Sequence[Delivery],
                       clock: Callable[[], float]) -> None:
    """Each notifier's result in the run's history (``notify.sent`` / ``notify.failed``)."""
    for d in deliveries:
        data: dict[str, Any] = {"event": notice.event, "target": d.target, "tries": d.tries}
        if d.error:
            data["error"] = d.error
        try:
            store.append_history(_event(clock, rec, "notify.sent" if d.ok else "notify.failed", **data))
        except StateError as exc:
            log.warning("cannot record the notification in the history of run %s: %s", rec.run_id, exc)


def notify_crashed(catalog: StoreCatalog, notifier: Notifier, *, clock: Callable[[], float], host: str) -> list[str]:
    """Send ``crashed`` once for every run of the catalog's stores that shows CRASHED (recorded
    RUNNING, its executor's lock free): the run's process is gone and could not say so itself.
    The store records who sent it (``mark_notified``), so of every ``status`` and
    ``resume --due`` on every host that finds the run, one sends it. Returns the run ids."""
    from aetherflow.spec import load_flow

    sent: list[str] = []
    for store in catalog.stores():
        for rec in store.list_runs(status=RunStatus.RUNNING, limit=10_000):
            if shown_status(store, rec) != RunStatus.CRASHED:
                continue
            try:
                full = store.get_run(rec.run_id) or rec
                targets = load_flow(full.flow_file, raw=full.flow_text.encode("utf-8")).flow.notify
            except AetherflowError:
                targets = ()  # a recorded flow that no longer loads: the config's notifiers still hear of it
            if not notifier.wanted("crashed", rec.flow_id, targets):
                continue
            if not store.mark_notified(rec.run_id, "crashed", _event(clock, rec, "run.crash_noticed", host=host)):
                continue
            notice = Notice(event="crashed", host=host, flow_id=rec.flow_id, flow_file=rec.flow_file, run_id=rec.run_id,
                            status=RunStatus.CRASHED, pid=rec.pid, started_at=rec.started_at, error=rec.error,
                            message=f"run {rec.run_id} was executed by pid {rec.pid} on {rec.host}, which is gone",
                            resume_command=_resume_command(rec.run_id, store.location, RunStatus.CRASHED),
                            store=store.location, at=clock())
            # secrets are resolved afresh, never stored: a crashed run's notifiers see env only
            from aetherflow import template

            scope = template.base_scope(env=notifier.env, flow_id=rec.flow_id, params=rec.params,
                                        run=template.run_scope(rec.run_id, rec.created_at, rec.attempt))
            deliveries = notifier.send(notice, flow_targets=targets, scope=scope, resources=None)
            _record_deliveries(store, rec, notice, deliveries, clock)
            sent.append(rec.run_id)
    return sent


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _stopped_waiting(cancel: CancelToken, what: str) -> Interrupted:
    why = cancel.why()
    return Interrupted(f"stopped ({why}) while waiting for {what}; no run was started",
                       signal_exit=ExitCode.SIGINT if why == "SIGINT" else ExitCode.SIGTERM)


def _not_waiting(run_id: str, status: str, event: str | None) -> UsageError:
    return UsageError(f"run {run_id} is {status}, not WAITING; it does not expect event '{event}'", code="event.not_waiting")


def _masked_event(ev: Event, redactor: Redactor) -> Event:
    """The event with secrets masked in its data and labels (observers and the events log
    never see one)."""
    if not ev.data and not ev.meta:
        return ev
    data, changed = redactor.mask_value(thaw(ev.data))
    meta, meta_changed = redactor.mask_value(thaw(ev.meta))
    if not changed and not meta_changed:
        return ev
    return replace(ev, data=freeze(data), meta=freeze(meta))


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def cancel_run(catalog: StoreCatalog, run_id: str, reason: str | None, clock: Callable[[], float],
               flow_id: str | None = None) -> tuple[RunRecord, str, Event]:
    """Cancel a run (``last``: the newest, of ``flow_id`` when given): at once when no process
    executes it (its run lock is free), else ask the executing process to stop at its next
    step boundary. Returns the record, what happened (``cancelled`` or ``requested``) and the
    history event written."""
    store, rec = catalog.find_run(run_id, flow_id=flow_id)
    lock = store.lock(run_lock_key(rec.run_id))
    try:
        now = clock()
        if rec.status in (RunStatus.SUCCESS, RunStatus.CANCELLED):
            raise UsageError(f"run {rec.run_id} is {rec.status}; nothing to cancel", code="run.not_cancellable")
        reason = reason or "cancelled by operator"
        if not lock.acquire(0):  # a live process executes it: it stops at its next step boundary
            ev = _event(clock, rec, "run.cancel_requested", reason=reason)
            store.update_run(rec.run_id, ev, cancel_reason=reason)
            return rec, "requested", ev
        ev = _event(clock, rec, "run.cancelled", reason=reason)
        store.cancel_run(rec.run_id, reason, now, ev)
        return rec, "cancelled", ev
    finally:
        lock.release()
        store.close()


def parse_due(at: str | None, in_: str | None, now: float) -> float:
    """``resume --at TIME`` (ISO-8601; without a zone, local time) or ``--in DURATION`` (the
    duration grammar, from ``now``) as epoch seconds."""
    if at is not None and in_ is not None:
        raise UsageError("give --at TIME or --in DURATION, not both", code="usage.due_time")
    if in_ is not None:
        from aetherflow.durations import EXAMPLES, parse_duration

        seconds = parse_duration(in_)
        if seconds is None:
            raise UsageError(f"--in {in_!r}: not a duration; use {EXAMPLES}", code="usage.due_time")
        return now + seconds
    from aetherflow.durations import TIME_EXAMPLES, parse_time

    when = parse_time(at)
    if when is None:
        raise UsageError(f"--at {at!r}: not an ISO-8601 time, {TIME_EXAMPLES}", code="usage.due_time")
    return when


def schedule_resume(catalog: StoreCatalog, run_id: str, due_at: float, clock: Callable[[], float]) -> tuple[RunRecord, Event]:
    """``resume RUN --at/--in``: the WAITING run's waits (events, timers, retries alike) fall
    due at ``due_at``, so ``resume --due`` continues it then, as a fired timer (``wait``:
    ``elapsed``, ``wait_for_event``: ``timeout``; a parked retry runs). Any other status is an
    error (exit 2): only a waiting run has something to schedule. Returns the record and the
    ``run.scheduled`` history event."""
    store, rec = catalog.find_run(run_id)
    try:
        ev = _event(clock, rec, "run.scheduled", due_at=due_at, previous_due_at=rec.due_at)
        if rec.status != RunStatus.WAITING or not store.reschedule_run(rec.run_id, due_at, ev):
            cur = store.get_run(rec.run_id) or rec
            raise UsageError(
                f"run {rec.run_id} is {shown_status(store, cur)}, not WAITING: --at/--in schedule when a waiting run "
                "continues", code="resume.not_waiting",
                hint=None if cur.status in (RunStatus.SUCCESS, RunStatus.CANCELLED)
                else f"continue it now with `aetherflow resume {rec.run_id}`")
        return rec, ev
    finally:
        store.close()


def parse_event_data(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--data is not valid JSON: {exc.msg} at column {exc.colno}", code="usage.event_data") from exc
