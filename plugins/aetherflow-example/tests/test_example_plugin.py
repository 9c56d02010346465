"""Tests of the example plugin as an installed package: flows run through `python -m aetherflow`
in a subprocess, so the `aetherflow.plugins` entry point is the real one."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest


def _installed() -> str | None:
    """None when the distribution and its entry point are installed, else why not."""
    try:
        dist = metadata.distribution("aetherflow-example")
    except metadata.PackageNotFoundError:
        return "aetherflow-example is not installed (pip install ./plugins/aetherflow-example)"
    if not any(ep.group == "aetherflow.plugins" for ep in dist.entry_points):
        return "aetherflow-example is installed without its aetherflow.plugins entry point; reinstall it"
    return None


pytestmark = pytest.mark.skipif(_installed() is not None, reason=_installed() or "")

FLOW_HEAD = """\
version: 1
flow:
  id: kv_demo
resources:
  kv:
    kind: kv
    driver: sqlite
    config: {path: "{{ env.EXAMPLE_KV_PATH }}"}
"""


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("AETHERFLOW_", "EXAMPLE_"))}
    e.update(
        AETHERFLOW_HOME=str(tmp_path / "home"),
        HOME=str(tmp_path / "userhome"),
        EXAMPLE_KV_PATH=str(tmp_path / "kv.sqlite"),
    )
    return e


@pytest.fixture
def af(env: dict[str, str], tmp_path: Path) -> Callable[..., Result]:
    def run(*args: str, extra: dict[str, str] | None = None) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "aetherflow", *args],
            capture_output=True, text=True, env={**env, **(extra or {})}, cwd=tmp_path, timeout=120,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def flow(tmp_path: Path) -> Callable[[str], str]:
    def write(jobs: str, head: str = FLOW_HEAD) -> str:
        p = tmp_path / "flow.yaml"
        p.write_text(head + textwrap.dedent(jobs).lstrip("\n"), encoding="utf-8")
        return str(p)

    return write


def kv_rows(env: dict[str, str]) -> dict[str, object]:
    with sqlite3.connect(env["EXAMPLE_KV_PATH"]) as conn:
        return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM kv ORDER BY key")}


def show(af: Callable[..., Result], run_id: str) -> dict[str, dict[str, object]]:
    res = af("runs", "show", run_id, "--json")
    assert res.code == 0, res.stderr
    doc = json.loads(res.stdout)
    return {j["job_id"]: {**j, "steps": {s["step_id"]: s for s in j["steps"]}} for j in doc["jobs"]}


def run_json(af: Callable[..., Result], *args: str, extra: dict[str, str] | None = None) -> tuple[Result, dict[str, object]]:
    res = af("run", *args, "--json", extra=extra)
    return res, json.loads(res.stdout)


def test_steps_list_names_the_plugin_as_source(af: Callable[..., Result]) -> None:
    res = af("steps", "list", "--json")
    assert res.code == 0, res.stderr
    doc = json.loads(res.stdout)
    rows = {r["type"]: r for r in doc["steps"]}
    for name in ("example.kv_put", "example.kv_get", "example.kv_scan", "example.classify", "example.greet"):
        assert "aetherflow-example" in rows[name]["source"], rows[name]
    assert rows["example.classify"]["outcomes"] == ["success", "skipped", "small", "large"]
    assert "kv:sqlite" in doc["connectors"]
    assert not [p for p in doc["plugins"] if p["error"]]


def test_put_get_and_outcome_route_the_small_case(af, flow, env) -> None:
    path = flow("""
        jobs:
          - id: record
            steps:
              - id: put
                type: example.kv_put
                inputs: {key: amount, value: 42}
              - id: get
                type: example.kv_get
                inputs: {key: amount}
                outputs: {amount: "{{ result.value }}"}
          - id: route
            depends_on: [record]
            steps:
              - id: size
                type: example.classify
                inputs: {value: "{{ jobs.record.outputs.amount }}", threshold: 100}
                on_outcome: {small: complete_job}
              - id: flag
                type: example.kv_put
                inputs: {key: review, value: "{{ jobs.record.outputs.amount }}"}
        """)
    res, doc = run_json(af, path)
    assert res.code == 0, res.stderr
    assert doc["jobs"] == {"record": "SUCCESS", "route": "SUCCESS"}
    assert kv_rows(env) == {"amount": 42}  # `flag` never ran: the small outcome completed the job
    jobs = show(af, doc["run_id"])
    assert jobs["record"]["outputs"] == {"amount": 42}
    assert jobs["route"]["steps"]["size"]["outcome"] == "small"
    assert jobs["route"]["steps"]["flag"]["status"] == "SKIPPED"


def test_large_outcome_continues_and_scan_exports_atomically(af, flow, env) -> None:
    path = flow("""
        jobs:
          - id: route
            steps:
              - id: size
                type: example.classify
                inputs: {value: 250}
                on_outcome: {small: complete_job, large: continue}
              - id: flag
                type: example.kv_put
                inputs: {key: "review/{{ run_id }}", value: 250}
              - id: pending
                type: example.kv_scan
                inputs: {prefix: "review/"}
                outputs: {file: "{{ result.path }}", count: "{{ result.count }}"}
        """)
    res, doc = run_json(af, path)
    assert res.code == 0, res.stderr
    run_id = doc["run_id"]
    assert kv_rows(env) == {f"review/{run_id}": 250}
    job = show(af, run_id)["route"]
    assert job["steps"]["size"]["outcome"] == "large"
    assert job["outputs"]["count"] == 1
    export = Path(str(job["outputs"]["file"]))
    assert export.parent.name == "artifacts" and run_id in export.parts
    assert json.loads(export.read_text()) == {f"review/{run_id}": 250}
    assert [p.name for p in export.parent.iterdir()] == ["pending.json"]  # no temp file left behind


def test_scan_with_nothing_to_do_is_skipped_with_reason(af, flow, env) -> None:
    path = flow("""
        jobs:
          - id: export
            steps:
              - id: pending
                type: example.kv_scan
                inputs: {prefix: "review/"}
                on_no_data: skip_job
              - id: after
                type: example.kv_put
                inputs: {key: exported, value: true}
          - id: later
            depends_on: [export]
            steps:
              - {id: noop, type: noop}
        """)
    res, doc = run_json(af, path, "--detailed-exitcode")
    assert res.code == 4, res.stderr  # every job SKIPPED
    assert doc["jobs"] == {"export": "SKIPPED", "later": "SKIPPED"}
    assert doc["reasons"]["export"] == "no keys under prefix 'review/'"
    step = show(af, doc["run_id"])["export"]["steps"]["pending"]
    assert step["status"] == "SKIPPED" and step["outputs"]["has_data"] is False
    assert not Path(env["EXAMPLE_KV_PATH"]).exists() or kv_rows(env) == {}


def test_core_style_step_runs_unchanged(af, flow) -> None:
    path = flow("""
        jobs:
          - id: hello
            steps:
              - id: greet
                type: example.greet
                inputs: {name: ops}
        """)
    res, doc = run_json(af, path)
    assert res.code == 0, res.stderr
    outputs = show(af, doc["run_id"])["hello"]["steps"]["greet"]["outputs"]
    assert outputs == {"greeting": "hello, ops", "run_id": doc["run_id"]}


def test_core_style_required_inputs_fail_the_step(af, flow) -> None:
    path = flow("""
        jobs:
          - id: hello
            steps:
              - {id: greet, type: example.greet, inputs: {}}
        """)
    res, doc = run_json(af, path)
    assert res.code == 1
    assert "missing inputs: name" in doc["failed_steps"][0]["error"]


def test_missing_key_fails_then_resume_does_not_repeat_the_put(af, flow, env) -> None:
    path = flow("""
        jobs:
          - id: copy
            steps:
              - id: put
                type: example.kv_put
                inputs: {key: a, value: 1}
              - id: get
                type: example.kv_get
                inputs: {key: b}
        """)
    res, doc = run_json(af, path)
    assert res.code == 1
    assert "key 'b' is not in resource 'kv'" in res.stderr
    with sqlite3.connect(env["EXAMPLE_KV_PATH"]) as conn:
        conn.execute("INSERT INTO kv (key, value, updated_at) VALUES ('b', '2', 0)")
    res = af("resume", doc["run_id"])
    assert res.code == 0, res.stderr
    steps = show(af, doc["run_id"])["copy"]["steps"]
    assert [a["attempt"] for a in steps["put"]["attempts"]] == [1]  # SUCCESS is never re-executed
    assert steps["get"]["outputs"] == {"found": True, "key": "b", "value": 2}


def test_validate_checks_plugin_inputs_and_outcomes(af, flow) -> None:
    path = flow("""
        jobs:
          - id: route
            steps:
              - id: size
                type: example.classify
                inputs: {value: lots}
                on_outcome: {huge: fail}
        """)
    res = af("validate", path)
    assert res.code == 2
    assert f"{path}:14:25: inputs.type:" in res.stderr, res.stderr  # the `lots` of `value: lots`
    assert f"{path}:15:22: flow.unknown_outcome:" in res.stderr, res.stderr


def test_observer_appends_events_only_when_asked(af, flow, tmp_path: Path) -> None:
    path = flow("""
        jobs:
          - id: hello
            steps:
              - {id: greet, type: example.greet, inputs: {name: ops}}
        """)
    log = tmp_path / "events.jsonl"
    res, doc = run_json(af, path)
    assert res.code == 0 and not log.exists()
    res, doc = run_json(af, path, extra={"AETHERFLOW_EXAMPLE_EVENTS": str(log)})
    assert res.code == 0, res.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert {e["run_id"] for e in events} == {doc["run_id"]}
    names = [e["event"] for e in events]
    assert names[0] == "run.started" and names[-1] == "run.finished"
    assert names.count("step.started") == 1 and names.count("step.finished") == 1


def test_connector_is_idempotent_and_translates_errors(tmp_path: Path) -> None:
    from aetherflow_example.kv import MISSING, KvSqliteConnector

    from aetherflow.core.api import ConnectorError

    kv = KvSqliteConnector("kv", {"path": str(tmp_path / "sub" / "kv.sqlite")}, {})
    try:
        assert kv.get("x") is MISSING and kv.get("x", 0) == 0
        assert kv.put("x", {"n": 1}, written_by="r/j/s") is True
        assert kv.put("x", {"n": 1}) is False  # same value again: nothing changes
        kv.put("x/1", [1]), kv.put("y", "z")
        assert kv.scan("x") == {"x": {"n": 1}, "x/1": [1]}
        assert kv.scan("%") == {}  # a prefix, not a LIKE pattern
        assert kv.delete("y") is True and kv.delete("y") is False
    finally:
        kv.close()
    with pytest.raises(ConnectorError, match="needs config.path"):
        KvSqliteConnector("kv", {}, {})
    (tmp_path / "dir.sqlite").mkdir()
    bad = KvSqliteConnector("kv", {"path": str(tmp_path / "dir.sqlite")}, {})
    with pytest.raises(ConnectorError, match="cannot open") as info:
        bad.get("x")
    assert isinstance(info.value.__cause__, Exception)
