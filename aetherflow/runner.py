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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aetherflow import template
from aetherflow.context import CancelToken
from aetherflow.errors import (
    AetherflowError,
    ConflictError,
    KeyInUseError,
    LockBusyError,
    NotFoundError,
    RunActiveError,
    StateError,
    UsageError,
)
from aetherflow.events import Event, Fanout
from aetherflow.model import (
    KEY_SEPARATOR,
    MASKED_KEYS_FIELD,
    FlowSpec,
    RunStatus,
    freeze,
    split_key,
    thaw,
)
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

__all__ = ["RunOutcome", "RunRequest", "Runner", "cancel_run", "check_run_id", "new_run_id", "parse_event_data",
           "parse_meta_args", "schedule_resume"]

log = logging.getLogger("aetherflow")

StoreOpener = Callable[..., StateStore]
PluginLoader = Callable[[Settings, Sequence[str]], "LoadedPlugins"]


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


def check_run_id(run_id: str) -> None:
    """Run ids name directories (``<root>/<flow>/<job>/<run_id>``): letters, digits and
    ``_ . : @ + -``, at most 128 characters, no ``..``."""
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
    CLI masks its log handlers with it), ``pid`` and ``host`` recorded as the executor's."""

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

    def _event(self, rec: RunRecord, name: str, **kw: Any) -> Event:
        return _event(self.settings.clock, rec, name, **kw)

    def _plugins(self, extra_paths: Sequence[str] = ()) -> LoadedPlugins:
        loaded = self.load_plugins(self.settings, extra_paths)
        warn_plugin_errors(loaded)
        return loaded

    # -- new run -------------------------------------------------------------------------------
    def run(self, req: RunRequest) -> RunOutcome:
        loaded_plugins = self._plugins()
        flow_file = load_checked(req.flow_path, loaded_plugins, cache=validation_cache(self.settings))
        flow = flow_file.flow
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
            self.on_mask(prepared.redactor.mask)
            if req.dry_run:
                plan = make_plan(flow, selected=selected, stored_jobs={}, stored_steps={}, reruns={})
                return RunOutcome(run_id=run_id, flow_id=flow.id, status="DRY_RUN", store=public_location(location),
                                  plan=describe(plan, flow))
            resources = prepared.resources(run_id, now)
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
                workspace_root=str(workspace_root(self.settings, flow, prepared.env)),
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
            store, rec = self.catalog.find_run(run_id)
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
                               run=template.run_scope(rec.run_id, rec.created_at, rec.attempt))
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
                flow_lock = self._flow_lock(store, flow, f"another run of the flow is still going; {left}")
            resources = prepared.resources(run_id, rec.created_at)
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
        try:
            if run_lock is None:
                run_lock = store.lock(run_lock_key(rec.run_id))
                if not run_lock.acquire(0):
                    raise RunActiveError(f"run {rec.run_id} is being executed by another process")
                held.append(run_lock)
            if flow.locks.scope == "flow":
                held.append(flow_lock or self._flow_lock(store, flow, "an earlier run is still going; this run was not started"))
            if new:
                start_event = self._event(rec, "run.started", flow_file=rec.flow_file, params=thaw(prepared.params),
                                          business_key=rec.business_key, attempt=rec.attempt)
                try:
                    store.create_run(rec, start_event)
                except KeyInUseError as exc:
                    raise self._explain_key_holder(store, rec, exc) from exc
            store.record_lock(LockRecord(name=run_lock_key(rec.run_id), run_id=rec.run_id, pid=self.pid, host=self.host,
                                         since=self.settings.clock(), kind="run"), None)
            run_lock_recorded = True
            if flow.locks.scope == "flow":
                flow_lock_ev = self._event(rec, "lock.acquired", lock=flow_lock_key(flow.id))
                store.record_lock(LockRecord(name=flow_lock_key(flow.id), run_id=rec.run_id, pid=self.pid, host=self.host,
                                             since=self.settings.clock(), kind="flow"), flow_lock_ev)
            self.hooks("run.started", {"run_id": rec.run_id})
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
                store=store, registry=prepared.plugins.registry, emit=emit, log=log, cancel=self.cancel,
                clock=self.settings.clock, hooks=self.hooks, pid=self.pid, host=self.host,
                inline_wait_max=self.settings.inline_wait_max,
                should_cancel=lambda: store.cancel_reason(rec.run_id),
            )
            ex = Executor(inputs, svc)
            if start_event is not None:
                emit(start_event)
            if flow_lock_ev is not None:
                emit(flow_lock_ev)
            result = ex.execute()
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
            if outcome is None and not isinstance(exc, ConflictError):
                self._record_abort(store, rec, RunStatus.FAILED, str(exc))
            raise
        except BaseException as exc:
            status = RunStatus.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
            self._record_abort(store, rec, status, _short(exc))
            raise
        finally:
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
            store.close()

    def _record_abort(self, store: StateStore, rec: RunRecord, status: RunStatus, error: str) -> None:
        """A run this process was executing ends early (an error, an interrupt): record it."""
        cur = store.get_run(rec.run_id)
        if cur is not None and cur.status == RunStatus.RUNNING and cur.pid == self.pid:
            store.update_run(rec.run_id, self._event(rec, "run.finished", status=status, error=error),
                             status=status, error=error, finished_at=self.settings.clock())

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

    def _flow_lock(self, store: StateStore, flow: FlowSpec, hint: str) -> Lock:
        """Acquire the flow lock (``flow.locks.scope: flow``) within wait_seconds, else LockBusyError (exit 3)."""
        flock = store.lock(flow_lock_key(flow.id))
        if not flock.acquire(flow.locks.wait_seconds):
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
        name = {RunStatus.WAITING: "run.waiting", RunStatus.INTERRUPTED: "run.interrupted", RunStatus.CANCELLED: "run.cancelled"}.get(
            status, "run.finished")
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


def cancel_run(catalog: StoreCatalog, run_id: str, reason: str | None, clock: Callable[[], float]) -> tuple[RunRecord, str, Event]:
    """Cancel a run: at once when no process executes it (its run lock is free), else ask the
    executing process to stop at its next step boundary. Returns the record, what happened
    (``cancelled`` or ``requested``) and the history event written."""
    store, rec = catalog.find_run(run_id)
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
    assert at is not None
    from datetime import datetime

    try:
        when = datetime.fromisoformat(at.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"--at {at!r}: not an ISO-8601 time, e.g. 2026-11-23T06:00:00+01:00 or 2026-11-23 06:00",
                         code="usage.due_time") from exc
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return when.timestamp()


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
