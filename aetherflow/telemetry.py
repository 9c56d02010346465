"""OpenTelemetry traces (SPEC section 13): a span per run, job and step, from the run's events.
Optional: ``pip install 'aetherflow[otel]'``; nothing here is imported without it.

Configured by the standard ``OTEL_*`` variables. Tracing is on when a tracer provider is
already installed in the process (an application embedding aetherflow), or when the
environment names an exporter: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``; ``none`` turns
it off) or an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``). ``OTEL_SDK_DISABLED=true`` turns it off;
``OTEL_SERVICE_NAME`` (default ``aetherflow``) and ``OTEL_RESOURCE_ATTRIBUTES`` name the
service. The OTLP exporter is the HTTP one (``opentelemetry-exporter-otlp-proto-http``); the
console exporter writes to stderr (stdout carries results only).

Spans: ``run <flow>`` (attributes ``aetherflow.flow_id``, ``aetherflow.run_id``,
``aetherflow.status``...), a child ``job <job>`` per job and a grandchild ``step <job>.<step>``
per step attempt (``aetherflow.attempt``, ``aetherflow.step_type``, ``aetherflow.outcome``). A
failed step's span has status ERROR and its (masked) error as the status description.
Attributes come from the run's events, which are masked before any observer sees them, and
never include outputs or params: no secret reaches a span.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from aetherflow.events import Event

__all__ = ["SpanObserver", "tracer_provider"]

_RUN_END = frozenset({"run.finished", "run.waiting", "run.interrupted", "run.cancelled", "run.timed_out"})
_JOB_END = frozenset({"job.finished", "job.skipped", "job.blocked", "job.waiting"})
_STEP_END = frozenset({"step.finished", "step.failed", "step.skipped", "step.waiting", "step.retry"})


def _enabled(env: Mapping[str, str]) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def tracer_provider(env: Mapping[str, str], stderr: Any) -> tuple[Any, bool] | None:
    """The tracer provider to use and whether this process made it (then the caller shuts it
    down at exit, which flushes the spans); ``None`` when tracing is off. Raises
    ``ImportError`` when the environment asks for tracing and the ``otel`` extra is missing."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if not _enabled(env):
        try:
            from opentelemetry import trace
        except ImportError:
            return None
        current = trace.get_tracer_provider()
        # an application (or a test) installed an SDK provider: use it, it is theirs to flush
        return (current, False) if hasattr(current, "add_span_processor") else None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    attrs = {}
    if not env.get("OTEL_SERVICE_NAME") and "service.name=" not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attrs["service.name"] = "aetherflow"
    provider = TracerProvider(resource=Resource.create(attrs))
    exporters = [e.strip().lower() for e in (env.get("OTEL_TRACES_EXPORTER") or "otlp").split(",") if e.strip()]
    for name in exporters:
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=stderr)))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            raise ImportError(f"OTEL_TRACES_EXPORTER={name!r}: aetherflow supports otlp, console and none")
    return provider, True


class SpanObserver:
    """An observer turning one command's events into spans (runs, their jobs, their steps)."""

    def __init__(self, provider: Any) -> None:
        from aetherflow import __version__

        self._tracer = provider.get_tracer("aetherflow", __version__)
        self._lock = threading.Lock()
        self._runs: dict[str, Any] = {}
        self._jobs: dict[tuple[str, str], Any] = {}
        self._steps: dict[tuple[str, str, str], Any] = {}

    def __call__(self, ev: Event) -> None:
        with self._lock:
            self._apply(ev)

    def _start(self, name: str, parent: Any, ts: float, attrs: dict[str, Any]) -> Any:
        from opentelemetry import trace

        ctx = trace.set_span_in_context(parent) if parent is not None else None
        return self._tracer.start_span(name, context=ctx, start_time=int(ts * 1e9),
                                       attributes={k: v for k, v in attrs.items() if v is not None})

    def _apply(self, ev: Event) -> None:
        from opentelemetry.trace import Status, StatusCode

        d = ev.data
        n = ev.name
        if n in ("run.started", "run.resumed") and ev.run_id not in self._runs:
            self._runs[ev.run_id] = self._start(f"run {ev.flow_id}", None, ev.ts, {
                "aetherflow.flow_id": ev.flow_id, "aetherflow.run_id": ev.run_id,
                "aetherflow.resumed": n == "run.resumed", "aetherflow.attempt": d.get("attempt")})
            return
        run = self._runs.get(ev.run_id)
        if run is None:
            return
        if n == "job.started" and ev.job_id:
            self._jobs[(ev.run_id, ev.job_id)] = self._start(f"job {ev.job_id}", run, ev.ts, {"aetherflow.job_id": ev.job_id})
        elif n == "step.started" and ev.job_id and ev.step_id:
            parent = self._jobs.get((ev.run_id, ev.job_id), run)
            self._steps[(ev.run_id, ev.job_id, ev.step_id)] = self._start(
                f"step {ev.job_id}.{ev.step_id}", parent, ev.ts,
                {"aetherflow.job_id": ev.job_id, "aetherflow.step_id": ev.step_id, "aetherflow.attempt": ev.attempt,
                 "aetherflow.step_type": d.get("type")})
        elif n in _STEP_END and ev.job_id and ev.step_id:
            span = self._steps.pop((ev.run_id, ev.job_id, ev.step_id), None)
            if span is None:
                return
            status = {"step.failed": "FAILED", "step.retry": "FAILED", "step.waiting": "WAITING",
                      "step.skipped": "SKIPPED"}.get(n, str(d.get("status") or "SUCCESS"))
            span.set_attribute("aetherflow.status", status)
            if d.get("outcome"):
                span.set_attribute("aetherflow.outcome", str(d.get("outcome")))
            if status == "FAILED":
                span.set_status(Status(StatusCode.ERROR, str(d.get("error") or "")[:1000]))
            span.end(end_time=int(ev.ts * 1e9))
        elif n in _JOB_END and ev.job_id:
            span = self._jobs.pop((ev.run_id, ev.job_id), None)
            if span is None:  # a job that never started (skipped, blocked): a zero-length span
                span = self._start(f"job {ev.job_id}", run, ev.ts, {"aetherflow.job_id": ev.job_id})
            status = {"job.skipped": "SKIPPED", "job.blocked": "BLOCKED", "job.waiting": "WAITING"}.get(
                n, str(d.get("status") or "SUCCESS"))
            span.set_attribute("aetherflow.status", status)
            if status in ("FAILED", "BLOCKED"):
                span.set_status(Status(StatusCode.ERROR, str(d.get("reason") or "")[:1000]))
            span.end(end_time=int(ev.ts * 1e9))
        elif n in _RUN_END:
            status = str(d.get("status") or n.removeprefix("run.").upper())
            for step_key in [k for k in self._steps if k[0] == ev.run_id]:
                self._steps.pop(step_key).end(end_time=int(ev.ts * 1e9))
            for job_key in [k for k in self._jobs if k[0] == ev.run_id]:
                self._jobs.pop(job_key).end(end_time=int(ev.ts * 1e9))
            span = self._runs.pop(ev.run_id)
            span.set_attribute("aetherflow.status", status)
            if status in ("FAILED", "INTERRUPTED", "TIMED_OUT"):
                span.set_status(Status(StatusCode.ERROR, str(d.get("error") or status)[:1000]))
            span.end(end_time=int(ev.ts * 1e9))

    def close(self) -> None:
        """End what is still open (a run stopped by an error before its end event)."""
        with self._lock:
            for span in [*self._steps.values(), *self._jobs.values(), *self._runs.values()]:
                span.end()
            self._steps.clear()
            self._jobs.clear()
            self._runs.clear()
