"""aetherflow-core flows write explicit nulls for optional fields (``when:`` with nothing after
it) and rely on ``{{ env.X:default }}`` taking the default when X is set but empty."""

from __future__ import annotations

import json

from support import job_doc, step_doc

FLOW = """
version: 1

flow:
  id: nulls_and_defaults
  description: null
  workspace:
    root: "{{env.AETHERFLOW_WORK_ROOT:work}}"

resources:
  db:
    kind: db
    driver: sqlite3
    profile: null
    config:
      path: "{{env.DB_PATH:demo.sqlite}}"

jobs:
  - id: probe
    description:
    when:
    steps:
      - id: check
        type: check_items
        on_no_data: null
        inputs:
          items: "{{env.ITEMS:a,b}}"
        outputs:
          count: "{{ result.count }}"
      - id: query
        type: db_query
        description: ~
        inputs:
          resource: db
          sql: "select 1 as one"
"""


def test_explicit_nulls_and_empty_env_defaults(af, write_flow, shown, tmp_path) -> None:
    flow = write_flow(FLOW)
    env = {"AETHERFLOW_WORK_ROOT": "", "DB_PATH": "", "ITEMS": ""}  # set, but empty: the defaults apply
    res = af("validate", flow, env=env)
    assert res.exit_code == 0, res.stderr
    res = af("run", flow, "--json", env=env, cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    doc = shown(json.loads(res.stdout)["run_id"])
    assert job_doc(doc, "probe")["outputs"] == {"count": 2}
    assert step_doc(doc, "probe", "query")["outputs"]["rows"] == [{"one": 1}]
    assert (tmp_path / "demo.sqlite").is_file() and (tmp_path / "work" / "nulls_and_defaults").is_dir()
