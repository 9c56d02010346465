"""The Prometheus textfile (parsed with prometheus_client's own parser) and OpenTelemetry spans
(the SDK's in-memory exporter; the console exporter through the OTEL_* variables)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

OK = """
version: 1
flow: {id: daily_sales}
jobs:
  - id: a
    steps:
      - {id: s, type: noop}
"""
BAD = """
version: 1
flow: {id: hourly}
secrets: {pw: {env: TRACE_PW}}
jobs:
  - id: a
    steps:
      - {id: ok, type: noop}
      - id: boom
        type: external.process
        retry: {max_attempts: 2, initial_delay_seconds: 0, jitter: false}
        inputs: {command: [sh, -c, 'echo "pw {{ secrets.pw }}" >&2; exit 2']}
"""


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_the_textfile_after_every_run(cli, write_flow, tmp_path: Path) -> None:
    prom = tmp_path / "textfile" / "aetherflow.prom"
    assert cli("run", str(write_flow(OK, name="ok.yaml")), "--metrics-textfile", str(prom)).exit_code == 0
    first = samples(prom)
    assert first[("aetherflow_last_run_status", (("flow", "daily_sales"), ("status", "SUCCESS")))] == 1
    assert first[("aetherflow_last_run_status", (("flow", "daily_sales"), ("status", "FAILED")))] == 0
    assert first[("aetherflow_runs", (("flow", "daily_sales"), ("status", "SUCCESS")))] == 1
    success_at = first[("aetherflow_last_success_timestamp_seconds", (("flow", "daily_sales"),))]
    assert success_at > 1_600_000_000
    res = cli("run", str(write_flow(BAD, name="bad.yaml")), "--metrics-textfile", str(prom), env={"TRACE_PW": "x"})
    assert res.exit_code == 1
    m = samples(prom)
    assert m[("aetherflow_last_run_status", (("flow", "hourly"), ("status", "FAILED")))] == 1
    assert m[("aetherflow_step_failures", (("flow", "hourly"),))] == 2  # both attempts
    assert m[("aetherflow_step_failures", (("flow", "daily_sales"),))] == 0
    assert ("aetherflow_last_success_timestamp_seconds", (("flow", "hourly"),)) not in m
    assert m[("aetherflow_last_run_duration_seconds", (("flow", "hourly"),))] >= 0
    assert m[("aetherflow_last_success_timestamp_seconds", (("flow", "daily_sales"),))] == success_at
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644  # the node exporter reads it as another user
    assert sorted(p.name for p in prom.parent.iterdir()) == ["aetherflow.prom"]  # no temp file left


def test_the_textfile_from_the_config_file_and_resume_due(cli, write_flow, home: Path, tmp_path: Path) -> None:
    prom = tmp_path / "m.prom"
    (home).mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f'[metrics]\ntextfile = "{prom}"\n')
    flow = write_flow("""
        version: 1
        flow: {id: gate}
        jobs:
          - id: a
            steps:
              - {id: w, type: wait_for_event, inputs: {events: [go]}}
        """)
    run_id = json.loads(cli("run", str(flow), "--json").stdout)["run_id"]
    assert samples(prom)[("aetherflow_last_run_status", (("flow", "gate"), ("status", "WAITING")))] == 1
    assert cli("resume", run_id, "--event", "go").exit_code == 0
    assert samples(prom)[("aetherflow_last_run_status", (("flow", "gate"), ("status", "SUCCESS")))] == 1


def test_an_unwritable_textfile_is_reported_and_the_run_is_unaffected(cli, write_flow, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    res = cli("run", str(write_flow(OK)), "--metrics-textfile", str(blocker / "x.prom"), "--json")
    assert res.exit_code == 0
    assert f"warning: metrics textfile {blocker / 'x.prom'}: cannot write it" in res.stderr
    assert json.loads(res.stdout)["status"] == "SUCCESS"


# OpenTelemetry ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exporter():
    """The SDK's in-memory exporter behind the process's tracer provider (set once per process,
    as an application embedding aetherflow would)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not hasattr(provider, "add_span_processor"):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


def test_spans_for_the_run_its_jobs_and_steps(cli, write_flow, exporter) -> None:
    exporter.clear()
    res = cli("run", str(write_flow(BAD)), "--json", env={"TRACE_PW": "sp4n-secret"})
    assert res.exit_code == 1
    run_id = json.loads(res.stdout)["run_id"]
    spans = {(s.name, s.attributes.get("aetherflow.attempt")): s for s in exporter.get_finished_spans()
             if s.attributes.get("aetherflow.run_id", run_id) == run_id}
    run = spans[("run hourly", 1)]
    job = spans[("job a", None)]
    ok = spans[("step a.ok", 1)]
    boom1, boom2 = spans[("step a.boom", 1)], spans[("step a.boom", 2)]
    assert run.parent is None and run.attributes["aetherflow.status"] == "FAILED"
    assert job.parent.span_id == run.context.span_id
    assert {s.parent.span_id for s in (ok, boom1, boom2)} == {job.context.span_id}
    assert {s.context.trace_id for s in (run, job, ok, boom1, boom2)} == {run.context.trace_id}
    assert ok.attributes["aetherflow.status"] == "SUCCESS" and ok.attributes["aetherflow.step_type"] == "noop"
    assert boom2.status.status_code.name == "ERROR" and "pw ***" in boom2.status.description
    everything = repr([(s.name, dict(s.attributes), s.status.description) for s in exporter.get_finished_spans()])
    assert "sp4n-secret" not in everything


def test_the_console_exporter_from_otel_variables(af, write_flow) -> None:
    res = af("run", write_flow(OK), env={"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "batch-host-1"})
    assert res.exit_code == 0
    assert res.stdout == ""  # spans go to stderr: stdout carries results only
    assert '"name": "run daily_sales"' in res.stderr and '"name": "step a.s"' in res.stderr
    assert '"service.name": "batch-host-1"' in res.stderr


def test_otel_variables_without_the_extra_are_a_warning(af, write_flow, tmp_path: Path) -> None:
    # a site directory whose `opentelemetry` cannot be imported stands for an install without the extra
    fake = tmp_path / "site"
    (fake / "opentelemetry").mkdir(parents=True)
    (fake / "opentelemetry" / "__init__.py").write_text("raise ImportError('no opentelemetry here')\n")
    env = {"OTEL_TRACES_EXPORTER": "console", "PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    res = af("run", write_flow(OK), env=env)
    assert res.exit_code == 0
    assert "OpenTelemetry is configured (OTEL_*) but cannot be used" in res.stderr
    assert "pip install 'aetherflow[otel]'" in res.stderr
