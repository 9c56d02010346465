"""`runs list|show|prune`, `cancel`, `locks list`: commands on the state store."""

# No `from __future__ import annotations` here: typer reads the command signatures, and string
# annotations are evaluated again on each read (several per command); real ones are built once.

import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

from aetherflow.cli import options as o
from aetherflow.cli.app import root_app
from aetherflow.cli.support import begin, guarded, stderr, stdout, to_log_file
from aetherflow.errors import UsageError

runs_app = typer.Typer(help="Recorded runs.\n\nExample: aetherflow runs list --status FAILED", no_args_is_help=True)
locks_app = typer.Typer(help="Held locks.\n\nExample: aetherflow locks list", no_args_is_help=True)
root_app.add_typer(runs_app, name="runs")
root_app.add_typer(locks_app, name="locks")


def _complete_run_ids(incomplete: str) -> list[str]:
    from aetherflow.cli.complete import run_ids

    return run_ids(incomplete)


def _settings(state: str | None, config: str | None = None, log_file: str | None = None) -> Any:
    settings, _ = begin(config=config, log_file=log_file, state=state)
    return settings


def _catalog(state: str | None, config: str | None = None, log_file: str | None = None) -> Any:
    from aetherflow.state.catalog import StoreCatalog

    settings = _settings(state, config, log_file)
    return StoreCatalog(settings.home, settings.state)


RunId = Annotated[str, typer.Argument(help="Run id, a unique prefix of one, or last (the newest run; of --flow ID "
                                      "when given).", autocompletion=_complete_run_ids)]
LastOfFlow = Annotated[str | None, typer.Option("--flow", help="With the run id last: the newest run of this flow id.")]


def _check_last(run_id: str | None, flow_id: str | None, key: str | None = None) -> None:
    """``--flow`` narrows ``--key`` or the run id ``last``; a run id names one run."""
    if flow_id is not None and key is None and run_id != "last":
        raise UsageError("--flow goes with --key or the run id 'last' (a run id names one run)",
                         code="usage.flow_without_key")


def _run_row(store: Any, r: Any) -> dict[str, Any]:
    from aetherflow.state.store import shown_status

    status = str(shown_status(store, r))
    return {
        "run_id": r.run_id,
        "flow_id": r.flow_id,
        "status": status,
        "created_at": r.created_at,
        "finished_at": r.finished_at,
        "duration": run_duration(store, r, status),
        "business_key": r.business_key,
        "tags": list(r.tags),
        "host": r.host,
        "store": store.location,
        "attempt": r.attempt,
    }


def run_duration(store: Any, r: Any, status: str) -> float | None:
    """How long a run ran: to its end; a live run until now; a CRASHED run until the last thing
    it recorded (its process died without saying when)."""
    import time

    if r.finished_at:
        end = r.finished_at
    elif status == "RUNNING":
        end = time.time()
    elif status == "CRASHED":
        events = store.history(r.run_id)
        end = max([r.updated_at or 0.0, *(e.ts for e in events[-1:])])
    else:
        end = r.updated_at
    return (end - r.created_at) if end and r.created_at else None


@runs_app.command("list")
def runs_list(
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only runs with this status: RUNNING, SUCCESS, FAILED, WAITING, CANCELLED, "
                     "INTERRUPTED, TIMED_OUT or CRASHED (any case)."),
    ] = None,
    flow_id: Annotated[str | None, typer.Option("--flow", help="Only runs of this flow id.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only runs with this business key (VALUE or NAME::VALUE).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Only runs of flows with this tag (repeatable: every one).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most N runs.")] = 20,
    state: o.State = None,
    as_json: o.Json = False,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """Recent runs, newest first.

    Example: aetherflow runs list --status FAILED --tag sales --limit 5
    """
    from aetherflow import render
    from aetherflow.model import RunStatus, split_key
    with guarded(as_json):
        if key is not None:
            split_key(key)
        st = status.upper() if status else None
        valid = [s.value for s in RunStatus]
        if st is not None and st not in valid:
            raise UsageError(f"--status {status!r}: unknown status; use one of {', '.join(valid)} (any case)",
                             code="usage.status")
        rows: list[dict[str, Any]] = []
        catalog = _catalog(state, config, log_file)
        for store in catalog.stores():
            query = "RUNNING" if st == "CRASHED" else st
            for r in store.list_runs(status=query, flow_id=flow_id, key=key, tags=tuple(tag or ()), limit=limit):
                row = _run_row(store, r)
                if st is None or row["status"] == st:
                    rows.append(row)
        rows.sort(key=lambda r: r["created_at"] or 0, reverse=True)
        rows = rows[:limit]
        if as_json:
            stdout(render.dumps({"runs": [{**r, "created_at": render.iso(r["created_at"]),
                                           "finished_at": render.iso(r["finished_at"])} for r in rows]}))
        else:
            stdout(render.runs_table(rows))


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str | None, typer.Argument(help="Run id, a unique prefix of one, or last (the newest run; of "
                                                 "--flow ID when given).", autocompletion=_complete_run_ids,
                                                 show_default=False)] = None,
    history: Annotated[bool, typer.Option("--history", help="The append-only event history.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list the files in each job's artifacts directory.")] = False,
    key: Annotated[str | None, typer.Option("--key", help="The run holding this business key (VALUE or NAME::VALUE): "
                                            "the active one, else the newest.")] = None,
    flow_id: Annotated[str | None, typer.Option("--flow", help="With --key: only runs of this flow id; with the run id "
                                                "last: the newest run of it.")] = None,
    state: o.State = None,
    as_json: o.Json = False,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """One run: jobs (with their workspace directory), steps, statuses, attempts, durations,
    outputs (secrets masked), errors.

    Example: aetherflow runs show 20261122T031500-a1b2c3 --history
    """
    from aetherflow import render
    from aetherflow.model import thaw
    with guarded(as_json):
        if (run_id is None) == (key is None):
            raise UsageError("give RUN_ID or --key VALUE", code="usage.missing_run")
        _check_last(run_id, flow_id, key)
        if key is not None:
            store, rec = _catalog(state, config, log_file).find_by_key(key, flow_id=flow_id, active_only=False)
        else:
            assert run_id is not None
            store, rec = _catalog(state, config, log_file).find_run(run_id, flow_id=flow_id)
        try:
            flow = recorded_flow(rec)
            doc = show_doc(store, rec, flow)
            add_workspaces(doc, rec, flow, artifacts=verbose)
            events = store.history(rec.run_id) if history else []
        finally:
            store.close()
        if as_json:
            if history:
                doc["history"] = [e.as_dict() for e in events]
            stdout(render.dumps(thaw(doc)))
            return
        stdout(render.run_show_text(doc))
        if history:
            stdout("history:")
            stdout(render.history_text(events))


def _job_outputs(j: Any) -> dict[str, Any]:
    from aetherflow.model import MASKED_KEYS_FIELD, thaw

    if j is None:
        return {}
    return {k: v for k, v in thaw(j.outputs).items() if k != MASKED_KEYS_FIELD}


def recorded_flow(rec: Any) -> Any:
    """The flow a run recorded (its ``FlowSpec``), or None when that text no longer parses."""
    from aetherflow.spec import load_flow

    try:
        return load_flow(rec.flow_file, raw=rec.flow_text.encode("utf-8")).flow
    except Exception:  # noqa: BLE001 - a run whose recorded flow no longer parses still shows
        return None


def show_doc(store: Any, rec: Any, flow: Any = None) -> dict[str, Any]:
    """``runs show``'s document; ``flow``: the run's :func:`recorded_flow` when the caller has it."""
    from aetherflow.engine.plan import topo_order
    from aetherflow.model import MASKED_KEYS_FIELD, thaw
    from aetherflow.state.store import shown_status

    jobs = store.jobs(rec.run_id)
    steps = store.steps(rec.run_id)
    attempts = store.attempts(rec.run_id)
    by_step: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for a in attempts:
        by_step.setdefault((a.job_id, a.step_id), []).append(
            {"attempt": a.attempt, "status": a.status, "error": a.error, "outcome": a.outcome,
             "started_at": a.started_at, "finished_at": a.finished_at})
    flow = flow or recorded_flow(rec)
    order: list[str] = list(topo_order(flow)) if flow is not None else []
    step_order = {j.id: [s.id for s in j.steps] for j in flow.jobs} if flow is not None else {}
    for jid in jobs:
        if jid not in order:
            order.append(jid)
    job_docs = []
    for jid in order:
        j = jobs.get(jid)
        sids = step_order.get(jid, [])
        sids = sids + sorted(s for (jj, s) in steps if jj == jid and s not in sids)
        sdocs: list[dict[str, Any]] = []
        for sid in sids:
            s = steps.get((jid, sid))
            if s is None:
                sdocs.append({"step_id": sid, "status": "PENDING"})
                continue
            sdocs.append({"step_id": sid, "status": s.status, "attempt": s.attempt, "outcome": s.outcome,
                          "outputs": thaw(s.outputs), "masked_outputs": list(s.masked_keys), "error": s.error,
                          "reason": s.reason, "started_at": s.started_at, "finished_at": s.finished_at,
                          "metadata": thaw(s.metadata), "attempts": by_step.get((jid, sid), [])})
        job_docs.append({"job_id": jid, "status": j.status if j else "PENDING", "reason": j.reason if j else None,
                         "outcome": j.outcome if j else None, "outputs": _job_outputs(j),
                         "masked_outputs": list(j.outputs.get(MASKED_KEYS_FIELD, ())) if j else [],
                         "started_at": j.started_at if j else None, "finished_at": j.finished_at if j else None,
                         "steps": sdocs})
    run: dict[str, Any] = {
        "run_id": rec.run_id, "flow_id": rec.flow_id, "flow_file": rec.flow_file, "flow_sha256": rec.flow_sha256,
        "flow_version": rec.flow_version, "status": str(shown_status(store, rec)), "stored_status": rec.status,
        "params": thaw(rec.params), "business_key": rec.business_key, "tags": list(rec.tags),
        "flow_metadata": thaw(rec.flow_metadata), "meta": thaw(rec.meta), "runtime_metadata": thaw(rec.runtime_metadata),
        "pid": rec.pid, "host": rec.host,
        "created_at": rec.created_at, "finished_at": rec.finished_at, "attempt": rec.attempt, "error": rec.error,
        "cancel_reason": rec.cancel_reason, "due_at": rec.due_at, "store": store.location,
    }
    waits = [{"job_id": w.job_id, "step_id": w.step_id, "kind": w.kind, "events": list(w.events), "due_at": w.due_at}
             for w in store.waits(rec.run_id)]
    return {"run": run, "jobs": job_docs, "waits": waits}


def add_workspaces(doc: dict[str, Any], rec: Any, flow: Any, *, artifacts: bool) -> None:
    """Each job that started gets its ``workspace`` directory (``None`` otherwise) and, with
    ``artifacts``, the files under its artifacts directory (the recorded ``flow``'s
    ``workspace.layout`` names it; paths relative to the workspace, sizes)."""
    from aetherflow.workspace import artifact_files, job_workspace

    layout = flow.workspace.layout if flow is not None else None
    for j in doc["jobs"]:
        ws = (job_workspace(Path(rec.workspace_root), rec.flow_id, j["job_id"], rec.run_id, layout)
              if rec.workspace_root and j.get("started_at") else None)
        j["workspace"] = str(ws.path) if ws else None
        if artifacts:
            j["artifacts"] = artifact_files(ws) if ws else []


def parse_age(text: str) -> float:
    from aetherflow.durations import EXAMPLES, parse_duration

    seconds = parse_duration(text, unit_required=True)
    if seconds is None:
        raise UsageError(f"--older-than {text!r}: use a number and a unit, {EXAMPLES.removeprefix('e.g. 90, ')}",
                         code="usage.age")
    return seconds


@runs_app.command("prune")
def runs_prune(
    older_than: Annotated[str | None, typer.Option(
        "--older-than", help="Age cut-off with a unit (ms, s, m, h, d, w), e.g. 30d or 1.5d (default: the config "
        "file's [retention] max_age).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete (otherwise only list).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on stdout (cron mails any output).")] = False,
    state: o.State = None,
    as_json: o.Json = False,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """Delete finished runs older than the cut-off and everything they left: their records,
    history and logs, their workspaces and their run lock files. A run being resumed is left.

    Example: aetherflow runs prune --older-than 30d --yes
    """
    from aetherflow import render
    from aetherflow.model import FINISHED_STATUSES
    from aetherflow.state.catalog import StoreCatalog

    with guarded(as_json):
        settings = _settings(state, config, log_file)
        if older_than is not None:
            age = parse_age(older_than)
        elif settings.retention_max_age is not None:
            age = settings.retention_max_age
        else:
            raise UsageError("runs prune needs --older-than AGE (or [retention] max_age in the config file)",
                             code="usage.age")
        cutoff = settings.clock() - age
        pruned: list[str] = []
        catalog = StoreCatalog(settings.home, settings.state)
        for store in catalog.stores():
            old = {r.run_id: r for r in store.list_runs(limit=1_000_000)
                   if r.status in FINISHED_STATUSES and (r.finished_at or r.created_at) < cutoff}
            if yes:
                deleted = store.delete_runs(list(old), finished_before=cutoff)
                for rid in deleted:  # the records are gone first: a workspace is never left without its run
                    _remove_workspace(old[rid])
                pruned.extend(deleted)
            else:
                pruned.extend(old)
        to_log_file(f"runs prune: {'deleted' if yes else 'would delete'} {len(pruned)} run(s)")
        if as_json:
            stdout(render.dumps({"pruned" if yes else "would_prune": pruned}))
        elif not quiet:
            verb = "deleted" if yes else "would delete (add --yes)"
            stdout(f"{verb} {len(pruned)} run(s)" + ("".join(f"\n  {r}" for r in pruned) if pruned else ""))


def _remove_workspace(r: Any) -> None:
    """A pruned run's job directories (``<root>/<flow>/<job>/<run_id>``)."""
    if not r.workspace_root:
        return
    root = Path(r.workspace_root) / r.flow_id
    if root.is_dir():
        for job_dir in root.iterdir():
            target = job_dir / r.run_id
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)


@runs_app.command("logs")
def runs_logs(
    run_id: RunId,
    step: Annotated[str | None, typer.Argument(help="Only this job (JOB) or step (JOB.STEP).", metavar="[JOB.STEP]",
                                               show_default=False)] = None,
    attempt: Annotated[int | None, typer.Option("--attempt", help="Only attempt N of the step(s).", min=1)] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing a running run's output until it ends.")] = False,
    flow_id: LastOfFlow = None,
    state: o.State = None,
    as_json: o.Json = False,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """What a run's steps wrote (captured stdout and stderr, masked), per attempt.

    Each stream of each attempt keeps its first 4 MiB and its last 1 MiB (docs/operations.md).

    Example: aetherflow runs logs last extract.fetch --attempt 2
    """
    import time

    from aetherflow import render
    from aetherflow.state.store import shown_status

    with guarded(as_json):
        _check_last(run_id, flow_id)
        if follow and as_json:
            raise UsageError("--follow prints as the output comes; --json prints one document: choose one",
                             code="usage.follow_json")
        job_id, _, step_id = (step or "").partition(".")
        store, rec = _catalog(state, config, log_file).find_run(run_id, flow_id=flow_id)
        try:
            narrow = {"job_id": job_id or None, "step_id": step_id or None, "attempt": attempt}
            if as_json:
                chunks = _all_output(store, rec.run_id, narrow)
                stdout(render.dumps({"run_id": rec.run_id, "output": [
                    {"job": c.job_id, "step": c.step_id, "attempt": c.attempt, "stream": c.stream, "text": c.text,
                     "at": render.iso(c.at)} for c in chunks]}))
                return
            printer = _LogPrinter()
            after = 0
            while True:
                running = follow and shown_status(store, store.get_run(rec.run_id) or rec) == "RUNNING"
                chunks = store.output(rec.run_id, after=after, limit=1000, **narrow)
                for c in chunks:
                    printer.show(c)
                after = chunks[-1].seq if chunks else after
                if len(chunks) == 1000:
                    continue  # more is stored already
                if not running:
                    break
                time.sleep(0.25)
            if printer.shown == 0:
                what = f" of {step}" if step else ""
                stderr(f"run {rec.run_id}: no output recorded{what}" + (f" (attempt {attempt})" if attempt else ""))
        finally:
            store.close()


def _all_output(store: Any, run_id: str, narrow: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    after = 0
    while True:
        chunks = store.output(run_id, after=after, limit=1000, **narrow)
        out.extend(chunks)
        if len(chunks) < 1000:
            return out
        after = chunks[-1].seq


class _LogPrinter:
    """Prints chunks, with a header line whenever the step, attempt or stream changes."""

    def __init__(self) -> None:
        self.current: tuple[str, str, int, str] | None = None
        self.at_line_start = True
        self.shown = 0

    def show(self, c: Any) -> None:
        import sys

        key = (c.job_id, c.step_id, c.attempt, c.stream)
        if key != self.current:
            if not self.at_line_start:
                sys.stdout.write("\n")
            sys.stdout.write(f"==> {c.job_id}.{c.step_id} attempt {c.attempt} {c.stream} <==\n")
            self.current = key
        sys.stdout.write(c.text)
        sys.stdout.flush()
        self.at_line_start = c.text.endswith("\n")
        self.shown += 1


@root_app.command("cancel")
def cancel_cmd(
    run_id: Annotated[str | None, typer.Argument(help="Run id, a unique prefix of one, or last (the newest run; of "
                                                 "--flow ID when given).", autocompletion=_complete_run_ids)] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why; recorded in the history.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Cancel the active run holding this business key (VALUE or NAME::VALUE).")] = None,
    flow_id: Annotated[str | None, typer.Option("--flow", help="With --key: only runs of this flow id; with the run id "
                                                "last: the newest run of it.")] = None,
    state: o.State = None,
    events_log: o.EventsLog = None,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """Mark a run CANCELLED: a WAITING run stops at once, a RUNNING one at its next step boundary.

    Example: aetherflow cancel 20261122T031500-a1b2c3 --reason "bad input file"
    """
    from aetherflow.runner import cancel_run
    from aetherflow.state.catalog import StoreCatalog

    with guarded():
        settings, _ = begin(config=config, log_file=log_file, state=state, events_log=events_log)
        if (run_id is None) == (key is None):
            raise UsageError("give RUN_ID or --key VALUE", code="usage.missing_run")
        _check_last(run_id, flow_id, key)
        if key is not None:
            from aetherflow.cli.runexec import run_for_key

            run_id = run_for_key(settings, key, flow_id)
        assert run_id is not None
        rec, what, event = cancel_run(StoreCatalog(settings.home, settings.state), run_id, reason, settings.clock,
                                      flow_id=flow_id if key is None else None)
        if settings.events_log:
            from aetherflow.events import JsonLinesLog

            with open(settings.events_log, "a", encoding="utf-8") as fh:
                JsonLinesLog(fh)(event)
        if what == "requested":
            stderr(f"run {rec.run_id} is running (pid {rec.pid} on {rec.host}); it stops at its next step boundary")
        else:
            stderr(f"run {rec.run_id} cancelled")


@locks_app.command("list")
def locks_list(state: o.State = None, as_json: o.Json = False, config: o.Config = None,
               log_file: o.LogFile = None) -> None:
    """Held locks with their holder (run, pid, host, since).

    Example: aetherflow locks list --json
    """
    from aetherflow import render

    with guarded(as_json):
        rows: list[dict[str, Any]] = []
        catalog = _catalog(state, config, log_file)
        for store in catalog.stores():
            for lk in store.locks():
                if store.lock_is_free(lk.name):
                    continue  # the holder died: the kernel released it; the record is stale
                rows.append({"lock": lk.name, "kind": lk.kind, "run_id": lk.run_id, "pid": lk.pid, "host": lk.host,
                             "since": lk.since})
        if as_json:
            stdout(render.dumps({"locks": [{**r, "since": render.iso(r["since"])} for r in rows]}))
            return
        stdout(render.locks_table(rows))
