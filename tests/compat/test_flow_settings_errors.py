"""A flow whose workspace root or state path names an unset variable is a usage error (exit 2)
with nothing recorded; ``run --run-id`` of a changed flow says which command continues it."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("field", ["workspace: {root: \"{{ env.WORK_BASE }}/work\"}",
                                   "state: {backend: sqlite, path: \"{{ env.STATE_BASE }}/state.db\"}"])
def test_missing_variable_in_workspace_root_or_state_path(af, write_flow, field: str) -> None:
    flow = write_flow(f"""
        version: 1
        flow:
          id: rooted
          {field}
        jobs:
          - id: a
            steps:
              - {{id: s, type: noop}}
        """)
    res = af("run", flow)
    what = "flow.workspace.root" if "workspace" in field else "flow.state.path"
    var = "WORK_BASE" if "workspace" in field else "STATE_BASE"
    assert res.exit_code == 2, res.stderr
    assert f"{what}: template path 'env.{var}' not found" in res.stderr
    assert "Traceback" not in res.stderr
    listed = af("runs", "list", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout)["runs"] == []  # nothing was recorded


def test_run_run_id_of_a_changed_flow_names_the_command(af, write_flow) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: changing}
        jobs:
          - id: a
            steps:
              - {id: s, type: external.process, inputs: {command: ["false"]}}
        """)
    res = af("run", flow, "--run-id", "r-changing-1")
    assert res.exit_code == 1
    flow.write_text(flow.read_text().replace('["false"]', '["true"]'), encoding="utf-8")
    res = af("run", flow, "--run-id", "r-changing-1")
    assert res.exit_code == 2 and "changed since run r-changing-1 started" in res.stderr
    assert "`aetherflow resume r-changing-1 --accept-changes` continues with the new file" in res.stderr
    res = af("resume", "r-changing-1", "--accept-changes")
    assert res.exit_code == 0, res.stderr
