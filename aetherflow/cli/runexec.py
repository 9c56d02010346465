"""What `run` and `resume` (and `resume --due`) do once typer has parsed their arguments
(``cli/runcmd.py`` declares the commands and calls :func:`run_command` and
:func:`resume_command`). Each ends with ``SystemExit(code)``."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from aetherflow.cli.support import (
    MaskFilter,
    crash_hooks,
    flow_argument,
    guarded,
    log_line,
    process_env,
    setup_logging,
    signal_handlers,
    stderr,
    stdout,
    stdout_to_stderr,
)
from aetherflow.compat import core_logging
from aetherflow.errors import ExitCode, UsageError


def use_live_view(quiet: bool, log_format: str = "text") -> bool:
    """The rich live view only on a terminal, and not with -q or JSON logs."""
    return sys.stderr.isatty() and not quiet and log_format == "text" and os.environ.get("TERM") != "dumb"


def _observers(verbose: int, quiet: bool, events_log: str | None, stack: list[Any], live: Any = None,
               log_format: str = "text", core_events: str | None = None) -> list[Any]:
    from aetherflow import render
    from aetherflow.events import CoreEventLines, JsonLinesLog

    obs: list[Any] = []
    if core_events is not None:  # AETHERFLOW_LOG_FORMAT: aetherflow-core's event lines
        obs.append(CoreEventLines(sys.stderr, core_events))
    if live is not None:
        obs.append(live)
    elif verbose >= 1 and not quiet:
        obs.append(render.ProgressJsonLines(sys.stderr) if log_format == "json" else render.ProgressLines(sys.stderr))
    if events_log:
        try:
            fh = open(events_log, "a", encoding="utf-8")  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise UsageError(f"--events-log {events_log}: {exc.strerror}") from exc
        stack.append(fh)
        obs.append(JsonLinesLog(fh))
    return obs


def _summary(outcome: Any, *, verbose: bool, log_format: str) -> None:
    """The end-of-run lines on stderr, plain or as JSON lines."""
    from aetherflow import render

    records = render.outcome_records(outcome, verbose=verbose)
    if log_format == "json":
        for level, line in records:
            log_line(line, level=level, log_format=log_format, run_id=outcome.run_id, status=str(outcome.status))
    elif records:
        log_line("\n".join(line for _, line in records))


def _exit_for(outcome: Any, detailed: bool) -> int:
    status = str(outcome.status)
    if outcome.interrupt in ("SIGTERM",):
        return int(ExitCode.SIGTERM)
    if outcome.interrupt in ("SIGINT",):
        return int(ExitCode.SIGINT)
    if status in ("FAILED", "CANCELLED", "INTERRUPTED"):
        return int(ExitCode.RUN_FAILED)
    if status == "WAITING":
        return int(ExitCode.WAITING) if detailed else 0
    if outcome.all_skipped and detailed:
        return int(ExitCode.SKIPPED)
    return 0


def _warn_ignored_env(env: dict[str, str], quiet: bool, log_format: str) -> None:
    """aetherflow-core variables that are set and not read: said on stderr (not with -q)."""
    from aetherflow.compat import ignored_env_warnings

    for text in [] if quiet else ignored_env_warnings(env):
        log_line(f"warning: {text}", level="warning", log_format=log_format)


def _execute(action: Any, *, as_json: bool, verbose: int, quiet: bool, events_log: str | None, detailed: bool,
             state: str | None, plugin_path: list[str] | None, dry_run: bool = False, no_color: bool = False,
             log_format: str = "text", mask_filter: MaskFilter | None = None, core_events: str | None = None) -> None:
    from aetherflow import render
    from aetherflow.context import CancelToken
    from aetherflow.runner import Runner
    from aetherflow.settings import settings_from_env

    env = process_env()
    stack: list[Any] = []
    token = CancelToken()
    _warn_ignored_env(env, quiet, log_format)
    with guarded(as_json, log_format):
        settings = settings_from_env(env, state=state, plugin_paths=tuple(plugin_path or ()), events_log=events_log)
        live = None
        if use_live_view(quiet, log_format) and not dry_run:
            live = render.LiveView(sys.stderr, color=not (no_color or "NO_COLOR" in env))
        runner = Runner(settings, cancel=token,
                        observers=_observers(verbose, quiet, events_log, stack, live, log_format, core_events),
                        hooks=crash_hooks(env), on_mask=mask_filter.set_mask if mask_filter else None)
        try:
            # steps, plugins and their children never write to our stdout (results only)
            with stdout_to_stderr(), signal_handlers(token.set), \
                    (live if live is not None else contextlib.nullcontext()):
                outcome = action(runner)
        finally:
            for fh in stack:
                fh.close()
        if as_json:
            stdout(render.dumps(render.outcome_json(outcome)))
        if outcome.plan is not None:
            if not as_json:
                stdout("\n".join(render.plan_lines(outcome.plan, outcome.run_id)))
            raise SystemExit(0)
        for w in outcome.warnings:
            log_line(f"warning: {w}", level="warning", log_format=log_format)
        if not quiet or str(outcome.status) != "SUCCESS":
            # -q keeps what cron must see (the waiting line, failures) and drops the hints
            _summary(outcome, verbose=(verbose >= 1 or live is not None) and not quiet, log_format=log_format)
        raise SystemExit(_exit_for(outcome, detailed))


def run_command(*, flow: str | None = None, flow_yaml: str | None = None, run_id: str | None = None,
                job: list[str] | None = None, with_upstream: bool = False, param: list[str] | None = None,
                key: str | None = None, profile: str | None = None, profiles: str | None = None,
                env_file: list[str] | None = None, plugin_path: list[str] | None = None, state: str | None = None,
                dry_run: bool = False, as_json: bool = False, quiet: bool = False, verbose: int = 0,
                log_format: str = "text", no_color: bool = False, events_log: str | None = None,
                detailed_exitcode: bool = False, meta: list[str] | None = None) -> None:
    from aetherflow.resolve import parse_param_args
    from aetherflow.runner import RunRequest, parse_meta_args

    with guarded(as_json, log_format):
        verbose, quiet, log_format, core_events = core_logging(process_env(), verbose, quiet, log_format)
        mask_filter = setup_logging(verbose, quiet, log_format)
        path = flow_argument(flow, flow_yaml, "run")
        req = RunRequest(flow_path=path, run_id=run_id, jobs=tuple(job or ()), with_upstream=with_upstream,
                         params=parse_param_args(param or []), key=key, profile=profile, profiles_file=profiles,
                         env_files=tuple(env_file or ()), dry_run=dry_run, meta=parse_meta_args(meta or []))
    _execute(lambda r: r.run(req), as_json=as_json, verbose=verbose, quiet=quiet, events_log=events_log,
             detailed=detailed_exitcode, state=state, plugin_path=plugin_path, dry_run=dry_run, no_color=no_color,
             log_format=log_format, mask_filter=mask_filter, core_events=core_events)




def resume_command(*, run_id: str | None = None, event: str | None = None, data: str | None = None,
                   rerun: list[str] | None = None, accept_changes: bool = False, due: bool = False,
                   flow_id: str | None = None, limit: int | None = None, key: str | None = None,
                   env_file: list[str] | None = None, profile: str | None = None, profiles: str | None = None,
                   plugin_path: list[str] | None = None, state: str | None = None, as_json: bool = False,
                   quiet: bool = False, verbose: int = 0, log_format: str = "text", no_color: bool = False,
                   events_log: str | None = None, detailed_exitcode: bool = False, at: str | None = None,
                   in_: str | None = None) -> None:
    from aetherflow.runner import RunRequest, parse_event_data

    with guarded(as_json, log_format):
        verbose, quiet, log_format, core_events = core_logging(process_env(), verbose, quiet, log_format)
        mask_filter = setup_logging(verbose, quiet, log_format)
        if due:
            if run_id or event or key or at is not None or in_ is not None:
                raise UsageError("--due resumes every due run; it takes no RUN_ID, --event, --key, --at or --in")
            _resume_due(flow_id, limit, as_json=as_json, verbose=verbose, quiet=quiet, events_log=events_log,
                        state=state, plugin_path=plugin_path, log_format=log_format, mask_filter=mask_filter,
                        core_events=core_events)
            return
        if data is not None and event is None:
            raise UsageError("--data goes with --event")
        if (run_id is None) == (key is None):
            raise UsageError("give RUN_ID or --key VALUE (or --due)", code="usage.missing_run")
        if flow_id is not None and key is None:
            raise UsageError("--flow goes with --due or --key (a run id names one run)", code="usage.flow_without_key")
        if at is not None or in_ is not None:
            if event is not None or rerun or accept_changes:
                raise UsageError("--at/--in schedule when a waiting run continues; they take no --event, --rerun "
                                 "or --accept-changes", code="usage.due_time")
            _schedule(run_id, key, flow_id, at, in_, state=state, as_json=as_json, events_log=events_log)
            return
        payload = parse_event_data(data)
        req = RunRequest(flow_path="", reruns=tuple(rerun or ()), accept_changes=accept_changes, event=event,
                         event_data=payload, env_files=tuple(env_file or ()), profile=profile, profiles_file=profiles)

    def action(runner: Any) -> Any:
        rid = run_id
        if key is not None:
            rid = run_for_key(runner.settings, key, flow_id)
        return runner.resume(req, run_id=rid)

    _execute(action, as_json=as_json, verbose=verbose, quiet=quiet, events_log=events_log,
             detailed=detailed_exitcode, state=state, plugin_path=plugin_path, no_color=no_color, log_format=log_format,
             mask_filter=mask_filter, core_events=core_events)


def run_for_key(settings: Any, key: str, flow_id: str | None) -> str:
    """The id of the one active run holding business key ``key`` (of flow ``flow_id``, when
    given), in any store this machine used: ambiguous or none is exit 2."""
    from aetherflow.state.catalog import StoreCatalog

    store, rec = StoreCatalog(settings.home, settings.state).find_by_key(key, flow_id=flow_id, active_only=True)
    store.close()
    return rec.run_id


def _schedule(run_id: str | None, key: str | None, flow_id: str | None, at: str | None, in_: str | None, *,
              state: str | None, as_json: bool, events_log: str | None) -> None:
    """``resume RUN --at TIME | --in DURATION``: record when the waiting run continues."""
    from aetherflow import render
    from aetherflow.runner import parse_due, schedule_resume
    from aetherflow.settings import settings_from_env
    from aetherflow.state.catalog import StoreCatalog

    settings = settings_from_env(process_env(), state=state)
    due_at = parse_due(at, in_, settings.clock())
    rid = run_id if key is None else run_for_key(settings, key, flow_id)
    assert rid is not None
    rec, event = schedule_resume(StoreCatalog(settings.home, settings.state), rid, due_at, settings.clock)
    if events_log:
        from aetherflow.events import JsonLinesLog

        try:
            with open(events_log, "a", encoding="utf-8") as fh:
                JsonLinesLog(fh)(event)
        except OSError as exc:
            raise UsageError(f"--events-log {events_log}: {exc.strerror}") from exc
    if as_json:
        stdout(render.dumps({"run_id": rec.run_id, "flow_id": rec.flow_id, "status": "WAITING",
                             "due_at": render.iso(due_at)}))
    else:
        stderr(f"run {rec.run_id} continues at {render.local_time(due_at)}, with the next `aetherflow resume --due`")


def _resume_due(flow_id: str | None, limit: int | None, *, as_json: bool, verbose: int, quiet: bool,
                events_log: str | None, state: str | None, plugin_path: list[str] | None,
                log_format: str = "text", mask_filter: MaskFilter | None = None, core_events: str | None = None) -> None:
    from aetherflow import render
    from aetherflow.context import CancelToken
    from aetherflow.errors import AetherflowError, ConflictError
    from aetherflow.runner import Runner, RunRequest
    from aetherflow.settings import settings_from_env

    env = process_env()
    _warn_ignored_env(env, quiet, log_format)
    settings = settings_from_env(env, state=state, plugin_paths=tuple(plugin_path or ()), events_log=events_log)
    token = CancelToken()
    stack: list[Any] = []
    results: list[dict[str, Any]] = []
    worst = 0
    now = settings.clock()
    due: list[str] = []
    runner = Runner(settings, cancel=token, observers=_observers(verbose, quiet, events_log, stack, log_format=log_format,
                                                                 core_events=core_events),
                    hooks=crash_hooks(env), on_mask=mask_filter.set_mask if mask_filter else None)
    for location in runner.catalog.locations():
        store = runner.catalog.open(location)
        try:
            due.extend(r.run_id for r in store.due_runs(now, flow_id=flow_id, limit=limit))
        finally:
            store.close()
    if limit is not None:
        due = due[:limit]
    # steps, plugins and their children never write to our stdout (results only)
    with stdout_to_stderr(), signal_handlers(token.set):
        for rid in due:
            if token.is_set():
                break
            try:
                out = runner.resume(RunRequest(flow_path="", due_only=True), run_id=rid)
            except ConflictError as exc:
                results.append({"run_id": rid, "status": "SKIPPED", "message": exc.message})
                continue
            except AetherflowError as exc:
                if log_format == "json":
                    for rec in render.error_log_records(exc):
                        stderr(render.dumps_line({**rec, "run_id": rid}))
                else:
                    stderr(render.error_text(exc))
                results.append({"run_id": rid, "status": "ERROR", "message": exc.message})
                worst = max(worst, int(ExitCode.RUN_FAILED))
                continue
            results.append(render.outcome_json(out))
            if out.message is None:
                _summary(out, verbose=verbose >= 1 and not quiet, log_format=log_format)
            if str(out.status) in ("FAILED", "INTERRUPTED"):
                worst = max(worst, int(ExitCode.RUN_FAILED))
    for fh in stack:
        fh.close()
    if as_json:
        stdout(render.dumps({"due": results}))
    elif verbose:
        log_line(f"resume --due: {len(due)} due run(s)", log_format=log_format)
    if token.is_set():
        raise SystemExit(int(ExitCode.SIGTERM if token.why() == "SIGTERM" else ExitCode.SIGINT))
    raise SystemExit(worst)
