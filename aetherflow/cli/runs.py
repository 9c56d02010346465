"""`runs list|show|prune`, `cancel`, `locks list`: commands on the state store."""

# No `from __future__ import annotations` here: typer reads the command signatures, and string
# annotations are evaluated again on each read (several per command); real ones are built once.

import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

from aetherflow.cli import options as o
from aetherflow.cli.app import root_app
from aetherflow.cli.support import guarded, process_env, stderr, stdout
from aetherflow.errors import UsageError

runs_app = typer.Typer(help="Recorded runs.\n\nExample: aetherflow runs list --status FAILED", no_args_is_help=True)
locks_app = typer.Typer(help="Held locks.\n\nExample: aetherflow locks list", no_args_is_help=True)
root_app.add_typer(runs_app, name="runs")
root_app.add_typer(locks_app, name="locks")


def _complete_run_ids(incomplete: str) -> list[str]:
    from aetherflow.cli.complete import run_ids

    return run_ids(incomplete)


def _settings(state: str | None) -> Any:
    from aetherflow.settings import settings_from_env

    return settings_from_env(process_env(), state=state)


def _catalog(state: str | None) -> Any:
    from aetherflow.state.catalog import StoreCatalog

    settings = _settings(state)
    return StoreCatalog(settings.home, settings.state)


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
                     "INTERRUPTED or CRASHED (any case)."),
    ] = None,
    flow_id: Annotated[str | None, typer.Option("--flow", help="Only runs of this flow id.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only runs with this business key (VALUE or NAME::VALUE).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Only runs of flows with this tag (repeatable: every one).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most N runs.")] = 20,
    state: o.State = None,
    as_json: o.Json = False,
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
        catalog = _catalog(state)
        for location in catalog.locations():
            store = catalog.open(location)
            try:
                query = "RUNNING" if st == "CRASHED" else st
                for r in store.list_runs(status=query, flow_id=flow_id, key=key, tags=tuple(tag or ()), limit=limit):
                    row = _run_row(store, r)
                    if st is None or row["status"] == st:
                        rows.append(row)
            finally:
                store.close()
        rows.sort(key=lambda r: r["created_at"] or 0, reverse=True)
        rows = rows[:limit]
        if as_json:
            stdout(render.dumps({"runs": [{**r, "created_at": render.iso(r["created_at"]),
                                           "finished_at": render.iso(r["finished_at"])} for r in rows]}))
        else:
            stdout(render.runs_table(rows))


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str | None, typer.Argument(help="Run id (or a unique prefix).", autocompletion=_complete_run_ids,
                                                 show_default=False)] = None,
    history: Annotated[bool, typer.Option("--history", help="The append-only event history.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list the files in each job's artifacts/.")] = False,
    key: Annotated[str | None, typer.Option("--key", help="The run holding this business key (VALUE or NAME::VALUE): "
                                            "the active one, else the newest.")] = None,
    flow_id: Annotated[str | None, typer.Option("--flow", help="With --key: only runs of this flow id.")] = None,
    state: o.State = None,
    as_json: o.Json = False,
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
        if flow_id is not None and key is None:
            raise UsageError("--flow goes with --key (a run id names one run)", code="usage.flow_without_key")
        if key is not None:
            store, rec = _catalog(state).find_by_key(key, flow_id=flow_id, active_only=False)
        else:
            assert run_id is not None
            store, rec = _catalog(state).find_run(run_id)
        try:
            doc = show_doc(store, rec)
            add_workspaces(doc, rec, artifacts=verbose)
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


def show_doc(store: Any, rec: Any) -> dict[str, Any]:
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
    order: list[str] = []
    try:
        from aetherflow.engine.plan import topo_order
        from aetherflow.spec import load_flow

        flow = load_flow(rec.flow_file, raw=rec.flow_text.encode("utf-8")).flow
        order = list(topo_order(flow))
        step_order = {j.id: [s.id for s in j.steps] for j in flow.jobs}
    except Exception:  # noqa: BLE001 - a run whose recorded flow no longer parses still shows
        step_order = {}
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


def add_workspaces(doc: dict[str, Any], rec: Any, *, artifacts: bool) -> None:
    """Each job that started gets its ``workspace`` directory (``None`` otherwise) and, with
    ``artifacts``, the files under its ``artifacts/`` (paths relative to the workspace, sizes)."""
    from aetherflow.workspace import artifact_files, job_workspace

    for j in doc["jobs"]:
        ws = (job_workspace(Path(rec.workspace_root), rec.flow_id, j["job_id"], rec.run_id)
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
    older_than: Annotated[str, typer.Option("--older-than", help="Age cut-off with a unit (ms, s, m, h, d, w), e.g. 30d or 1.5d.")],
    yes: Annotated[bool, typer.Option("--yes", help="Really delete (otherwise only list).")] = False,
    state: o.State = None,
    as_json: o.Json = False,
) -> None:
    """Delete finished runs (and their workspaces) older than the cut-off.

    Example: aetherflow runs prune --older-than 30d --yes
    """
    from aetherflow import render
    from aetherflow.state.catalog import StoreCatalog

    with guarded(as_json):
        settings = _settings(state)
        cutoff = settings.clock() - parse_age(older_than)
        pruned: list[str] = []
        catalog = StoreCatalog(settings.home, settings.state)
        for location in catalog.locations():
            store = catalog.open(location)
            try:
                old = [r for r in store.list_runs(limit=1_000_000)
                       if r.status in ("SUCCESS", "FAILED", "CANCELLED", "INTERRUPTED") and (r.finished_at or r.created_at) < cutoff]
                if yes:
                    for r in old:
                        if r.workspace_root:
                            root = Path(r.workspace_root) / r.flow_id
                            if root.is_dir():
                                for job_dir in root.iterdir():
                                    target = job_dir / r.run_id
                                    if target.is_dir():
                                        shutil.rmtree(target, ignore_errors=True)
                    store.delete_runs([r.run_id for r in old])
                pruned.extend(r.run_id for r in old)
            finally:
                store.close()
        if as_json:
            stdout(render.dumps({"pruned" if yes else "would_prune": pruned}))
        else:
            verb = "deleted" if yes else "would delete (add --yes)"
            stdout(f"{verb} {len(pruned)} run(s)" + ("".join(f"\n  {r}" for r in pruned) if pruned else ""))


@root_app.command("cancel")
def cancel_cmd(
    run_id: Annotated[str | None, typer.Argument(help="Run id (or a unique prefix).", autocompletion=_complete_run_ids)] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why; recorded in the history.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Cancel the active run holding this business key (VALUE or NAME::VALUE).")] = None,
    flow_id: Annotated[str | None, typer.Option("--flow", help="With --key: only runs of this flow id.")] = None,
    state: o.State = None,
    events_log: o.EventsLog = None,
) -> None:
    """Mark a run CANCELLED: a WAITING run stops at once, a RUNNING one at its next step boundary.

    Example: aetherflow cancel 20261122T031500-a1b2c3 --reason "bad input file"
    """
    from aetherflow.runner import cancel_run
    from aetherflow.state.catalog import StoreCatalog

    with guarded():
        settings = _settings(state)
        if (run_id is None) == (key is None):
            raise UsageError("give RUN_ID or --key VALUE", code="usage.missing_run")
        if flow_id is not None and key is None:
            raise UsageError("--flow goes with --key (a run id names one run)", code="usage.flow_without_key")
        if key is not None:
            from aetherflow.cli.runexec import run_for_key

            run_id = run_for_key(settings, key, flow_id)
        assert run_id is not None
        rec, what, event = cancel_run(StoreCatalog(settings.home, settings.state), run_id, reason, settings.clock)
        if events_log:
            from aetherflow.events import JsonLinesLog

            with open(events_log, "a", encoding="utf-8") as fh:
                JsonLinesLog(fh)(event)
        if what == "requested":
            stderr(f"run {rec.run_id} is running (pid {rec.pid} on {rec.host}); it stops at its next step boundary")
        else:
            stderr(f"run {rec.run_id} cancelled")


@locks_app.command("list")
def locks_list(state: o.State = None, as_json: o.Json = False) -> None:
    """Held locks with their holder (run, pid, host, since).

    Example: aetherflow locks list --json
    """
    from aetherflow import render

    with guarded(as_json):
        rows: list[dict[str, Any]] = []
        catalog = _catalog(state)
        for location in catalog.locations():
            store = catalog.open(location)
            try:
                for lk in store.locks():
                    if store.lock_is_free(lk.name):
                        continue  # the holder died: the kernel released it; the record is stale
                    rows.append({"lock": lk.name, "kind": lk.kind, "run_id": lk.run_id, "pid": lk.pid, "host": lk.host,
                                 "since": lk.since})
            finally:
                store.close()
        if as_json:
            stdout(render.dumps({"locks": [{**r, "since": render.iso(r["since"])} for r in rows]}))
            return
        stdout(render.locks_table(rows))
