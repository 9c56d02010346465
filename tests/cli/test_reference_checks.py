"""What a flow refers to is checked before anything runs: undeclared params and secrets and
unknown resources fail `validate` and `run` (exit 2, nothing recorded), also next to schema
problems; an env variable read without a default must be set for `run`, is listed by `doctor`
and is a warning of `validate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REFERENCES = """
version: 1
flow:
  id: refs
  params:
    date: {{type: string, default: "2026-11-20"}}
secrets:
  token: {{env: AF_TEST_TOKEN}}
resources:
  shop: {{kind: db, driver: sqlite3, config: {{path: shop.db}}}}
jobs:
  - id: a
    steps:
      - id: touch
        type: external.process
        inputs: {{command: [touch, "{marker}"]}}
      - id: s
        type: external.process
        inputs:
          command: [echo, "{{{{ params.day }}}}"]
          env: {{TOKEN: "{{{{ secrets.tokn }}}}"}}
      - id: q
        type: db_query
        inputs: {{resource: shpo, sql: "SELECT 1"}}
"""


@pytest.mark.parametrize("command", ["validate", "run"])
def test_undeclared_params_secrets_and_resources_exit_2_before_anything_runs(cli, write_flow, tmp_path: Path,
                                                                              command: str) -> None:
    marker = tmp_path / "ran"
    flow = write_flow(REFERENCES.format(marker=marker))
    res = cli(command, str(flow), env={"AF_TEST_TOKEN": "tok-123"})
    assert res.exit_code == 2, res.stderr
    name = str(flow)
    assert f"{name}:19:27: template.unknown_param: 'params.day' refers to parameter 'day'" in res.stderr
    assert "hint: declare it under flow.params, e.g. 'day: {type: string}', or use a declared one" in res.stderr
    assert f"{name}:20:24: template.unknown_secret: 'secrets.tokn'" in res.stderr
    assert "hint: did you mean 'token'?" in res.stderr
    assert f"{name}:23:28: flow.unknown_resource: resource 'shpo'" in res.stderr
    assert "hint: did you mean 'shop'?" in res.stderr
    assert res.stderr.rstrip().endswith("3 problems found")
    assert not marker.exists()
    assert cli("runs", "list").stdout.strip() == "no runs"


def test_reference_problems_are_reported_with_schema_problems(cli, write_flow) -> None:
    flow = write_flow("""
        version: 1
        flow:
          id: both
          retries: 3
        jobs:
          - id: a
            steps:
              - {id: s, type: db_query, inputs: {resource: warehouse, sql: "SELECT {{ params.n }}"}}
    """)
    res = cli("validate", str(flow), "--json")
    assert res.exit_code == 2
    codes = sorted((i["code"], i["line"], i["column"]) for i in json.loads(res.stdout)["issues"])
    assert codes == [("flow.unknown_resource", 8, 52), ("schema.additional_property", 4, 3),
                     ("template.unknown_param", 8, 68)]


ENV_FLOW = """
version: 1
flow:
  id: envs
  params:
    day: {{type: string, default: "{{{{ env.AF_TEST_DAY }}}}"}}
resources:
  shop: {{kind: db, driver: sqlite3, config: {{path: "{{{{ env.AF_TEST_SHOP_DB }}}}"}}}}
jobs:
  - id: a
    steps:
      - id: touch
        type: external.process
        inputs: {{command: [touch, "{marker}"]}}
      - id: s
        type: external.process
        inputs: {{command: [echo, "{{{{ env.AF_TEST_REGION }}}}", "{{{{ env.AF_TEST_OPTIONAL: }}}}"]}}
"""


def test_run_refuses_unset_env_variables_before_anything_runs(cli, write_flow, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    flow = write_flow(ENV_FLOW.format(marker=marker))
    res = cli("run", str(flow))
    assert res.exit_code == 2
    name = str(flow)
    lines = [ln for ln in res.stderr.splitlines() if "template.missing_env" in ln]
    assert [ln.split(": template")[0] for ln in lines] == [f"{name}:5:34", f"{name}:7:52", f"{name}:16:34"]
    assert "environment variable 'AF_TEST_REGION' is not set" in res.stderr
    hint = "    hint: set AF_TEST_REGION (in the environment, a flow.env_files file or --env-file)"
    assert any(line.startswith(hint) for line in res.stderr.splitlines()), res.stderr
    assert "AF_TEST_OPTIONAL" not in res.stderr  # it has a default (empty)
    assert "PATH" not in res.stderr  # the hint names the missing variable, not the environment's
    assert not marker.exists()
    assert cli("runs", "list").stdout.strip() == "no runs"
    # a param given on the command line does not need its default's variable
    res = cli("run", str(flow), "--param", "day=2026-11-20", env={"AF_TEST_SHOP_DB": "x.db"})
    assert res.exit_code == 2
    assert "AF_TEST_DAY" not in res.stderr and "AF_TEST_REGION" in res.stderr
    env = {"AF_TEST_DAY": "d", "AF_TEST_SHOP_DB": str(tmp_path / "x.db"), "AF_TEST_REGION": "north"}
    res = cli("run", str(flow), env=env)
    assert res.exit_code == 0, res.stderr
    assert marker.exists()


def test_only_the_selected_jobs_need_their_variables(cli, write_flow) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: sel}
        jobs:
          - id: a
            steps: [{id: s, type: noop, inputs: {x: "{{ env.AF_TEST_UNSET_A }}"}}]
          - id: b
            steps: [{id: s, type: noop, inputs: {x: "{{ env.AF_TEST_UNSET_B }}"}}]
    """)
    res = cli("run", str(flow), "--job", "b", env={"AF_TEST_UNSET_B": "1"})
    assert res.exit_code == 0, res.stderr


def test_doctor_reports_and_validate_warns_about_unset_variables(cli, write_flow, tmp_path: Path) -> None:
    flow = write_flow(ENV_FLOW.format(marker=tmp_path / "ran"))
    res = cli("doctor", str(flow))
    assert res.exit_code == 2
    assert "FAIL env vars: missing: AF_TEST_DAY, AF_TEST_REGION, AF_TEST_SHOP_DB" in res.stdout
    res = cli("validate", str(flow))
    assert res.exit_code == 0
    assert res.stdout.strip() == f"{flow}: ok (flow envs, 1 job(s), 2 step(s))"
    assert f"{flow}:16:34: warning: template.missing_env: environment variable 'AF_TEST_REGION'" in res.stderr
    assert res.stderr.rstrip().endswith("3 warnings")
    doc = json.loads(cli("validate", str(flow), "--json").stdout)
    assert doc["ok"] is True and doc["issues"] == []
    assert [(w["code"], w["line"], w["column"]) for w in doc["warnings"]] == [
        ("template.missing_env", 5, 34), ("template.missing_env", 7, 52), ("template.missing_env", 16, 34)]
    env = {"AF_TEST_DAY": "d", "AF_TEST_SHOP_DB": "x.db", "AF_TEST_REGION": "north"}
    res = cli("validate", str(flow), env=env)
    assert res.exit_code == 0 and res.stderr == ""
