"""aetherflow-core's environment variables: AETHERFLOW_PROFILES_JSON is read; AETHERFLOW_LOG_FORMAT
and AETHERFLOW_LOG_LEVEL give its event lines (run_start ... run_summary with status_counts) that
log parsers key on; the variables aetherflow does not read are named, with what replaces them."""

from __future__ import annotations

import json

import pytest

FLOW = """
version: 1

flow:
  id: logged

resources:
  db:
    kind: db
    driver: sqlite3
    profile: local

jobs:
  - id: probe
    steps:
      - id: check
        type: check_items
        inputs:
          items: [a]
        outputs:
          has_data: "{{ result.has_data }}"
      - id: query
        type: db_query
        inputs:
          resource: db
          sql: "select 1 as one"

  - id: extract
    depends_on: [probe]
    when: jobs.probe.outputs.has_data == false
    steps:
      - id: never
        type: noop
"""


@pytest.fixture
def profiles_env(tmp_path) -> dict[str, str]:
    return {"AETHERFLOW_PROFILES_JSON": json.dumps({"local": {"config": {"path": str(tmp_path / "logged.sqlite")}}})}


def test_profiles_json_is_read(af, write_flow, profiles_env, tmp_path) -> None:
    flow = write_flow(FLOW)
    res = af("run", flow, env=profiles_env)
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "logged.sqlite").is_file()
    both = {**profiles_env, "AETHERFLOW_PROFILES_FILE": str(tmp_path / "profiles.yaml")}
    res = af("run", flow, env=both)
    assert res.exit_code == 2 and "set AETHERFLOW_PROFILES_JSON or AETHERFLOW_PROFILES_FILE, not both" in res.stderr
    res = af("run", flow, env={"AETHERFLOW_PROFILES_JSON": '{"local": {"confg": {}}}'})
    assert res.exit_code == 2 and "$AETHERFLOW_PROFILES_JSON:1:" in res.stderr and "confg" in res.stderr


def test_core_event_lines_in_json(af, write_flow, profiles_env) -> None:
    flow = write_flow(FLOW)
    res = af("run", flow, "--json", env={**profiles_env, "AETHERFLOW_LOG_FORMAT": "json"})
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]  # stdout keeps its one document
    lines = [json.loads(line) for line in res.stderr.splitlines()]  # every stderr line is JSON
    core = [rec for rec in lines if "ts_ms" in rec]
    assert [(r["event"], r.get("job_id"), r.get("step_id")) for r in core] == [
        ("run_start", None, None),
        ("job_start", "probe", None),
        ("step_start", "probe", "check"), ("step_end", "probe", "check"),
        ("step_start", "probe", "query"), ("step_end", "probe", "query"),
        ("job_end", "probe", None),
        ("run_summary", None, None),
    ]
    assert all(r["flow_id"] == "logged" and r["run_id"] == run_id and isinstance(r["ts_ms"], int) for r in core)
    assert core[0]["yaml"] == str(flow)
    assert core[2]["step_type"] == "check_items" and core[3]["status"] == "SUCCESS" and core[3]["duration_ms"] >= 0
    assert core[6]["status"] == "SUCCESS" and core[6]["skip_reason"] is None
    summary = core[-1]
    assert summary["status_counts"] == {"SUCCESS": 1, "SKIPPED": 1}
    assert [(j["job_id"], j["status"], [s["step_id"] for s in j["steps"]]) for j in summary["jobs"]] == [
        ("probe", "SUCCESS", ["check", "query"]), ("extract", "SKIPPED", [])]
    assert summary["jobs"][1]["skip_reason"] == "condition false"


def test_core_event_lines_in_text_and_levels(af, write_flow, profiles_env) -> None:
    flow = write_flow(FLOW)
    res = af("run", flow, env={**profiles_env, "AETHERFLOW_LOG_FORMAT": "text"})
    assert res.exit_code == 0, res.stderr
    events = [line.split(" ", 1)[0] for line in res.stderr.splitlines()]
    assert events[0] == "run_start" and events[-1] == "run_summary" and "step_end" in events
    assert "status_counts={'SUCCESS': 1, 'SKIPPED': 1}" in res.stderr.splitlines()[-1]
    for quiet in ({"AETHERFLOW_LOG_LEVEL": "ERROR"}, {"AETHERFLOW_LOG_LEVEL": "WARNING"}):
        res = af("run", flow, env={**profiles_env, "AETHERFLOW_LOG_FORMAT": "json", **quiet})
        assert res.exit_code == 0 and res.stderr == "", res.stderr
    res = af("run", flow, "-q", env={**profiles_env, "AETHERFLOW_LOG_FORMAT": "json"})
    assert res.exit_code == 0 and res.stderr == ""
    res = af("run", flow, env={**profiles_env, "AETHERFLOW_LOG_LEVEL": "INFO"})  # -v: progress lines
    assert res.exit_code == 0 and "done   probe.check SUCCESS" in res.stderr


@pytest.mark.parametrize("variable", ["AETHERFLOW_SECRETS_MODULE", "AETHERFLOW_SECRETS_PATH", "AETHERFLOW_ENV_FILES_JSON",
                                      "AETHERFLOW_VALIDATE_ENV_STRICT"])
def test_variables_not_read_are_named(af, write_flow, profiles_env, variable: str) -> None:
    flow = write_flow(FLOW)
    env = {**profiles_env, variable: "x"}
    warning = f"{variable} is set but aetherflow does not read it (aetherflow-core setting): "
    for args in (("run", flow), ("validate", flow)):
        res = af(*args, env=env)
        assert res.exit_code == 0, res.stderr
        assert f"warning: {warning}" in res.stderr
    res = af("doctor", flow, env=env)
    assert res.exit_code == 2 and f"FAIL aetherflow-core setting: {warning}" in res.stdout
    res = af("run", flow, "-q", env=env)
    assert res.exit_code == 0 and res.stderr == ""
    res = af("run", flow, env=profiles_env)
    assert res.exit_code == 0 and res.stderr == ""  # nothing set, nothing said
