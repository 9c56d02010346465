"""load → plugins → preflight → resolve → plan → run: the one pipeline every command shares.

The CLI hands in the process environment, argv-derived options, streams, a clock and a cancel
token; nothing here reads ``os.environ`` or prints. Functions return records the renderer shows.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aetherflow.context import CancelToken
from aetherflow.errors import (
    AetherflowError,
    ConflictError,
    Issue,
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
from aetherflow.model import MASKED_KEYS_FIELD, FlowSpec, RunStatus, freeze, thaw
from aetherflow.records import field, record
from aetherflow.state.store import LockRecord, ReceivedEvent, RunRecord

log = logging.getLogger("aetherflow")


# ---------------------------------------------------------------------------------------------
# settings derived from the environment (the CLI passes env in)


@record(frozen=True, kw_only=True)
class Settings:
    env: Mapping[str, str]
    state: str | None = None  # --state
    plugin_paths: tuple[str, ...] = ()
    events_log: str | None = None
    inline_wait_max: float = 60.0
    clock: Callable[[], float] = time.time

    @property
    def home(self) -> Path:
        h = self.env.get("AETHERFLOW_HOME")
        if h:
            return Path(h).expanduser()
        xdg = self.env.get("XDG_STATE_HOME")
        base = Path(xdg) if xdg else Path(self.env.get("HOME") or Path.home()) / ".local" / "state"
        return base / "aetherflow"

    def all_plugin_paths(self) -> tuple[str, ...]:
        env_paths = tuple(p for p in self.env.get("AETHERFLOW_PLUGIN_PATHS", "").split(":") if p)
        return (*self.plugin_paths, *env_paths)


def settings_from_env(env: Mapping[str, str], **kw: Any) -> Settings:
    raw = env.get("AETHERFLOW_INLINE_WAIT_MAX")
    inline = 60.0
    if raw:
        try:
            inline = float(raw)
        except ValueError as exc:
            raise UsageError(f"AETHERFLOW_INLINE_WAIT_MAX={raw!r} is not a number of seconds") from exc
    return Settings(env=env, inline_wait_max=inline, **kw)


# ---------------------------------------------------------------------------------------------
# plugins and flows


def load_registry(settings: Settings, extra_paths: Sequence[str] = ()) -> Any:
    from aetherflow import plugins

    # the entry point scan is cached in $AETHERFLOW_HOME/cache/entry-points.json (docs/plugins.md)
    return plugins.load(plugin_paths=(*settings.all_plugin_paths(), *extra_paths),
                        cache_dir=None if _switched_off(settings, "AETHERFLOW_PLUGIN_CACHE") else settings.home / "cache")


def _switched_off(settings: Settings, variable: str) -> bool:
    """A cache's switch (``AETHERFLOW_VALIDATION_CACHE``, ``AETHERFLOW_PLUGIN_CACHE``) says off."""
    return settings.env.get(variable, "").strip().lower() in ("0", "false", "no", "off")


def _warn_plugin_errors(loaded_plugins: Any) -> None:
    """A plugin that failed to import is a warning (stderr even without -v), not a failure."""
    for err in loaded_plugins.errors:
        log.warning("plugin failed to import: %s", err)


def validation_cache(settings: Settings) -> Any:
    """The cache of known schema-valid flows (``$AETHERFLOW_HOME/cache/valid``) for ``run`` and
    ``resume``; ``None`` when ``AETHERFLOW_VALIDATION_CACHE=0``."""
    if _switched_off(settings, "AETHERFLOW_VALIDATION_CACHE"):
        return None
    from aetherflow.spec.cache import ValidationCache

    return ValidationCache(settings.home / "cache" / "valid")


def check_flow(
    path: str, loaded_plugins: Any, *, raw: bytes | None = None, cache: Any = None
) -> tuple[Any, list[Issue]]:
    """Load and fully validate a flow. Returns (LoadedFlow, issues) with semantic and registry
    issues merged; raises SpecError for YAML and schema problems (nothing to check further).

    With a ``cache`` (:func:`validation_cache`), a flow whose exact bytes, with the same flow
    schema and step input schemas, were fully valid before is not parsed again (the cache holds
    the parse's result) and skips the JSON Schema checks (flow and step inputs); everything else
    is checked as always. A flow with no issue is remembered, with its parse."""
    from aetherflow.engine.preflight import Preflight, inputs_fingerprint
    from aetherflow.spec import load_flow, read_flow_bytes, sort_issues

    key: str | None = None
    parsed = None
    if cache is not None:
        fingerprint = inputs_fingerprint(loaded_plugins.registry)
        if fingerprint is not None:
            if raw is None:
                raw = read_flow_bytes(path)  # the bytes the key names are the bytes checked
            key = cache.key(raw, fingerprint)
            parsed = cache.lookup(key) if key is not None else None
    known = parsed is not None
    semantic: list[Issue] = []
    try:
        loaded = load_flow(path, raw=raw, parsed=parsed)
    except SpecError as exc:
        partial = getattr(exc, "partial", None)
        if partial is None:
            raise
        loaded, semantic = partial, list(exc.issues)
    pf = Preflight(loaded_plugins.registry, loaded.positions, path, loaded_plugins.errors, check_inputs=not known)
    issues = sort_issues(semantic + pf.check(loaded.flow, loaded.data))
    if key is not None and not known and not issues:
        cache.remember(key, loaded.data, loaded.positions)
    return loaded, issues


def refuse_missing_env(loaded: Any, path: str, env: Mapping[str, str], jobs: Sequence[str], given: Mapping[str, Any]) -> None:
    """Exit 2 before a run starts when a template of its jobs, resources, flow settings or
    defaults of params not ``given`` reads an env variable that is not set and has no default
    (``template.missing_env``), every such place at once."""
    from aetherflow.spec.references import missing_env_issues

    issues = missing_env_issues(loaded.data, loaded.positions, path, env, jobs=jobs, skip_params=given)
    if issues:
        raise SpecError(issues, file=path)


def load_checked(path: str, loaded_plugins: Any, *, raw: bytes | None = None, cache: Any = None) -> Any:
    loaded, issues = check_flow(path, loaded_plugins, raw=raw, cache=cache)
    if issues:
        raise SpecError(issues, file=path)
    return loaded


# ---------------------------------------------------------------------------------------------
# stores


def state_path_for(settings: Settings, flow: FlowSpec | None) -> Path:
    if settings.state:
        return Path(settings.state).expanduser().absolute()
    if settings.env.get("AETHERFLOW_STATE"):
        return Path(settings.env["AETHERFLOW_STATE"]).expanduser().absolute()
    if flow is not None and flow.state.path:
        from aetherflow import template

        rendered = str(template.render(flow.state.path, {"env": settings.env, "flow_id": flow.id, "params": {}}))
        p = Path(rendered).expanduser()
        return p if p.is_absolute() else (Path(flow.base_dir) / p)
    return settings.home / "state.db"


def open_store(path: Path, mask: Callable[[str], str] | None = None) -> Any:
    from aetherflow.state.sqlite import SqliteStore

    return SqliteStore(path, mask=mask)


def remember_store(settings: Settings, path: Path) -> None:
    """Record a store path in $AETHERFLOW_HOME/stores so id-only commands can find runs."""
    reg = settings.home / "stores"
    p = str(path.resolve())
    try:
        known = reg.read_text(encoding="utf-8").splitlines() if reg.exists() else []
        if p in known:
            return
        reg.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(reg, "a", encoding="utf-8") as fh:
            fh.write(p + "\n")
        os.chmod(reg, 0o600)
    except OSError as exc:
        log.warning("cannot record store path in %s: %s", reg, exc)


def known_stores(settings: Settings, *, fallback: bool = False) -> list[Path]:
    """Existing store files to read. ``--state`` / ``AETHERFLOW_STATE`` name one; with
    ``fallback`` (finding a run by id) every store this machine has used follows it. A store that
    does not exist is never created by a read."""
    out: list[Path] = []
    explicit = settings.state or settings.env.get("AETHERFLOW_STATE")
    if explicit:
        p = Path(explicit).expanduser().absolute()
        if p.exists():
            out.append(p)
        if not fallback:
            return out
    default = settings.home / "state.db"
    if default.exists() and default not in out:
        out.append(default)
    reg = settings.home / "stores"
    if reg.exists():
        for line in reg.read_text(encoding="utf-8").splitlines():
            p = Path(line.strip())
            if line.strip() and p.exists() and p not in out:
                out.append(p)
    return out


def find_run(settings: Settings, run_id: str) -> tuple[Any, RunRecord]:
    """Find a run by id (or unique prefix) in the known stores. Unknown → NotFoundError (2).
    Returns the open store holding it (the caller closes it) and the record."""
    stores = known_stores(settings, fallback=True)
    matches: list[tuple[Path, str]] = []
    for p in stores:
        store = open_store(p)
        rec = store.get_run(run_id)
        if rec is not None:
            return store, rec
        try:
            matches.extend((p, r.run_id) for r in store.find_runs(run_id))
        finally:
            store.close()
    if len(matches) == 1:
        store = open_store(matches[0][0])
        found = store.get_run(matches[0][1])
        if found is not None:
            return store, found
        store.close()
    if len(matches) > 1:
        ids = ", ".join(r for _, r in matches)
        raise UsageError(f"run id prefix '{run_id}' is ambiguous: {ids}", code="run.ambiguous")
    where = ", ".join(str(p) for p in stores) or "no store recorded yet"
    raise NotFoundError(f"unknown run id '{run_id}' (looked in: {where})", hint="see `aetherflow runs list`")


def display_status(store: Any, rec: RunRecord) -> str:
    """RUNNING runs whose executor is gone are shown CRASHED."""
    if rec.status != RunStatus.RUNNING:
        return rec.status
    from aetherflow.locks import is_free, run_lock_key

    return RunStatus.CRASHED if is_free(lock_dir_of(store), run_lock_key(rec.run_id)) else RunStatus.RUNNING


def lock_dir_of(store: Any) -> Path:
    return Path(store.path).parent / "locks"


# ---------------------------------------------------------------------------------------------
# runs


@record(kw_only=True)
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


@record
class RunOutcome:
    run_id: str
    flow_id: str
    status: str
    store_path: str
    jobs: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    failed_steps: list[tuple[str, str, str]] = field(default_factory=list)
    waits: list[dict[str, Any]] = field(default_factory=list)
    interrupt: str | None = None
    plan: list[dict[str, Any]] | None = None
    message: str | None = None
    all_skipped: bool = False
    warnings: list[str] = field(default_factory=list)


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
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(clock())) + "-" + os.urandom(3).hex()  # not `secrets`: 5 ms of imports


class Runner:
    """Executes ``run`` and ``resume`` requests: locks, resolution, store records, executor."""

    def __init__(
        self,
        settings: Settings,
        *,
        cancel: CancelToken,
        observers: Sequence[Callable[[Event], None]] = (),
        hooks: Callable[[str, Mapping[str, Any]], None] | None = None,
        on_mask: Callable[[Callable[[str], str]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.cancel = cancel
        self.observers = list(observers)
        self.hooks = hooks or (lambda name, info: None)
        #: told the run's mask function once secrets are known (the CLI masks its log handlers)
        self.on_mask = on_mask or (lambda mask: None)
        self.pid = os.getpid()
        self.host = os.uname().nodename  # what socket.gethostname() returns, without importing socket

    # -- new run -------------------------------------------------------------------------------
    def run(self, req: RunRequest) -> RunOutcome:
        loaded_plugins = load_registry(self.settings)
        _warn_plugin_errors(loaded_plugins)
        loaded = load_checked(req.flow_path, loaded_plugins, cache=validation_cache(self.settings))
        flow: FlowSpec = loaded.flow
        state_path = state_path_for(self.settings, flow)
        if req.run_id:
            check_run_id(req.run_id)
            store_probe = open_store(state_path)
            try:
                existing = store_probe.get_run(req.run_id)
            finally:
                store_probe.close()
            if existing is not None:
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
                req.flow_path = existing.flow_file
                if req.dry_run:
                    return self._dry_run_existing(existing, req, state_path, loaded_plugins)
                return self.resume(req, run_id=req.run_id, store_path=state_path)
        from aetherflow import resolve, template

        redactor = resolve.Redactor()
        env = self._env(flow, req)
        from aetherflow.engine.plan import make_plan, select_jobs

        selected = select_jobs(flow, req.jobs, req.with_upstream)
        refuse_missing_env(loaded, req.flow_path, env, selected, given=req.params)
        now = self.settings.clock()
        run_id = req.run_id or new_run_id(lambda: now)
        params = resolve.resolve_params(flow, req.params, env, run=template.run_scope(run_id, now, 1))
        if req.key is not None and flow.unique is None:
            raise UsageError("--key needs `flow.unique` in the flow file", code="usage.key_without_unique")
        business_key = None
        if req.key is not None and flow.unique is not None:
            value = req.key.split("::", 1)[1] if req.key.startswith(flow.unique.key + "::") else req.key
            business_key = f"{flow.unique.key}::{value}"
        secrets = resolve.resolve_secrets(flow, env, redactor, self._command_runner(env))
        self.on_mask(redactor.mask)
        if req.dry_run:
            plan = make_plan(flow, selected=selected, stored_jobs={}, stored_steps={}, reruns={})
            from aetherflow.engine.plan import describe

            return RunOutcome(run_id=run_id, flow_id=flow.id, status="DRY_RUN", store_path=str(state_path), plan=describe(plan, flow))
        store = open_store(state_path, redactor.mask)
        remember_store(self.settings, state_path)
        rec = RunRecord(
            run_id=run_id,
            flow_id=flow.id,
            flow_file=str(Path(req.flow_path).absolute()),
            flow_sha256=flow.sha256,
            flow_text=flow.text,
            flow_version=flow.version,
            params=params,
            business_key=business_key,
            key_scope=(flow.id if flow.unique.scope == "flow" else "*") if business_key and flow.unique else None,
            status=RunStatus.RUNNING,
            pid=self.pid,
            host=self.host,
            created_at=now,
            started_at=now,
            updated_at=now,
            attempt=1,
            plugin_paths=tuple(str(Path(p).absolute()) for p in self.settings.all_plugin_paths()),
            selected_jobs=tuple(req.jobs) if req.jobs else (),
            workspace_root=str(self._workspace_root(flow, env)),
            profile=req.profile,
        )
        return self._execute(store, flow, rec, req, env=env, params=params, secrets=secrets, redactor=redactor,
                             loaded_plugins=loaded_plugins, selected=selected, new=True)

    # -- resume --------------------------------------------------------------------------------
    def resume(self, req: RunRequest, *, run_id: str, store_path: Path | None = None) -> RunOutcome:
        if store_path is not None:
            store = open_store(store_path)
            rec = store.get_run(run_id)
            if rec is None:
                raise NotFoundError(f"unknown run id '{run_id}'")
        else:
            store, rec = find_run(self.settings, run_id)
        run_id = rec.run_id
        status = rec.status
        if req.event is not None and status != RunStatus.WAITING:
            shown = display_status(store, rec)
            store.close()
            raise _not_waiting(run_id, shown, req.event)
        if status == RunStatus.SUCCESS and not req.reruns and not req.jobs:
            store.close()
            return RunOutcome(run_id=run_id, flow_id=rec.flow_id, status=status, store_path=store.path,
                              message=f"run {run_id} already succeeded; nothing to resume")
        if status == RunStatus.CANCELLED:
            store.close()
            raise UsageError(f"run {run_id} was cancelled ({rec.cancel_reason or 'no reason given'}); a cancelled run cannot be resumed",
                             code="run.cancelled")
        from aetherflow.locks import OsLock, run_lock_key

        lock_dir = lock_dir_of(store)
        run_lock = OsLock(lock_dir, run_lock_key(run_id))
        if not run_lock.acquire(0):
            store.close()
            raise RunActiveError(
                f"run {run_id} is being executed by pid {rec.pid} on {rec.host}",
                hint="wait for it to finish, or stop that process first",
            )
        flow_lock: Any = None
        try:
            rec = store.get_run(run_id)  # re-read under the lock
            assert rec is not None
            if req.event is not None and rec.status != RunStatus.WAITING:
                raise _not_waiting(run_id, rec.status, req.event)
            if rec.status in (RunStatus.SUCCESS,) and not req.reruns and not req.jobs:
                return RunOutcome(run_id=run_id, flow_id=rec.flow_id, status=rec.status, store_path=store.path,
                                  message=f"run {run_id} already succeeded; nothing to resume")
            if rec.status == RunStatus.CANCELLED:
                raise UsageError(f"run {run_id} was cancelled; a cancelled run cannot be resumed", code="run.cancelled")
            if req.due_only:
                if rec.status != RunStatus.WAITING or rec.due_at is None or rec.due_at > self.settings.clock():
                    return RunOutcome(run_id=run_id, flow_id=rec.flow_id, status=rec.status, store_path=store.path,
                                      message="not due any more (claimed by another sweep)")
            flow, raw_changed = self._flow_for_resume(rec, req, store)
            loaded_plugins = load_registry(self.settings, rec.plugin_paths)
            _warn_plugin_errors(loaded_plugins)
            flow = load_checked(flow[0], loaded_plugins, raw=flow[1], cache=validation_cache(self.settings)).flow
            from aetherflow import resolve, template

            redactor = resolve.Redactor()
            store.set_mask(redactor.mask)
            env = self._env(flow, req)
            params = resolve.resolve_params(flow, {}, env, stored=rec.params,
                                            run=template.run_scope(rec.run_id, rec.created_at, rec.attempt))
            secrets = resolve.resolve_secrets(flow, env, redactor, self._command_runner(env))
            self.on_mask(redactor.mask)
            if req.event is not None:  # stored durably first, whatever happens next
                self._deliver_event(store, rec, req, Fanout([*self.observers, *loaded_plugins.observers], log), redactor)
            if flow.locks.scope == "flow":
                left = (f"event '{req.event}' is stored and run {run_id} is left WAITING and due: "
                        "`aetherflow resume --due` (or `aetherflow resume RUN_ID`) continues it"
                        if req.event is not None else
                        f"run {run_id} was left {rec.status}: resume it again later")
                flow_lock = self._flow_lock(store, flow, f"another run of the flow is still going; {left}")
            if raw_changed:
                store.append_history(self._event(rec, "flow.changed_accepted", sha256=flow.sha256))
                store.update_run(run_id, None, flow_sha256=flow.sha256, flow_text=flow.text)
            from aetherflow.engine.plan import select_jobs

            selected = select_jobs(flow, req.jobs or rec.selected_jobs, req.with_upstream)
            if req.jobs:  # `run FLOW --run-id ID --job J`: run more jobs of an existing run
                store.update_run(run_id, None, selected_jobs=tuple(req.jobs))
            expect = rec.status
            if not store.claim_run(run_id, expect, self.pid, self.host,
                                   self._event(rec, "run.resumed", attempt=rec.attempt + 1, previous_status=expect)):
                raise ConflictError(f"run {run_id} changed state while resuming; try again", code="run.claim_lost")
            rec = store.get_run(run_id)
            assert rec is not None
            return self._execute(store, flow, rec, req, env=env, params=params, secrets=secrets, redactor=redactor,
                                 loaded_plugins=loaded_plugins, selected=selected, new=False, run_lock=run_lock,
                                 flow_lock=flow_lock)
        finally:
            if flow_lock is not None:
                flow_lock.release()
            run_lock.release()

    def _dry_run_existing(self, rec: RunRecord, req: RunRequest, state_path: Path, loaded_plugins: Any) -> RunOutcome:
        """``run --run-id EXISTING --dry-run``: the plan a resume would follow (what it restores,
        what it runs); takes no lock and changes nothing."""
        from aetherflow.engine.plan import describe, make_plan, parse_reruns, select_jobs

        store = open_store(state_path)
        try:
            (path, raw), _ = self._flow_for_resume(rec, req, store)
            flow = load_checked(path, loaded_plugins, raw=raw, cache=validation_cache(self.settings)).flow
            plan = make_plan(flow, selected=select_jobs(flow, rec.selected_jobs, False), stored_jobs=store.jobs(rec.run_id),
                             stored_steps=store.steps(rec.run_id), reruns=parse_reruns(flow, req.reruns))
        finally:
            store.close()
        return RunOutcome(run_id=rec.run_id, flow_id=flow.id, status="DRY_RUN", store_path=str(state_path),
                          plan=describe(plan, flow))

    def _flow_for_resume(self, rec: RunRecord, req: RunRequest, store: Any) -> tuple[tuple[str, bytes], bool]:
        path = rec.flow_file
        try:
            raw = Path(path).read_bytes()
        except OSError:
            raw = None
        from aetherflow.spec.semantic import sha256_text

        if raw is None:
            log.warning("flow file %s is gone; resuming with the copy recorded at run start", path)
            return (path, rec.flow_text.encode("utf-8")), False
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
                hint="review the change; resume with --accept-changes to continue with the new file",
            )
        return (path, raw), True

    def _deliver_event(
        self, store: Any, rec: RunRecord, req: RunRequest, emit: Callable[[Event], None], redactor: Any
    ) -> None:
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

    # -- shared --------------------------------------------------------------------------------
    def _event(self, rec: RunRecord, name: str, *, job_id: str | None = None, step_id: str | None = None, **data: Any) -> Event:
        return Event(name=name, run_id=rec.run_id, ts=self.settings.clock(), flow_id=rec.flow_id, job_id=job_id,
                     step_id=step_id, data=freeze(data))

    def _env(self, flow: FlowSpec, req: RunRequest) -> Mapping[str, str]:
        from aetherflow import resolve

        base = Path(flow.base_dir)
        flow_files = [p if Path(p).is_absolute() else base / p for p in flow.env_files]
        return resolve.build_env(self.settings.env, [Path(p) for p in flow_files], [Path(p) for p in req.env_files])

    def _workspace_root(self, flow: FlowSpec, env: Mapping[str, str]) -> Path:
        if flow.workspace.root:
            from aetherflow import template

            root = Path(str(template.render(flow.workspace.root, {"env": env, "flow_id": flow.id, "params": {}}))).expanduser()
            return root if root.is_absolute() else Path(flow.base_dir) / root
        return self.settings.home / "work"

    def _command_runner(self, env: Mapping[str, str]) -> Callable[[Sequence[str]], str]:
        def run(argv: Sequence[str]) -> str:
            from aetherflow.process import run_process

            try:
                res = run_process(list(argv), cwd=None, env=env, timeout=60.0, stdout_mode="capture", stderr_mode="capture")
            except OSError as exc:
                raise ResolutionError(f"secret command {argv[0]!r} could not start: {exc.strerror}", code="secret.command") from exc
            if res.returncode != 0:
                raise ResolutionError(f"secret command {argv[0]!r} exited {res.returncode}", code="secret.command")
            return str(res.stdout)

        return run

    def _execute(
        self, store: Any, flow: FlowSpec, rec: RunRecord, req: RunRequest, *, env: Mapping[str, str], params: Mapping[str, Any],
        secrets: Mapping[str, Any], redactor: Any, loaded_plugins: Any, selected: Sequence[str], new: bool, run_lock: Any = None,
        flow_lock: Any = None,
    ) -> RunOutcome:
        from aetherflow import resolve, template
        from aetherflow.connectors.base import LazyConnectors
        from aetherflow.engine.plan import make_plan, parse_reruns
        from aetherflow.engine.run import Executor, RunInputs, Services
        from aetherflow.locks import OsLock, flow_lock_key, run_lock_key

        lock_dir = lock_dir_of(store)
        store.set_mask(redactor.mask)
        held: list[Any] = []
        outcome: RunOutcome | None = None
        fanout = Fanout([*self.observers, *loaded_plugins.observers], log)
        emit = fanout if not redactor.active else (lambda ev: fanout(_masked_event(ev, redactor)))
        flow_lock_ev: Event | None = None  # recorded flow lock: its events go to observers too
        run_lock_recorded = False
        try:
            if run_lock is None:
                run_lock = OsLock(lock_dir, run_lock_key(rec.run_id))
                if not run_lock.acquire(0):
                    raise RunActiveError(f"run {rec.run_id} is being executed by another process")
                held.append(run_lock)
            if flow.locks.scope == "flow":
                held.append(flow_lock or self._flow_lock(store, flow, "an earlier run is still going; this run was not started"))
            if new:
                try:
                    store.create_run(rec, self._event(rec, "run.started", flow_file=rec.flow_file, params=thaw(params),
                                                      business_key=rec.business_key))
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
            reruns = parse_reruns(flow, req.reruns)
            plan = make_plan(flow, selected=selected, stored_jobs=store.jobs(rec.run_id) if not new else {},
                             stored_steps=store.steps(rec.run_id) if not new else {}, reruns=reruns)
            resources = resolve.resolve_resources(
                flow, self._profiles(flow, req),
                {"env": env, "params": params, "secrets": {k: v.reveal() for k, v in secrets.items()},
                 "run_id": rec.run_id, "flow_id": flow.id, "run": template.run_scope(rec.run_id, rec.created_at, rec.attempt)},
                redactor, profile_override=req.profile, decoders=loaded_plugins.registry.decoders,
            )
            connectors = LazyConnectors(resources, loaded_plugins.registry, log)
            inputs = RunInputs(
                flow=flow, run=rec, plan=plan, env=env, params=params,
                secrets={k: v.reveal() for k, v in secrets.items()}, connectors=connectors,
                workspace_root=Path(rec.workspace_root or self._workspace_root(flow, env)),
                mask=redactor.mask, mask_outputs=redactor.mask_outputs,
            )
            svc = Services(
                store=store, registry=loaded_plugins.registry, emit=emit, log=log, lock_dir=lock_dir, cancel=self.cancel,
                clock=self.settings.clock, hooks=self.hooks, pid=self.pid, host=self.host,
                inline_wait_max=self.settings.inline_wait_max,
                should_cancel=lambda: _cancel_requested(store, rec.run_id),
            )
            ex = Executor(inputs, svc)
            self._emit_start(emit, rec, new)
            if flow_lock_ev is not None:
                emit(flow_lock_ev)
            result = ex.execute()
            warnings = connectors.close_all()
            ex.cleanup(result.status)
            outcome = self._record_end(store, flow, rec, result, emit, selected)
            outcome.warnings.extend(warnings)
            return outcome
        except AetherflowError as exc:
            if outcome is None and store.get_run(rec.run_id) is not None and not isinstance(exc, ConflictError):
                cur = store.get_run(rec.run_id)
                if cur is not None and cur.status == RunStatus.RUNNING and cur.pid == self.pid:
                    store.update_run(rec.run_id, self._event(rec, "run.finished", status="FAILED", error=str(exc)),
                                     status=RunStatus.FAILED, error=str(exc), finished_at=self.settings.clock())
            raise
        except BaseException as exc:
            cur = store.get_run(rec.run_id)
            if cur is not None and cur.status == RunStatus.RUNNING and cur.pid == self.pid:
                status = RunStatus.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
                store.update_run(rec.run_id, self._event(rec, "run.finished", status=status, error=_short(exc)),
                                 status=status, error=_short(exc), finished_at=self.settings.clock())
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

    def _explain_key_holder(self, store: Any, rec: RunRecord, exc: KeyInUseError) -> KeyInUseError:
        """A key held by a run whose process is gone: say CRASHED and how to free the key."""
        from aetherflow.locks import is_free, run_lock_key

        holder = getattr(exc, "holder", None)
        if holder and is_free(lock_dir_of(store), run_lock_key(holder)):
            held = store.get_run(holder)
            if held is not None and held.status == RunStatus.RUNNING:
                return KeyInUseError(
                    f"business key '{rec.business_key}' is held by run {holder}, which CRASHED (its process is gone)",
                    hint=f"continue it with `aetherflow resume {holder}` or free the key with `aetherflow cancel {holder}`",
                )
        return exc

    def _flow_lock(self, store: Any, flow: FlowSpec, hint: str) -> Any:
        """Acquire the flow lock (``flow.locks.scope: flow``) within wait_seconds, else LockBusyError (exit 3)."""
        from aetherflow.locks import OsLock, flow_lock_key

        flock = OsLock(lock_dir_of(store), flow_lock_key(flow.id))
        if not flock.acquire(flow.locks.wait_seconds):
            holder = store.lock_holder(flock.key)
            who = (f"run {holder.run_id} (pid {holder.pid} on {holder.host})" if holder else "another process")
            raise LockBusyError(f"flow '{flow.id}' is locked by {who} (locks.scope: flow)", hint=hint)
        return flock

    def _emit_start(self, emit: Callable[[Event], None], rec: RunRecord, new: bool) -> None:
        emit(self._event(rec, "run.started" if new else "run.resumed", attempt=rec.attempt))

    def _profiles(self, flow: FlowSpec, req: RunRequest) -> Mapping[str, Mapping[str, Any]]:
        path = req.profiles_file or self.settings.env.get("AETHERFLOW_PROFILES_FILE") or flow.profiles_file
        if not path:
            if req.profile:
                raise ResolutionError(f"--profile {req.profile}: no profiles file (flow.profiles_file, --profiles or AETHERFLOW_PROFILES_FILE)",
                                      code="resolve.no_profiles_file")
            return {}
        p = Path(path)
        if not p.is_absolute() and not req.profiles_file:
            p = Path(flow.base_dir) / p
        return load_profiles(str(p))

    def _record_end(self, store: Any, flow: FlowSpec, rec: RunRecord, result: Any, emit: Any, selected: Sequence[str]) -> RunOutcome:
        now = self.settings.clock()
        status = result.status
        due = min((w.due_at for w in result.waits if w.due_at is not None), default=None)
        name = {RunStatus.WAITING: "run.waiting", RunStatus.INTERRUPTED: "run.interrupted", RunStatus.CANCELLED: "run.cancelled"}.get(
            status, "run.finished")
        err = None
        if result.failed_steps:
            j, s, e = result.failed_steps[-1]
            err = f"{j}.{s}: {e}"
        ev = self._event(rec, name, status=status, duration=round(now - (rec.started_at or now), 6), error=err)
        fields: dict[str, Any] = {"status": status, "updated_at": now, "due_at": due, "error": err}
        if status != RunStatus.WAITING:
            fields["finished_at"] = now
        if status == RunStatus.CANCELLED:
            store.clear_waits(rec.run_id, None)
        store.update_run(rec.run_id, ev, **fields)
        emit(ev)
        sel = [j for j in selected]
        all_skipped = bool(sel) and all(result.jobs.get(j) == "SKIPPED" for j in sel)
        return RunOutcome(
            run_id=rec.run_id, flow_id=flow.id, status=status, store_path=store.path, jobs=dict(result.jobs),
            reasons=dict(result.reasons), failed_steps=list(result.failed_steps),
            waits=[{"job": w.job_id, "step": w.step_id, "kind": w.kind, "events": list(w.events), "due_at": w.due_at}
                   for w in result.waits],
            interrupt=result.interrupt, all_skipped=all_skipped,
        )


def _not_waiting(run_id: str, status: str, event: str | None) -> UsageError:
    return UsageError(f"run {run_id} is {status}, not WAITING; it does not expect event '{event}'", code="event.not_waiting")


def _masked_event(ev: Event, redactor: Any) -> Event:
    """The event with secrets masked in its data (observers and the events log never see one)."""
    from aetherflow.records import replace

    if not ev.data:
        return ev
    data, changed = redactor.mask_value(thaw(ev.data))
    return replace(ev, data=freeze(data)) if changed else ev


def _cancel_requested(store: Any, run_id: str) -> str | None:
    light = getattr(store, "cancel_reason", None)
    if light is not None:  # checked before every step: not the whole record (flow text, params)
        return light(run_id)  # type: ignore[no-any-return]
    rec = store.get_run(run_id)
    return rec.cancel_reason if rec is not None and rec.cancel_reason else None


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def load_profiles(path: str) -> Mapping[str, Mapping[str, Any]]:
    from aetherflow.spec.loader import load_yaml
    from aetherflow.spec.schema import SchemaValidator, load_schema

    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ResolutionError(f"profiles file {path}: {exc.strerror}", code="resolve.profiles_unreadable") from exc
    data, positions = load_yaml(raw, path)
    issues = SchemaValidator(load_schema("profiles"), check=False).validate(data, file=path, positions=positions)
    if issues:
        raise SpecError(issues, file=path)
    return freeze(data or {})


def cancel_run(settings: Settings, run_id: str, reason: str | None) -> tuple[RunRecord, str, Event]:
    """Cancel a run: at once when no process executes it (its run lock is free), else ask the
    executing process to stop at its next step boundary. Returns the record, what happened
    (``cancelled`` or ``requested``) and the history event written."""
    from aetherflow.locks import OsLock, run_lock_key

    store, rec = find_run(settings, run_id)
    lock = OsLock(lock_dir_of(store), run_lock_key(rec.run_id))
    try:
        now = settings.clock()
        if rec.status in (RunStatus.SUCCESS, RunStatus.CANCELLED):
            raise UsageError(f"run {rec.run_id} is {rec.status}; nothing to cancel", code="run.not_cancellable")
        reason = reason or "cancelled by operator"
        data = freeze({"reason": reason})
        if not lock.acquire(0):  # a live process executes it: it stops at its next step boundary
            ev = Event(name="run.cancel_requested", run_id=rec.run_id, ts=now, flow_id=rec.flow_id, data=data)
            store.update_run(rec.run_id, ev, cancel_reason=reason)
            return rec, "requested", ev
        ev = Event(name="run.cancelled", run_id=rec.run_id, ts=now, flow_id=rec.flow_id, data=data)
        store.cancel_run(rec.run_id, reason, now, ev)
        return rec, "cancelled", ev
    finally:
        lock.release()
        store.close()


def parse_event_data(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--data is not valid JSON: {exc.msg} at column {exc.colno}", code="usage.event_data") from exc


__all__ = [
    "PluginError",
    "RunOutcome",
    "RunRequest",
    "Runner",
    "Settings",
    "cancel_run",
    "check_flow",
    "find_run",
    "known_stores",
    "load_registry",
    "parse_event_data",
    "settings_from_env",
]
