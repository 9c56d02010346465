"""What `run` and `resume` (and `resume --due`) do once typer has parsed their arguments
(``cli/runcmd.py`` declares the commands and calls :func:`run_command` and
:func:`resume_command`). Each ends with ``SystemExit(code)``."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from aetherflow.cli.support import (
    MaskFilter,
    begin,
    crash_hooks,
    flow_argument,
    guarded,
    log_line,
    setup_logging,
    signal_handlers,
    stderr,
    stdout,
    stdout_to_stderr,
    to_log_file,
)
from aetherflow.compat import core_logging
from aetherflow.errors import ExitCode, UsageError


def live_view(settings: Any, *, quiet: bool, no_color: bool, dry_run: bool = False) -> Any:
    """The rich live view, when rich finds stderr an interactive terminal (``FORCE_COLOR``,
    ``TTY_COMPATIBLE``, ``TTY_INTERACTIVE`` and ``TERM=dumb`` are rich's to read), and not with
    -q, JSON logs or a dry run. ``--no-color`` and a non-empty ``NO_COLOR`` turn colour off."""
    if quiet or dry_run or settings.log_format != "text":
        return None
    from aetherflow import render

    console = render.stderr_console(sys.stderr, settings.env, no_color=no_color)
    return render.LiveView(console) if console.is_interactive else None


class _Extras:
    """What a run command opens besides the runner (the events log file, the tracer) and
    closes at its end."""

    def __init__(self) -> None:
        self.files: list[Any] = []
        self.spans: Any = None
        self.provider: Any = None  # a tracer provider this process made (shut down at the end)

    def close(self) -> None:
        for fh in self.files:
            fh.close()
        if self.spans is not None:
            self.spans.close()
        if self.provider is not None:
            self.provider.shutdown()


def _observers(settings: Any, verbose: int, quiet: bool, extras: _Extras, live: Any = None,
               core_events: str | None = None) -> list[Any]:
    from aetherflow import render
    from aetherflow.events import CoreEventLines, JsonLinesLog

    obs: list[Any] = []
    if core_events is not None:  # AETHERFLOW_LOG_FORMAT: aetherflow-core's event lines
        obs.append(CoreEventLines(sys.stderr, core_events))
    if live is not None:
        obs.append(live)
    elif verbose >= 1 and not quiet:
        obs.append(render.ProgressJsonLines(sys.stderr) if settings.log_format == "json" else render.ProgressLines(sys.stderr))

    def to_file(ev: Any) -> None:  # --log-file gets the progress lines whatever -v says
        line = render.progress_text(ev)
        if line is not None:
            to_log_file(f"{ev.run_id}: {line}")

    obs.append(to_file)
    if settings.events_log:
        try:
            fh = open(settings.events_log, "a", encoding="utf-8")  # noqa: SIM115 - closed by extras.close()
        except OSError as exc:
            raise UsageError(f"--events-log {settings.events_log}: {exc.strerror}") from exc
        extras.files.append(fh)
        obs.append(JsonLinesLog(fh))
    tracing = _tracing(settings)
    if tracing is not None:
        from aetherflow.telemetry import SpanObserver

        provider, own = tracing
        extras.spans = SpanObserver(provider)
        extras.provider = provider if own else None
        obs.append(extras.spans)
    return obs


def _tracing(settings: Any) -> Any:
    """OpenTelemetry, when the environment asks for it (telemetry.py); without the ``otel``
    extra that is a warning, not an error."""
    try:
        from aetherflow.telemetry import tracer_provider

        return tracer_provider(settings.env, sys.stderr)
    except ImportError as exc:
        log_line(f"warning: OpenTelemetry is configured (OTEL_*) but cannot be used: {exc} "
                 "(pip install 'aetherflow[otel]')", level="warning", log_format=settings.log_format)
        return None


def notifier(settings: Any) -> Any:
    from aetherflow.notify import Dispatcher

    return Dispatcher(settings.notify, settings.env)


def write_metrics(settings: Any, catalog: Any) -> None:
    """Rewrite the metrics textfile, when one is configured; a failure is reported on stderr and
    changes nothing else (the run's exit code stays)."""
    if not settings.metrics_textfile:
        return
    from aetherflow.errors import AetherflowError
    from aetherflow.metrics import write_textfile

    try:
        write_textfile(settings.metrics_textfile, catalog, settings.clock)
    except (OSError, AetherflowError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log_line(f"warning: metrics textfile {settings.metrics_textfile}: cannot write it: {why}",
                 level="warning", log_format=settings.log_format)


def _summary(outcome: Any, *, verbose: bool, log_format: str) -> None:
    """The end-of-run lines on stderr, plain or as JSON lines."""
    from aetherflow import render

    records = render.outcome_records(outcome, verbose=verbose)
    if log_format == "json":
        for level, line in records:
            log_line(line, level=level, log_format=log_format, run_id=outcome.run_id, status=str(outcome.status))
    elif records:
        log_line("\n".join(line for _, line in records), level="error" if any(lv == "error" for lv, _ in records) else "info")


def _exit_for(outcome: Any, detailed: bool) -> int:
    status = str(outcome.status)
    if outcome.interrupt in ("SIGTERM",):
        return int(ExitCode.SIGTERM)
    if outcome.interrupt in ("SIGINT",):
        return int(ExitCode.SIGINT)
    if status == "TIMED_OUT":
        return int(ExitCode.TIMED_OUT)
    if status in ("FAILED", "CANCELLED", "INTERRUPTED"):
        return int(ExitCode.RUN_FAILED)
    if status == "WAITING":
        return int(ExitCode.WAITING) if detailed else 0
    if outcome.all_skipped and detailed:
        return int(ExitCode.SKIPPED)
    return 0


def _warn_ignored_env(env: Any, quiet: bool, log_format: str) -> None:
    """aetherflow-core variables that are set and not read: said on stderr (not with -q)."""
    from aetherflow.compat import ignored_env_warnings

    for text in [] if quiet else ignored_env_warnings(env):
        log_line(f"warning: {text}", level="warning", log_format=log_format)


def _begin_run(*, config: str | None, log_file: str | None, verbose: int, quiet: bool, log_format: str | None,
               **options: Any) -> tuple[Any, MaskFilter, int, bool, str | None]:
    """``begin`` for run and resume, with aetherflow-core's logging variables taken into account
    (``compat.core_logging``): the settings, the mask filter, -v and -q as they apply, and the
    format of aetherflow-core's event lines (``None``: none)."""
    from dataclasses import replace

    settings, mask_filter = begin(config=config, log_file=log_file, verbose=verbose, quiet=quiet, log_format=log_format,
                                  **options)
    v, q, fmt, core_events = core_logging(settings.env, verbose, quiet, settings.log_format)
    if (v, q, fmt) != (verbose, quiet, settings.log_format):
        settings = replace(settings, log_format=fmt)
        mask_filter = setup_logging(v, q, fmt, log_file)
    return settings, mask_filter, v, q, core_events


def _final_table(live: Any, outcome: Any, settings: Any) -> None:
    """After the live view: the run's table, built from the store like ``runs show``'s."""
    from aetherflow.cli.runs import show_doc
    from aetherflow.errors import AetherflowError
    from aetherflow.state.catalog import StoreCatalog

    try:
        store, rec = StoreCatalog(settings.home, outcome.store).find_run(outcome.run_id)
    except AetherflowError:
        return
    try:
        doc = show_doc(store, rec)
    finally:
        store.close()
    live.final(doc)


def _execute(action: Any, settings: Any, mask_filter: MaskFilter, *, as_json: bool, verbose: int, quiet: bool,
             detailed: bool, dry_run: bool = False, no_color: bool = False, skip_when_locked: bool = False,
             core_events: str | None = None) -> None:
    from aetherflow import render
    from aetherflow.context import CancelToken
    from aetherflow.errors import KeyInUseError, LockBusyError
    from aetherflow.runner import Runner

    log_format = settings.log_format
    extras = _Extras()
    token = CancelToken()
    _warn_ignored_env(settings.env, quiet, log_format)
    with guarded(as_json, log_format):
        live = live_view(settings, quiet=quiet, no_color=no_color, dry_run=dry_run)
        runner = Runner(settings, cancel=token, observers=_observers(settings, verbose, quiet, extras, live, core_events),
                        hooks=crash_hooks(dict(settings.env)), on_mask=mask_filter.set_mask, notifier=notifier(settings))
        try:
            # steps, plugins and their children never write to our stdout (results only)
            with stdout_to_stderr(), signal_handlers(token.set), \
                    (live if live is not None else contextlib.nullcontext()):
                outcome = action(runner)
        except (LockBusyError, KeyInUseError) as exc:
            if not skip_when_locked:
                raise
            # --on-locked skip: an overlap under cron is no news (recorded in no run)
            if verbose:
                log_line(f"skipped (--on-locked skip): {exc.message}", log_format=log_format)
            else:
                to_log_file(f"skipped (--on-locked skip): {exc.message}")
            raise SystemExit(0) from None
        finally:
            extras.close()
            if not dry_run:
                write_metrics(settings, runner.catalog)
        if live is not None and outcome.plan is None and outcome.message is None:
            _final_table(live, outcome, settings)
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
                log_format: str | None = None, no_color: bool = False, events_log: str | None = None,
                detailed_exitcode: bool = False, meta: list[str] | None = None, on_locked: str | None = None,
                timeout: float | None = None, metrics_textfile: str | None = None, config: str | None = None,
                log_file: str | None = None) -> None:
    from aetherflow.resolve import parse_param_args
    from aetherflow.runner import RunRequest, parse_meta_args

    with guarded(as_json, log_format if log_format in ("text", "json") else "text"):
        settings, mask_filter, verbose, quiet, core_events = _begin_run(
            config=config, log_file=log_file, verbose=verbose, quiet=quiet, log_format=log_format, state=state,
            plugin_paths=tuple(plugin_path or ()), events_log=events_log, on_locked=on_locked,
            metrics_textfile=metrics_textfile)
        path = flow_argument(flow, flow_yaml, "run")
        if timeout is not None and timeout <= 0:
            raise UsageError(f"--timeout {timeout:g}: give a number of seconds above 0", code="usage.timeout")
        req = RunRequest(flow_path=path, run_id=run_id, jobs=tuple(job or ()), with_upstream=with_upstream,
                         params=parse_param_args(param or []), key=key, profile=profile, profiles_file=profiles,
                         env_files=tuple(env_file or ()), dry_run=dry_run, meta=parse_meta_args(meta or []),
                         timeout=timeout, on_locked=settings.on_locked)
    _execute(lambda r: r.run(req), settings, mask_filter, as_json=as_json, verbose=verbose, quiet=quiet,
             detailed=detailed_exitcode, dry_run=dry_run, no_color=no_color,
             skip_when_locked=settings.on_locked.mode == "skip", core_events=core_events)


def resume_command(*, run_id: str | None = None, event: str | None = None, data: str | None = None,
                   rerun: list[str] | None = None, accept_changes: bool = False, due: bool = False,
                   flow_id: str | None = None, limit: int | None = None, key: str | None = None,
                   env_file: list[str] | None = None, profile: str | None = None, profiles: str | None = None,
                   plugin_path: list[str] | None = None, state: str | None = None, as_json: bool = False,
                   quiet: bool = False, verbose: int = 0, log_format: str | None = None, no_color: bool = False,
                   events_log: str | None = None, detailed_exitcode: bool = False, at: str | None = None,
                   in_: str | None = None, config: str | None = None, log_file: str | None = None) -> None:
    from aetherflow.runner import RunRequest, parse_event_data

    with guarded(as_json, log_format if log_format in ("text", "json") else "text"):
        settings, mask_filter, verbose, quiet, core_events = _begin_run(
            config=config, log_file=log_file, verbose=verbose, quiet=quiet, log_format=log_format, state=state,
            plugin_paths=tuple(plugin_path or ()), events_log=events_log)
        if due:
            if run_id or event or key or at is not None or in_ is not None:
                raise UsageError("--due resumes every due run; it takes no RUN_ID, --event, --key, --at or --in")
            _resume_due(settings, mask_filter, flow_id, limit, as_json=as_json, verbose=verbose, quiet=quiet,
                        core_events=core_events)
            return
        if data is not None and event is None:
            raise UsageError("--data goes with --event")
        if (run_id is None) == (key is None):
            raise UsageError("give RUN_ID or --key VALUE (or --due)", code="usage.missing_run")
        if flow_id is not None and key is None and run_id != "last":
            raise UsageError("--flow goes with --due, --key or the run id last (a run id names one run)",
                             code="usage.flow_without_key")
        if at is not None or in_ is not None:
            if event is not None or rerun or accept_changes:
                raise UsageError("--at/--in schedule when a waiting run continues; they take no --event, --rerun "
                                 "or --accept-changes", code="usage.due_time")
            _schedule(settings, run_id, key, flow_id, at, in_, as_json=as_json)
            return
        payload = parse_event_data(data)
        req = RunRequest(flow_path="", reruns=tuple(rerun or ()), accept_changes=accept_changes, event=event,
                         event_data=payload, env_files=tuple(env_file or ()), profile=profile, profiles_file=profiles,
                         flow_id=flow_id if key is None else None)

    def action(runner: Any) -> Any:
        rid = run_id
        if key is not None:
            rid = run_for_key(runner.settings, key, flow_id)
        return runner.resume(req, run_id=rid)

    _execute(action, settings, mask_filter, as_json=as_json, verbose=verbose, quiet=quiet, detailed=detailed_exitcode,
             no_color=no_color, core_events=core_events)


def run_for_key(settings: Any, key: str, flow_id: str | None) -> str:
    """The id of the one active run holding business key ``key`` (of flow ``flow_id``, when
    given), in any store this machine used: ambiguous or none is exit 2."""
    from aetherflow.state.catalog import StoreCatalog

    store, rec = StoreCatalog(settings.home, settings.state).find_by_key(key, flow_id=flow_id, active_only=True)
    store.close()
    return rec.run_id


def _schedule(settings: Any, run_id: str | None, key: str | None, flow_id: str | None, at: str | None,
              in_: str | None, *, as_json: bool) -> None:
    """``resume RUN --at TIME | --in DURATION``: record when the waiting run continues."""
    from aetherflow import render
    from aetherflow.runner import parse_due, schedule_resume
    from aetherflow.state.catalog import StoreCatalog

    due_at = parse_due(at, in_, settings.clock())
    rid = run_id if key is None else run_for_key(settings, key, flow_id)
    assert rid is not None
    if rid == "last":
        store, found = StoreCatalog(settings.home, settings.state).find_run(rid, flow_id=flow_id)
        store.close()
        rid = found.run_id
    rec, event = schedule_resume(StoreCatalog(settings.home, settings.state), rid, due_at, settings.clock)
    if settings.events_log:
        from aetherflow.events import JsonLinesLog

        try:
            with open(settings.events_log, "a", encoding="utf-8") as fh:
                JsonLinesLog(fh)(event)
        except OSError as exc:
            raise UsageError(f"--events-log {settings.events_log}: {exc.strerror}") from exc
    if as_json:
        stdout(render.dumps({"run_id": rec.run_id, "flow_id": rec.flow_id, "status": "WAITING",
                             "due_at": render.iso(due_at)}))
    else:
        stderr(f"run {rec.run_id} continues at {render.local_time(due_at)}, with the next `aetherflow resume --due`")


def _resume_due(settings: Any, mask_filter: MaskFilter, flow_id: str | None, limit: int | None, *, as_json: bool,
                verbose: int, quiet: bool, core_events: str | None = None) -> None:
    from aetherflow import render
    from aetherflow.context import CancelToken
    from aetherflow.errors import AetherflowError, ConflictError
    from aetherflow.runner import Runner, RunRequest, notify_crashed

    log_format = settings.log_format
    token = CancelToken()
    extras = _Extras()
    results: list[dict[str, Any]] = []
    worst = 0
    now = settings.clock()
    due: list[str] = []
    sender = notifier(settings)
    _warn_ignored_env(settings.env, quiet, log_format)
    runner = Runner(settings, cancel=token, observers=_observers(settings, verbose, quiet, extras, core_events=core_events),
                    hooks=crash_hooks(dict(settings.env)), on_mask=mask_filter.set_mask, notifier=sender)
    # a crashed run cannot say so itself: the first sweep (or status) that finds it does, once
    notify_crashed(runner.catalog, sender, clock=settings.clock, host=runner.host)
    for store in runner.catalog.stores():
        due.extend(r.run_id for r in store.due_runs(now, flow_id=flow_id, limit=limit))
    if limit is not None:
        due = due[:limit]
    try:
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
                finally:
                    write_metrics(settings, runner.catalog)
                results.append(render.outcome_json(out))
                if out.message is None:
                    _summary(out, verbose=verbose >= 1 and not quiet, log_format=log_format)
                if str(out.status) in ("FAILED", "INTERRUPTED"):
                    worst = max(worst, int(ExitCode.RUN_FAILED))
                elif str(out.status) == "TIMED_OUT":
                    worst = max(worst, int(ExitCode.TIMED_OUT))
    finally:
        extras.close()
    if as_json:
        stdout(render.dumps({"due": results}))
    elif verbose:
        log_line(f"resume --due: {len(due)} due run(s)", log_format=log_format)
    if token.why() in ("SIGTERM", "SIGINT"):
        raise SystemExit(int(ExitCode.SIGTERM if token.why() == "SIGTERM" else ExitCode.SIGINT))
    raise SystemExit(worst)
