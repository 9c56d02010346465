"""`status` and `config show`: what an operator looks at (SPEC section 13)."""

# No `from __future__ import annotations` here: typer reads the command signatures, and string
# annotations are evaluated again on each read (several per command); real ones are built once.

from typing import Any

import typer

from aetherflow.cli import options as o
from aetherflow.cli.app import root_app
from aetherflow.cli.support import begin, guarded, stdout

config_app = typer.Typer(help="The configuration.\n\nExample: aetherflow config show", no_args_is_help=True)
root_app.add_typer(config_app, name="config")


@root_app.command("status")
def status_cmd(
    state: o.State = None,
    as_json: o.Json = False,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """One screen for an operator: per flow the last run (status, when, how long) and last
    success; what runs now and where (host, pid); what waits and until when; what crashed;
    which locks are held. A crashed run found here is notified once (`crashed`).

    Example: aetherflow status
    """
    from aetherflow import render
    from aetherflow.cli.runexec import notifier
    from aetherflow.runner import notify_crashed
    from aetherflow.state.catalog import StoreCatalog

    with guarded(as_json):
        settings, _ = begin(config=config, log_file=log_file, state=state)
        catalog = StoreCatalog(settings.home, settings.state)
        import os

        notify_crashed(catalog, notifier(settings), clock=settings.clock, host=os.uname().nodename)
        doc = status_doc(catalog, settings.clock())
        if as_json:
            stdout(render.dumps(_iso_times(doc)))
        else:
            stdout(status_text(doc))


def status_doc(catalog: Any, now: float) -> dict[str, Any]:
    from aetherflow.state.store import shown_status

    flows: dict[str, dict[str, Any]] = {}
    running: list[dict[str, Any]] = []
    crashed: list[dict[str, Any]] = []
    waiting: list[dict[str, Any]] = []
    locks: list[dict[str, Any]] = []
    for store in catalog.stores():
        for s in store.flow_summaries():
            last = s.last_run
            if last is None:
                continue
            old = flows.get(s.flow_id)
            if old is not None and old["last_run"]["started_at"] >= (last.started_at or last.created_at):
                continue
            end = last.finished_at or (now if last.status == "RUNNING" else last.updated_at)
            start = last.started_at or last.created_at
            flows[s.flow_id] = {"flow_id": s.flow_id, "store": store.location, "last_success_at": s.last_success_at,
                                "last_run": {"run_id": last.run_id, "status": shown_status(store, last),
                                             "started_at": start, "duration": (end - start) if end else None}}
        for r in store.list_runs(status="RUNNING", limit=10_000):
            row = {"run_id": r.run_id, "flow_id": r.flow_id, "host": r.host, "pid": r.pid,
                   "since": r.started_at or r.created_at, "store": store.location}
            (crashed if shown_status(store, r) == "CRASHED" else running).append(row)
        for r in store.list_runs(status="WAITING", limit=10_000):
            waits = [{"job": w.job_id, "step": w.step_id, "kind": w.kind, "events": list(w.events), "due_at": w.due_at}
                     for w in store.waits(r.run_id)]
            waiting.append({"run_id": r.run_id, "flow_id": r.flow_id, "due_at": r.due_at, "waits": waits,
                            "store": store.location})
        for lk in store.locks():
            if not store.lock_is_free(lk.name):
                locks.append({"lock": lk.name, "kind": lk.kind, "run_id": lk.run_id, "pid": lk.pid, "host": lk.host,
                              "since": lk.since})
    return {"flows": [flows[f] for f in sorted(flows)], "running": running, "waiting": waiting, "crashed": crashed,
            "locks": locks}


def _iso_times(doc: dict[str, Any]) -> dict[str, Any]:
    from aetherflow import render

    def conv(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: conv(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [conv(v) for v in value]
        if key in ("started_at", "last_success_at", "since", "due_at") and isinstance(value, (int, float)):
            return render.iso(value)
        return value

    return conv(doc)  # type: ignore[no-any-return]


def status_text(doc: dict[str, Any]) -> str:
    from aetherflow import render

    t = render.local_time
    out: list[str] = []
    if doc["flows"]:
        rows: list[tuple[str, ...]] = [("FLOW", "LAST RUN", "STATUS", "STARTED", "DURATION", "LAST SUCCESS")]
        for f in doc["flows"]:
            lr = f["last_run"]
            rows.append((f["flow_id"], lr["run_id"], lr["status"], t(lr["started_at"]), render.duration(lr["duration"]),
                         t(f["last_success_at"]) if f["last_success_at"] else "never"))
        out.extend(_columns(rows))
    else:
        out.append("no runs recorded yet")

    def section(title: str, items: list[str]) -> None:
        out.append("")
        out.append(f"{title}: {'none' if not items else ''}".rstrip())
        out.extend(f"  {i}" for i in items)

    section("running", [f"{r['run_id']}  flow {r['flow_id']}  pid {r['pid']} on {r['host']}  since {t(r['since'])}"
                        for r in doc["running"]])
    section("waiting", [f"{w['run_id']}  flow {w['flow_id']}  " + "; ".join(_wait_text(x) for x in w["waits"])
                        for w in doc["waiting"]])
    section("crashed", [f"{r['run_id']}  flow {r['flow_id']}  pid {r['pid']} on {r['host']}  since {t(r['since'])}"
                        f"  (aetherflow resume {r['run_id']})" for r in doc["crashed"]])
    section("locks held", [f"{lk['lock']}  {lk['kind']}  run {lk['run_id']}  pid {lk['pid']} on {lk['host']}"
                           f"  since {t(lk['since'])}" for lk in doc["locks"]])
    return "\n".join(out)


def _wait_text(w: dict[str, Any]) -> str:
    from aetherflow import render

    what = []
    if w["events"]:
        what.append("event " + " or ".join(w["events"]))
    if w["due_at"] is not None:
        what.append(("retry at " if w["kind"] == "retry" else "until ") + render.local_time(w["due_at"]))
    return f"{w['job']}.{w['step']} waits for {', '.join(what) or 'an event'}"


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]


# -- config show --------------------------------------------------------------------------------

#: the values config show lists, in order
SHOWN = ("home", "config", "state", "events_log", "plugin_paths", "log_format", "on_locked", "metrics.textfile",
         "retention.max_age", "notify", "inline_wait_max")


@config_app.command("show")
def config_show(
    state: o.State = None,
    plugin_path: o.PluginPath = None,
    events_log: o.EventsLog = None,
    as_json: o.Json = False,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """Every effective setting and where it comes from: a flag, an environment variable, the
    config file (FILE:LINE:COLUMN) or the default. Secrets are masked.

    Example: aetherflow config show --json
    """
    from aetherflow import render

    with guarded(as_json):
        settings, _ = begin(config=config, log_file=log_file, state=state, plugin_paths=tuple(plugin_path or ()),
                            events_log=events_log)
        values = {name: _shown(name, settings.sources[name]) for name in SHOWN}
        cfg = settings.config
        if as_json:
            stdout(render.dumps({"config_file": cfg.path, "found_by": cfg.found_by, "looked_in": list(cfg.looked_in),
                                 "values": values}))
            return
        where = (f"config file: {cfg.path} (from {cfg.found_by})" if cfg.path else
                 f"config file: none (looked in {', '.join(cfg.looked_in)})")
        lines = [where]
        width = max(len(n) for n in SHOWN)
        for name in SHOWN:
            v = values[name]
            if name in ("plugin_paths", "notify") and v["value"]:
                lines.append(f"{name.ljust(width)}  ")
                for item in v["value"]:
                    lines.append(f"  - {item['value']}  ({item['source']})")
                continue
            shown = "-" if v["value"] in (None, [], "") else v["value"]
            if name == "state" and v["value"] is None:
                shown = f"- (the flow's state.path, else {settings.home / 'state.db'})"
            lines.append(f"{name.ljust(width)}  {shown}  ({v['source']})")
        stdout("\n".join(lines))


def _source(raw: str) -> str:
    if raw.startswith("--"):
        return f"flag {raw}"
    if raw == "default":
        return "default"
    if "/" in raw or raw.endswith(".toml") or raw.startswith("~") or raw.startswith("$"):
        return f"file {raw}"
    if raw == "none found":
        return raw
    return f"env {raw}"


def _shown(name: str, setting: Any) -> dict[str, Any]:
    from aetherflow.notify import target_text

    value = setting.value
    if name == "plugin_paths":
        return {"value": [{"value": s.value, "source": _source(s.source)} for s in value],
                "source": "each its own" if value else "default"}
    if name == "notify":
        return {"value": [{"value": f"{target_text(n)} on {', '.join(n.on)}"
                           + (f" for {', '.join(n.flows)}" if n.flows else ""), "source": _source(n.origin)}
                          for n in value], "source": _source(setting.source) if value else "default"}
    if name == "retention.max_age" and value is not None:
        value = value[0]
    if name == "on_locked":
        value = str(value)
    if name == "state" and isinstance(value, str):
        from aetherflow.state.backends import public_location

        value = public_location(value)  # as every command shows a store: without its password
    if name == "config":
        return {"value": value, "source": setting.source}
    return {"value": value, "source": _source(setting.source)}
