"""Everything a run needs is resolved before anything is recorded (prepare.py): a missing value
in a resource, a profile or a flow setting is exit 2 with no run in the store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

FLOWS = {
    "resource": """
        version: 1
        flow: {id: r}
        resources:
          db: {kind: db, driver: sqlite3, config: {path: "{{ env.AF_TEST_MISSING_DB }}"}}
        jobs:
          - id: j
            steps: [{id: s, type: noop}]
    """,
    "workspace": """
        version: 1
        flow: {id: w, workspace: {root: "{{ env.AF_TEST_MISSING_ROOT }}"}}
        jobs:
          - id: j
            steps: [{id: s, type: noop}]
    """,
    "state": """
        version: 1
        flow: {id: s, state: {path: "{{ env.AF_TEST_MISSING_STATE }}/state.db"}}
        jobs:
          - id: j
            steps: [{id: s, type: noop}]
    """,
    "profiles": """
        version: 1
        flow: {id: p, profiles_file: no-such-profiles.yaml}
        jobs:
          - id: j
            steps: [{id: s, type: noop}]
    """,
}


@pytest.mark.parametrize("case", sorted(FLOWS))
def test_nothing_is_recorded_when_resolution_fails(cli: Callable[..., object], write_flow: Callable[..., Path],
                                                   case: str) -> None:
    flow = write_flow(FLOWS[case])
    res = cli("run", str(flow))
    assert res.exit_code == 2, res.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in res.stderr  # type: ignore[attr-defined]
    listed = cli("runs", "list", "--json")
    assert json.loads(listed.stdout)["runs"] == []  # type: ignore[attr-defined]


def test_a_missing_workspace_root_value_names_the_setting(cli: Callable[..., object], write_flow: Callable[..., Path]) -> None:
    flow = write_flow(FLOWS["workspace"])
    res = cli("run", str(flow))
    assert "flow.workspace.root" in res.stderr and "env.AF_TEST_MISSING_ROOT" in res.stderr  # type: ignore[attr-defined]
