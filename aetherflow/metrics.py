"""Prometheus metrics as a textfile-collector file (SPEC section 13), rewritten atomically after
every run from what the stores hold, so every run, resume and sweep leaves it current.

Per flow (label ``flow``), from every store this machine uses (the ``state`` setting, or each
store in ``<home>/stores``):

- ``aetherflow_last_run_status{flow,status}``: 1 for the status of the flow's newest run (CRASHED
  for a run whose process is gone), 0 for every other status;
- ``aetherflow_last_run_timestamp_seconds``: when the newest run started;
- ``aetherflow_last_run_duration_seconds``: how long it ran (so far, while it runs);
- ``aetherflow_last_success_timestamp_seconds``: when the newest successful run finished
  (absent before the first success);
- ``aetherflow_runs{flow,status}``: runs recorded with each status (a gauge: pruning lowers it);
- ``aetherflow_step_failures``: step attempts recorded FAILED (retries included), a gauge too;

and ``aetherflow_metrics_timestamp_seconds``: when the file was written. The file is written to
a temporary file beside it, made readable by everyone (0644, so the node exporter can read it),
fsynced and renamed over the old one: a scrape never sees half a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aetherflow.model import RunStatus
from aetherflow.state.catalog import StoreCatalog
from aetherflow.state.store import FlowSummary, shown_status
from aetherflow.workspace import atomic_open

__all__ = ["FlowMetrics", "collect", "textfile", "write_textfile"]

#: every status a run can show, each with a series in aetherflow_last_run_status
SHOWN_STATUSES = tuple(s.value for s in RunStatus)


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowMetrics:
    summary: FlowSummary
    last_status: str | None  # as shown: CRASHED for a RUNNING run whose process is gone


def collect(catalog: StoreCatalog) -> list[FlowMetrics]:
    """Every flow of every store of ``catalog`` (a flow in two stores: the newest last run
    wins, counts add up)."""
    by_flow: dict[str, FlowMetrics] = {}
    for store in catalog.stores():
        for s in store.flow_summaries():
            last = shown_status(store, s.last_run) if s.last_run is not None else None
            found = by_flow.get(s.flow_id)
            if found is not None:
                s, last = _merge(found, s, last)
            by_flow[s.flow_id] = FlowMetrics(summary=s, last_status=last)
    return [by_flow[f] for f in sorted(by_flow)]


def _merge(a: FlowMetrics, b: FlowSummary, b_last: str | None) -> tuple[FlowSummary, str | None]:
    counts = dict(a.summary.runs_by_status)
    for k, n in b.runs_by_status.items():
        counts[k] = counts.get(k, 0) + n
    newer_b = b.last_run is not None and (a.summary.last_run is None or b.last_run.created_at > a.summary.last_run.created_at)
    successes = [t for t in (a.summary.last_success_at, b.last_success_at) if t is not None]
    from aetherflow.model import freeze

    merged = FlowSummary(flow_id=b.flow_id, runs_by_status=freeze(counts),
                         last_run=b.last_run if newer_b else a.summary.last_run,
                         last_success_at=max(successes) if successes else None,
                         step_failures=a.summary.step_failures + b.step_failures)
    return merged, (b_last if newer_b else a.last_status)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def textfile(flows: Sequence[FlowMetrics], now: float) -> str:
    """The text exposition format (version 0.0.4) of ``flows``."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{{{labels}}} {_num(value)}" if labels else f"{name} {_num(value)}" for labels, value in samples)

    def fl(m: FlowMetrics, **more: str) -> str:
        labels = {"flow": m.summary.flow_id, **more}
        return ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())

    family("aetherflow_last_run_status", "gauge", "1 for the status of the flow's newest run, 0 for the others.",
           [(fl(m, status=s), 1.0 if m.last_status == s else 0.0) for m in flows if m.summary.last_run for s in SHOWN_STATUSES])
    family("aetherflow_last_run_timestamp_seconds", "gauge", "When the flow's newest run started (Unix time).",
           [(fl(m), _started(m)) for m in flows if m.summary.last_run])
    family("aetherflow_last_run_duration_seconds", "gauge", "How long the flow's newest run ran (so far, if it runs).",
           [(fl(m), _duration(m, now)) for m in flows if m.summary.last_run])
    family("aetherflow_last_success_timestamp_seconds", "gauge", "When the flow's newest successful run finished (Unix time).",
           [(fl(m), float(m.summary.last_success_at)) for m in flows if m.summary.last_success_at is not None])
    family("aetherflow_runs", "gauge", "Runs of the flow recorded in the store, by stored status.",
           [(fl(m, status=s), float(n)) for m in flows for s, n in sorted(m.summary.runs_by_status.items())])
    family("aetherflow_step_failures", "gauge", "Step attempts of the flow's recorded runs that failed (retries included).",
           [(fl(m), float(m.summary.step_failures)) for m in flows])
    family("aetherflow_metrics_timestamp_seconds", "gauge", "When aetherflow wrote this file (Unix time).", [("", now)])
    return "\n".join(out) + "\n"


def _started(m: FlowMetrics) -> float:
    r = m.summary.last_run
    assert r is not None
    return float(r.started_at or r.created_at)


def _duration(m: FlowMetrics, now: float) -> float:
    r = m.summary.last_run
    assert r is not None
    start = r.started_at or r.created_at
    end = r.finished_at or (now if r.status == RunStatus.RUNNING else r.updated_at) or now
    return max(0.0, float(end - start))


def write_textfile(path: str | os.PathLike[str], catalog: StoreCatalog, clock: Callable[[], float]) -> Path:
    """Collect and write the file atomically (0644). Raises ``OSError`` when it cannot be
    written (the caller reports it; a run is never affected)."""
    text = textfile(collect(catalog), clock())
    target = Path(path)
    with atomic_open(target, "w", encoding="utf-8", newline="") as fh:
        os.fchmod(fh.fileno(), 0o644)
        fh.write(text)
    return target
