"""Turning results, issues and errors into text and JSON. The only module that imports rich.

Plain output (no terminal, cron): one line per fact, no colour or control codes. ``--json``:
one document with ``"schema_version"``. Untrusted text (step output, errors) is never
interpreted as markup.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from aetherflow.errors import AetherflowError, Issue
from aetherflow.events import Event
from aetherflow.model import thaw

JSON_SCHEMA_VERSION = 1


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from datetime import UTC, datetime  # only when a time is shown

    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def local_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def dumps(doc: Mapping[str, Any]) -> str:
    body = {"schema_version": JSON_SCHEMA_VERSION, **doc}
    return json.dumps(body, indent=2, ensure_ascii=False, default=str)


def dumps_line(doc: Mapping[str, Any]) -> str:
    """One JSON object on one line (``--log-format json`` records)."""
    return json.dumps(doc, ensure_ascii=False, default=str)


def log_record(level: str, message: str, *, ts: float | None = None, **extra: Any) -> dict[str, Any]:
    """A stderr record with ``--log-format json``: the same keys as the logging records."""
    return {"ts": time.time() if ts is None else ts, "level": level, "message": message, **extra}


def json_log_line(level: str, message: str, **extra: Any) -> str:
    return dumps_line(log_record(level, message, **extra))


# issues and errors ----------------------------------------------------------------------------


def issue_line(issue: Issue) -> str:
    loc = issue.location
    where = str(loc) if loc else "<flow>"
    at = f" (at {loc.path})" if loc and loc.path else ""
    line = f"{where}: {issue.code}: {issue.message}{at}"
    if issue.hint:
        line += f"\n    hint: {issue.hint}"
    return line


def issues_text(issues: Sequence[Issue]) -> str:
    lines = [issue_line(i) for i in issues]
    n = len(issues)
    lines.append(f"{n} problem{'s' if n != 1 else ''} found")
    return "\n".join(lines)


def warnings_text(warnings: Sequence[Issue]) -> str:
    """Issues that do not make a flow invalid, as ``file:line:col: warning: code: message``."""
    lines = []
    for w in warnings:
        loc = w.location
        at = f" (at {loc.path})" if loc and loc.path else ""
        line = f"{loc if loc else '<flow>'}: warning: {w.code}: {w.message}{at}"
        if w.hint:
            line += f"\n    hint: {w.hint}"
        lines.append(line)
    n = len(warnings)
    lines.append(f"{n} warning{'s' if n != 1 else ''}")
    return "\n".join(lines)


def error_text(exc: AetherflowError) -> str:
    from aetherflow.errors import SpecError

    if isinstance(exc, SpecError) and exc.issues:
        return issues_text(exc.issues)
    loc = f"{exc.location}: " if exc.location and exc.location.file else ""
    text = f"aetherflow: {loc}error[{exc.code}]: {exc.message}"
    if exc.hint:
        text += f"\n    hint: {exc.hint}"
    return text


def error_log_records(exc: AetherflowError) -> list[dict[str, Any]]:
    """``error_text`` as ``--log-format json`` records: one per issue of a SpecError."""
    from aetherflow.errors import SpecError

    if isinstance(exc, SpecError) and exc.issues:
        return [log_record("error", issue_line(i), code=i.code, exit_code=int(exc.exit_code)) for i in exc.issues]
    return [log_record("error", error_text(exc), code=exc.code, exit_code=int(exc.exit_code))]


def error_json(exc: AetherflowError) -> dict[str, Any]:
    from aetherflow.errors import SpecError

    doc: dict[str, Any] = {"ok": False, "error": {"code": exc.code, "message": exc.message, "hint": exc.hint,
                                                  "exit_code": int(exc.exit_code)}}
    if isinstance(exc, SpecError):
        doc["issues"] = [i.as_dict() for i in exc.issues]
    return doc


# runs -----------------------------------------------------------------------------------------


def outcome_json(o: Any) -> dict[str, Any]:
    return {
        "run_id": o.run_id,
        "flow_id": o.flow_id,
        "status": str(o.status),
        "store": o.store,
        "jobs": {k: str(v) for k, v in o.jobs.items()},
        "reasons": o.reasons,
        "failed_steps": [{"job": j, "step": s, "error": e} for j, s, e in o.failed_steps],
        "waits": [{**w, "due_at": iso(w.get("due_at"))} for w in o.waits],
        "message": o.message,
        "plan": o.plan,
    }


def wait_line(o: Any) -> str:
    parts = []
    for w in o.waits:
        what = []
        if w.get("events"):
            what.append("event " + " or ".join(w["events"]))
        if w.get("due_at") is not None:
            what.append(("retry at " if w.get("kind") == "retry" else "timer at ") + local_time(w["due_at"]))
        parts.append(f"{w['job']}.{w['step']} waits for {', '.join(what)}")
    return f"run {o.run_id} is WAITING: " + "; ".join(parts)


def outcome_records(o: Any, *, verbose: bool) -> list[tuple[str, str]]:
    """End-of-run ``(level, line)`` pairs for stderr, level ``info`` or ``error`` (empty on
    success unless verbose). A WAITING run that also has failed or blocked jobs lists them
    after the waiting line, so that cron mails the failure too."""
    status = str(o.status)
    if o.message:
        return [("info", o.message)]
    lines: list[tuple[str, str]] = []
    if status == "SUCCESS":
        if verbose:
            lines.append(("info", f"run {o.run_id} SUCCESS ({_jobs_summary(o.jobs, o.reasons)})"))
        return lines
    if status == "WAITING":
        lines.append(("info", wait_line(o)))
        problems = _problem_lines(o)
        if problems:
            lines.append(("error", f"run {o.run_id} also has failed or blocked jobs ({_jobs_summary(o.jobs, o.reasons)})"))
            lines.extend(("error", line) for line in problems)
        if verbose:
            lines.append(("info", f"continue with: aetherflow resume {o.run_id} (or `aetherflow resume --due` from cron)"))
        return lines
    if status in ("FAILED", "INTERRUPTED", "CANCELLED", "TIMED_OUT"):
        lines.append(("error", f"run {o.run_id} {status} ({_jobs_summary(o.jobs, o.reasons)})"))
        lines.extend(("error", line) for line in _problem_lines(o))
        if status != "CANCELLED":
            lines.append(("info", f"resume with: aetherflow resume {o.run_id}"))
    return lines


def _problem_lines(o: Any) -> list[str]:
    lines = [f"  {j}.{s}: {e}" if _interrupted(e)
             else f"  failed: {j}.{s}: " + _indent_rest(step_error(s, _first_lines(e)), "    ")
             for j, s, e in o.failed_steps]
    for j, reason in o.reasons.items():
        if o.jobs.get(j) == "BLOCKED":
            lines.append(f"  blocked: {j}: {reason}")
    return lines


def step_error(step_id: str | None, text: str) -> str:
    """An error shown with its step already named: without the ``step 'ID': `` its message may
    start with (``step 'ID' failed: step 'ID': ...`` says it once)."""
    if not step_id:
        return text
    again = f"step '{step_id}': "
    if text.startswith(again):
        return text[len(again):]
    failed = f"step '{step_id}' failed: "
    if text.startswith(failed + again):
        return failed + text[len(failed + again):]
    return text


def _job_step_error(text: str) -> str:
    """A run's error ``JOB.STEP: message``, without a repeated ``step 'STEP': ``."""
    where, sep, rest = text.partition(": ")
    if sep and "." in where and " " not in where:
        return f"{where}: {step_error(where.rsplit('.', 1)[1], rest)}"
    return text


def _first_line(text: str) -> str:
    first, _, more = text.partition("\n")
    return first + (" …" if more.strip() else "")


def _indent_rest(text: str, indent: str) -> str:
    """Continuation lines of a multi-line message under ``indent`` (their own indentation kept)."""
    return text.replace("\n", "\n" + indent)


def _first_lines(text: str, n: int = 12) -> str:
    parts = text.splitlines()
    if len(parts) <= n:
        return text
    return "\n".join(parts[:n]) + f"\n    … {len(parts) - n} more line(s)"


def _interrupted(reason: Any) -> bool:
    """A job or step stopped by SIGTERM/SIGINT or the run's timeout (recorded FAILED with the
    reason ``interrupted (...)``), not one that failed by itself."""
    return isinstance(reason, str) and reason.startswith("interrupted (")


def _jobs_summary(jobs: Mapping[str, Any], reasons: Mapping[str, Any] | None = None) -> str:
    counts: dict[str, int] = {}
    for job, status in jobs.items():
        s = "INTERRUPTED" if str(status) == "FAILED" and _interrupted((reasons or {}).get(job)) else str(status)
        counts[s] = counts.get(s, 0) + 1
    return ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no jobs"


def plan_lines(plan: Sequence[Mapping[str, Any]], run_id: str) -> list[str]:
    lines = [f"plan for run {run_id} (dry run, nothing executed):"]
    for row in plan:
        deps = f" after {', '.join(row['depends_on'])}" if row["depends_on"] else ""
        lines.append(f"  job {row['job']}{deps}: {row['action']}")
        for s in row["steps"]:
            lines.append(f"    step {s['id']} ({s['type']}): {s['action']}")
    return lines


def progress_text(ev: Event) -> str | None:
    """The ``-v`` progress line for a job/step event (None: not shown)."""
    n = ev.name
    d = ev.data
    where = ".".join(x for x in (ev.job_id, ev.step_id) if x)
    if n == "step.started":
        return f"start  {where} (attempt {ev.attempt})"
    if n == "step.finished":
        return f"done   {where} {d.get('status')} outcome={d.get('outcome')} in {duration(d.get('duration'))}"
    if n == "step.failed":
        return f"FAIL   {where}: " + _indent_rest(step_error(ev.step_id, _first_lines(str(d.get('error')), 3)), "       ")
    if n == "step.retry":
        err = step_error(ev.step_id, _first_lines(str(d.get("error")), 2))
        return f"retry  {where} after attempt {ev.attempt} in {d.get('delay')}s: " + _indent_rest(err, "       ")
    if n == "step.waiting":
        return f"wait   {where}"
    if n in ("job.skipped", "job.blocked"):
        return f"{n.split('.')[1]:<6} {where}: {d.get('reason')}"
    if n == "job.finished":
        return f"job    {where} {d.get('status')}"
    if n in ("run.started", "run.resumed"):
        return f"{n.replace('.', ' ')} {ev.run_id}"
    return None


class ArtifactWatch:
    """The files a step wrote under its job's artifacts directory (for ``-v``): the directory
    (``artifacts`` of ``job.started``: the layout's name for it) is listed when the step starts
    and again when it ends; new or changed files are the step's. At most ``limit`` files are
    looked at."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._dirs: dict[tuple[str, str], str] = {}
        self._before: dict[tuple[str, str, str], dict[str, tuple[int, int]]] = {}

    def written(self, ev: Event) -> list[str]:
        """Paths (absolute, sorted) a step wrote, on its end event; ``[]`` otherwise."""
        n = ev.name
        if n == "job.started" and ev.job_id and ev.data.get("artifacts"):
            self._dirs[(ev.run_id, ev.job_id)] = str(ev.data["artifacts"])
            return []
        if not (ev.job_id and ev.step_id):
            return []
        key = (ev.run_id, ev.job_id, ev.step_id)
        where = self._dirs.get((ev.run_id, ev.job_id))
        if where is None:
            return []
        if n == "step.started":
            self._before[key] = self._listing(where)
            return []
        if n in ("step.finished", "step.failed", "step.waiting"):
            before = self._before.pop(key, None)
            if before is None:
                return []
            return sorted(p for p, stamp in self._listing(where).items() if before.get(p) != stamp)
        return []

    def _listing(self, top: str) -> dict[str, tuple[int, int]]:
        from pathlib import Path

        from aetherflow.workspace import list_files

        return {str(f.path): (f.mtime_ns, f.bytes) for f in list_files(Path(top), self.limit)}


class ProgressLines:
    """Observer printing one plain line per job/step event (``-v``), and under a step's end the
    files it wrote to its job's artifacts directory."""

    def __init__(self, stream: IO[str], mask: Any = None) -> None:
        self.stream = stream
        self.artifacts = ArtifactWatch()

    def __call__(self, ev: Event) -> None:
        written = self.artifacts.written(ev)
        line = progress_text(ev)
        if line is None:
            return
        self.stream.write(line + "\n" + "".join(f"       wrote {p}\n" for p in written))
        self.stream.flush()


class ProgressJsonLines:
    """Observer for ``-v --log-format json``: the events ``ProgressLines`` shows, each as one
    JSON line: the event's own fields (as in the events log) plus ``level`` and ``message``."""

    LEVELS = {"step.failed": "error", "job.blocked": "error", "step.retry": "warning"}

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.artifacts = ArtifactWatch()

    def __call__(self, ev: Event) -> None:
        written = self.artifacts.written(ev)
        line = progress_text(ev)
        if line is None:
            return
        record: dict[str, Any] = {**ev.as_dict(), "level": self.LEVELS.get(ev.name, "info"), "message": line}
        if written:
            record["artifacts_written"] = written
        self.stream.write(dumps_line(record) + "\n")
        self.stream.flush()


def steps_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """``steps list``: one line per step type, with the first sentence of its summary (never
    cut mid-sentence; the whole summary is in ``--json`` and ``steps show``) and its source."""
    import re

    name_width = max((len(r["type"]) for r in rows), default=0)
    lines = []
    for r in rows:
        summary = r["description"] or ""
        first = re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", summary, maxsplit=1)[0]
        lines.append(f"{r['type'].ljust(name_width)}  {first}  [{r['source']}]".replace("   [", "  ["))
    return "\n".join(lines)


def _table(head: Sequence[str], data: Sequence[Sequence[Any]]) -> str:
    widths = [max(len(str(x[i])) for x in (head, *data)) for i in range(len(head))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                     for row in (head, *data))


def locks_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """``locks list``: one held lock a line under a header."""
    if not rows:
        return "no locks held"
    data = [(r["lock"], r["kind"], r["run_id"] or "-", r["pid"], r["host"], local_time(r["since"])) for r in rows]
    return _table(("LOCK", "KIND", "RUN ID", "PID", "HOST", "SINCE"), data)


def runs_table(rows: Iterable[Mapping[str, Any]]) -> str:
    rows = list(rows)
    if not rows:
        return "no runs"
    head = ("RUN ID", "FLOW", "STATUS", "STARTED", "DURATION", "HOST", "KEY")
    data = [
        (r["run_id"], r["flow_id"], r["status"], local_time(r.get("created_at")), duration(r.get("duration")),
         r.get("host") or "", r.get("business_key") or "")
        for r in rows
    ]
    return _table(head, data)


def run_show_text(doc: Mapping[str, Any]) -> str:
    r = doc["run"]
    lines = [
        f"run {r['run_id']}  flow {r['flow_id']}  {r['status']}",
        f"  file {r['flow_file']} (sha256 {str(r['flow_sha256'])[:12]})",
        f"  started {local_time(r.get('created_at'))}  finished {local_time(r.get('finished_at'))}  attempt {r['attempt']}  pid {r.get('pid')} on {r.get('host')}",
    ]
    if r.get("business_key"):
        lines.append(f"  key {r['business_key']}")
    if r.get("params"):
        lines.append(f"  params {json.dumps(r['params'], ensure_ascii=False, default=str)}")
    if r.get("tags"):
        lines.append(f"  tags {', '.join(r['tags'])}")
    for field, label in (("flow_metadata", "flow metadata"), ("meta", "meta"), ("runtime_metadata", "runtime metadata")):
        if r.get(field):
            lines.append(f"  {label} {json.dumps(r[field], ensure_ascii=False, default=str, sort_keys=True)}")
    if r.get("error"):
        lines.append(f"  error {_first_line(_job_step_error(r['error']))}")
    if r.get("cancel_reason"):
        lines.append(f"  cancel reason {r['cancel_reason']}")
    for j in doc["jobs"]:
        reason = f" — {_first_line(_job_step_error_of_job(j['reason']))}" if j.get("reason") else ""
        lines.append(f"  job {j['job_id']}: {j['status']}{reason}")
        lines.extend(_workspace_lines(j))
        for s in j["steps"]:
            dur = duration(s["finished_at"] - s["started_at"]) if s.get("finished_at") and s.get("started_at") else "-"
            extra = []
            if s.get("attempt"):
                extra.append(f"attempt {s['attempt']}")
            if s.get("outcome"):
                extra.append(f"outcome {s['outcome']}")
            extra.append(dur)
            lines.append(f"    step {s['step_id']}: {s['status']} ({', '.join(extra)})")
            if s.get("reason"):
                lines.append(f"      reason: {s['reason']}")
            if s.get("error"):
                lines.append("      error: " + _indent_rest(step_error(s["step_id"], _first_lines(s["error"], 8)), "        "))
            if s.get("outputs"):
                out = json.dumps(s["outputs"], ensure_ascii=False, default=str)
                lines.append(f"      outputs: {out if len(out) < 400 else out[:400] + '…'}")
            if s.get("metadata"):
                meta = json.dumps(s["metadata"], ensure_ascii=False, default=str, sort_keys=True)
                lines.append(f"      metadata: {meta if len(meta) < 400 else meta[:400] + '…'}")
            for a in s.get("attempts", []):
                if a["attempt"] == s.get("attempt") and a.get("error") in (None, s.get("error")):
                    continue  # the step's own line and error above say it
                err = f": {_first_line(step_error(s['step_id'], a['error']))}" if a.get("error") else ""
                lines.append(f"      attempt {a['attempt']} {a['status']}{err}")
    for w in doc.get("waits", []):
        lines.append(f"  waiting: {w['job_id']}.{w['step_id']} for {', '.join(w['events']) or 'timer'} due {local_time(w.get('due_at'))}")
    return "\n".join(lines)


def _job_step_error_of_job(reason: str) -> str:
    """A job's reason ``step 'ID' failed: ...`` without the step named twice."""
    if reason.startswith("step '"):
        step_id = reason[len("step '"):].partition("'")[0]
        return step_error(step_id, reason)
    return reason


def _workspace_lines(job: Mapping[str, Any]) -> list[str]:
    ws = job.get("workspace")
    if not ws:
        return []
    import os

    lines = [f"    workspace {ws}" + ("" if os.path.isdir(ws) else " (removed)")]
    for f in job.get("artifacts") or ():
        lines.append(f"      {f['path']} ({f['bytes']} bytes)")
    return lines


def history_text(events: Iterable[Event]) -> str:
    lines = []
    for e in events:
        where = ".".join(x for x in (e.job_id, e.step_id) if x)
        att = f" #{e.attempt}" if e.attempt else ""
        data = f" {json.dumps(thaw(e.data), ensure_ascii=False, default=str)}" if e.data else ""
        lines.append(f"{local_time(e.ts)}  {e.name:<18} {where}{att}{data}")
    return "\n".join(lines) or "no history"


def stderr_console(stream: IO[str], env: Mapping[str, str], *, no_color: bool = False) -> Any:
    """A rich console on ``stream`` that decides, from ``env``, whether it is an interactive
    terminal and whether to colour (``FORCE_COLOR``, ``NO_COLOR`` non-empty, ``TTY_COMPATIBLE``,
    ``TTY_INTERACTIVE``, ``TERM=dumb``); ``no_color`` turns colour off. Untrusted text is never
    markup."""
    from rich.console import Console

    return Console(file=stream, markup=False, highlight=False, emoji=False, no_color=True if no_color else None,
                   _environ=dict(env))


#: status → colour, in the live view and its final table
_STYLES = {"SUCCESS": "green", "FAILED": "red", "BLOCKED": "red", "WAITING": "yellow", "SKIPPED": "dim",
           "RUNNING": "cyan", "CANCELLED": "magenta", "TIMED_OUT": "red", "INTERRUPTED": "red", "CRASHED": "red"}
_DONE = frozenset({"SUCCESS", "FAILED", "SKIPPED", "BLOCKED", "CANCELLED"})


class LiveView:
    """Live terminal view of a run: its id, jobs done of total, the time since it started,
    and each job with its steps under it (status, a spinner while running, elapsed, attempts,
    the last output line or what it waits for). Ends with :meth:`final`, the table of the run
    as ``runs show`` has it. Used only on an interactive terminal (:func:`stderr_console`).
    Untrusted text is never markup."""

    ICONS = {"RUNNING": "…", "SUCCESS": "✓", "FAILED": "✗", "SKIPPED": "↷", "BLOCKED": "⊘", "WAITING": "⏸",
             "CANCELLED": "⊗", "PENDING": "·", "TIMED_OUT": "⏱"}

    def __init__(self, console: Any) -> None:
        import threading

        self.console = console
        self.run_id = ""
        self.started: float | None = None
        #: job id → its row and its steps' rows (step id → row), in the order jobs were first known
        self.jobs: dict[str, dict[str, Any]] = {}
        self._live: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> LiveView:
        from rich.live import Live

        self._live = Live(console=self.console, refresh_per_second=8, transient=True, get_renderable=self._render)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def __call__(self, ev: Event) -> None:
        with self._lock:
            self._apply(ev)

    # state ------------------------------------------------------------------------------------
    @staticmethod
    def _new_row(status: str = "PENDING") -> dict[str, Any]:
        return {"status": status, "start": None, "end": None, "attempt": None, "note": "", "spinner": None}

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            job = self.jobs[job_id] = {**self._new_row(), "steps": {}}
        return job

    def _apply(self, ev: Event) -> None:
        n = ev.name
        d = ev.data
        if n in ("run.started", "run.resumed"):
            self.run_id = ev.run_id
            self.started = ev.ts
            return
        if n == "run.plan":  # every job of the run, in order, and those restored whole
            restored = d.get("restored") or {}
            for jid in d.get("jobs") or ():
                row = self._job(str(jid))
                if jid in restored:
                    row.update(status=str(restored[jid]), note="restored")
            return
        if ev.job_id is None:
            return
        job = self._job(ev.job_id)
        row = job
        if ev.step_id is not None:
            row = job["steps"].get(ev.step_id)
            if row is None:
                row = job["steps"][ev.step_id] = self._new_row()
        if n.endswith(".started"):
            row.update(status="RUNNING", start=ev.ts, end=None, attempt=ev.attempt, note="")
        elif n in ("step.finished", "job.finished"):
            row.update(status=str(d.get("status", "SUCCESS")), end=ev.ts, note=str(d.get("reason") or ""))
            if d.get("outcome") and d.get("outcome") not in ("success",):
                row["note"] = f"outcome {d.get('outcome')}"
        elif n == "step.failed":
            row.update(status="FAILED", end=ev.ts, note=_first(str(d.get("error") or "")))
        elif n == "step.retry":
            row.update(note=f"retry in {d.get('delay')}s after attempt {ev.attempt}")
        elif n == "step.progress":
            if row["status"] == "RUNNING":
                row["note"] = "> " + str(d.get("line", ""))[:70]
        elif n in ("step.waiting", "job.waiting"):
            row.update(status="WAITING", note="waiting" if n == "job.waiting" else _wait_note(d))
        elif n in ("step.skipped", "job.skipped"):
            row.update(status="SKIPPED", end=ev.ts, note=str(d.get("reason") or ""))
        elif n == "job.blocked":
            row.update(status="BLOCKED", end=ev.ts, note=str(d.get("reason") or ""))

    # drawing ----------------------------------------------------------------------------------
    def _icon(self, row: dict[str, Any]) -> Any:
        from rich.spinner import Spinner
        from rich.text import Text

        if row["status"] != "RUNNING":
            row["spinner"] = None
            return Text(self.ICONS.get(row["status"], " "))
        if row["spinner"] is None:  # one spinner per running row, kept: its frame follows the clock
            row["spinner"] = Spinner("dots")
        return row["spinner"]

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            now = time.time()
            done = sum(1 for j in self.jobs.values() if j["status"] in _DONE)
            head = Text(f"run {self.run_id or '…'}  jobs {done}/{len(self.jobs)} done  "
                        f"elapsed {duration(now - self.started) if self.started else '-'}", style="bold")
            t = Table(box=None, show_header=False, pad_edge=False)
            t.add_column("", width=2)
            t.add_column("job / step")
            t.add_column("status")
            t.add_column("time", justify="right")
            t.add_column("")
            for jid, job in self.jobs.items():
                self._add(t, job, Text(jid, style="bold"), now)
                for sid, step in job["steps"].items():
                    self._add(t, step, Text(f"  {sid}"), now)
            return Group(head, t)

    def _add(self, t: Any, row: dict[str, Any], name: Any, now: float) -> None:
        from rich.text import Text

        status = row["status"]
        elapsed = (row["end"] or now) - row["start"] if row["start"] else None
        att = f" (attempt {row['attempt']})" if row["attempt"] and row["attempt"] > 1 else ""
        t.add_row(self._icon(row), name, Text(status + att, style=_STYLES.get(status, "")), Text(duration(elapsed)),
                  Text(row["note"]))

    def final(self, doc: Mapping[str, Any]) -> None:
        """Print the run's table from its ``runs show`` document (the same jobs, steps,
        statuses, attempts and times, in the same order)."""
        self.console.print(run_table(doc))


def run_table(doc: Mapping[str, Any]) -> Any:
    """A rich table of a ``runs show`` document: each job, its steps under it."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    r = doc["run"]
    t = Table(box=None, pad_edge=False)
    t.add_column("", width=2)
    t.add_column("job / step")
    t.add_column("status")
    t.add_column("attempt", justify="right")
    t.add_column("time", justify="right")
    t.add_column("note")
    for row in run_rows(doc):
        status = row["status"]
        name = Text(row["job"], style="bold") if row["step"] is None else Text(f"  {row['step']}")
        t.add_row(Text(LiveView.ICONS.get(status, " ")), name, Text(status, style=_STYLES.get(status, "")),
                  Text(str(row["attempt"] or "")), Text(duration(row["seconds"])), Text(row["note"]))
    title = Text(f"run {r['run_id']}  flow {r['flow_id']}  ", style="bold")
    title.append(str(r["status"]), style=_STYLES.get(str(r["status"]), ""))
    return Group(title, t)


def run_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of :func:`run_table`: one per job, then one per step of it, in ``runs show``
    order (``step`` None on a job's row)."""
    rows: list[dict[str, Any]] = []

    def seconds(x: Mapping[str, Any]) -> float | None:
        return x["finished_at"] - x["started_at"] if x.get("finished_at") and x.get("started_at") else None

    for j in doc["jobs"]:
        rows.append({"job": j["job_id"], "step": None, "status": j["status"], "attempt": None, "seconds": seconds(j),
                     "note": _first(str(j.get("reason") or ""))})
        for s in j["steps"]:
            note = _first(str(s.get("error") or s.get("reason") or ""))
            if not note and s.get("outcome") not in (None, "success", "skipped"):
                note = f"outcome {s['outcome']}"
            rows.append({"job": j["job_id"], "step": s["step_id"], "status": s["status"], "attempt": s.get("attempt") or None,
                         "seconds": seconds(s), "note": note})
    return rows


def _first(text: str, width: int = 80) -> str:
    return text.splitlines()[0][:width] if text else ""


def _wait_note(d: Mapping[str, Any]) -> str:
    parts = []
    if d.get("events"):
        parts.append("event " + " or ".join(d["events"]))
    if d.get("due_at"):
        parts.append(("retry at " if d.get("kind") == "retry" else "until ") + local_time(d["due_at"]))
    return "waits for " + ", ".join(parts) if parts else "waiting"
