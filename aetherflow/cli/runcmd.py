"""`aetherflow run` and `aetherflow resume`: the typer commands (their options and help). What
they do is in ``cli/runexec.py``."""

# No `from __future__ import annotations` here: typer reads the command signatures, and string
# annotations are evaluated again on each read (several per command); real ones are built once.

from typing import Annotated

import typer

from aetherflow.cli import options as o
from aetherflow.cli.app import root_app


def _complete_run_ids(incomplete: str) -> list[str]:
    from aetherflow.cli.complete import run_ids

    return run_ids(incomplete)


@root_app.command("run")
def run_cmd(
    flow: o.Flow = None,
    flow_yaml: o.FlowYaml = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run id to use; an existing run is resumed.")] = None,
    job: Annotated[list[str] | None, typer.Option("--job", "--flow-job", help="Run only this job (repeatable).")] = None,
    with_upstream: Annotated[bool, typer.Option("--with-upstream", help="With --job: add every upstream job.")] = False,
    param: Annotated[list[str] | None, typer.Option("--param", help="Run parameter KEY=VALUE (repeatable).")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Business key VALUE or NAME::VALUE (needs flow.unique).")] = None,
    meta: Annotated[list[str] | None, typer.Option("--meta", help="Telemetry label NAME=VALUE recorded on the run and carried by its events (repeatable).")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Profile applied to every resource.")] = None,
    profiles: Annotated[str | None, typer.Option("--profiles", help="Profiles file (also AETHERFLOW_PROFILES_FILE).")] = None,
    env_file: Annotated[list[str] | None, typer.Option("--env-file", help="Extra env file (repeatable).")] = None,
    plugin_path: o.PluginPath = None,
    state: o.State = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; run nothing.")] = False,
    as_json: o.Json = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = 0,
    log_format: o.LogFormat = None,
    no_color: o.NoColor = False,
    events_log: o.EventsLog = None,
    detailed_exitcode: o.DetailedExit = False,
    on_locked: Annotated[str | None, typer.Option(
        "--on-locked", metavar="fail|skip|wait[=SECONDS]",
        help="When the flow lock or the business key is held by another run: fail (exit 3, the default), "
        "skip (exit 0, silent without -v, no run recorded) or wait (up to SECONDS; for as long as it takes "
        "without). Also AETHERFLOW_ON_LOCKED, config on_locked.")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", metavar="SECONDS",
        help="Time limit of the whole run (overrides flow.timeout_seconds): at expiry running steps are stopped "
        "as on SIGTERM, the run is recorded TIMED_OUT (resumable) and the command exits 124.")] = None,
    metrics_textfile: Annotated[str | None, typer.Option(
        "--metrics-textfile", metavar="PATH",
        help="After the run, rewrite this Prometheus textfile-collector file (also AETHERFLOW_METRICS_TEXTFILE, "
        "config [metrics] textfile).")] = None,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """Start a run of FLOW (or continue the run --run-id names).

    Example: aetherflow run flows/daily.yaml --param date=2026-11-20
    """
    from aetherflow.cli.runexec import run_command

    run_command(
        flow=flow, flow_yaml=flow_yaml, run_id=run_id, job=job, with_upstream=with_upstream,
        param=param, key=key, profile=profile, profiles=profiles, env_file=env_file,
        plugin_path=plugin_path, state=state, dry_run=dry_run, as_json=as_json, quiet=quiet,
        verbose=verbose, log_format=log_format, no_color=no_color, events_log=events_log,
        detailed_exitcode=detailed_exitcode, meta=meta, on_locked=on_locked, timeout=timeout,
        metrics_textfile=metrics_textfile, config=config, log_file=log_file,
    )


@root_app.command("resume")
def resume_cmd(
    run_id: Annotated[str | None, typer.Argument(help="Run id (or a unique prefix; last: the newest run).", show_default=False, autocompletion=_complete_run_ids)] = None,
    event: Annotated[str | None, typer.Option("--event", help="Deliver this event to the waiting step.")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Event data as JSON.")] = None,
    rerun: Annotated[list[str] | None, typer.Option("--rerun", help="Execute JOB.STEP again, and everything after it.")] = None,
    accept_changes: Annotated[bool, typer.Option("--accept-changes", help="Resume although the flow file changed.")] = False,
    due: Annotated[bool, typer.Option("--due", help="Resume every WAITING run whose timer or retry is due.")] = False,
    flow_id: Annotated[str | None, typer.Option("--flow", help="With --due or --key: only runs of this flow id; with the run id last: the newest run of it.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="With --due: at most N runs.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Resume the active run holding this business key (VALUE or NAME::VALUE).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Do not resume now: the WAITING run continues at this ISO-8601 time, with `resume --due`.")] = None,
    in_: Annotated[str | None, typer.Option("--in", help="Like --at, after this duration (30m, 2h, 1.5d).")] = None,
    env_file: Annotated[list[str] | None, typer.Option("--env-file", help="Extra env file (repeatable).")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Profile applied to every resource.")] = None,
    profiles: Annotated[str | None, typer.Option("--profiles", help="Profiles file.")] = None,
    plugin_path: o.PluginPath = None,
    state: o.State = None,
    as_json: o.Json = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = 0,
    log_format: o.LogFormat = None,
    no_color: o.NoColor = False,
    events_log: o.EventsLog = None,
    detailed_exitcode: o.DetailedExit = False,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """Continue a FAILED, CRASHED, INTERRUPTED, TIMED_OUT or WAITING run; finished steps are not run again.

    With --at TIME or --in DURATION a WAITING run is not resumed now: its waits fall due then,
    and the next `aetherflow resume --due` continues it as if its timers had fired.

    Example: aetherflow resume 20261122T031500-a1b2c3 --event approved --data '{"by": "ops"}'
    """
    from aetherflow.cli.runexec import resume_command

    resume_command(
        run_id=run_id, event=event, data=data, rerun=rerun, accept_changes=accept_changes, due=due,
        flow_id=flow_id, limit=limit, key=key, env_file=env_file, profile=profile,
        profiles=profiles, plugin_path=plugin_path, state=state, as_json=as_json, quiet=quiet,
        verbose=verbose, log_format=log_format, no_color=no_color, events_log=events_log,
        detailed_exitcode=detailed_exitcode, at=at, in_=in_, config=config, log_file=log_file,
    )
