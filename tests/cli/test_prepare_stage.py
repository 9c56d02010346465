"""Everything a run needs is resolved before anything is recorded (prepare.py): a missing value
in a resource, a profile or a flow setting is exit 2, named, and the flow's store is not even
created."""

from __future__ import annotations

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
        flow: {id: s, state: {path: "flowstate/{{ env.AF_TEST_MISSING_STATE }}/state.db"}}
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


#: what each case's refusal says (``{flow}``: the flow file)
MESSAGES = {
    "resource": "{flow}:4:50: template.missing_env: environment variable 'AF_TEST_MISSING_DB' is not set, and "
                "'{{{{ env.AF_TEST_MISSING_DB }}}}' has no default (at resources.db.config.path)",
    "workspace": "aetherflow: {flow}: error[template.missing]: flow.workspace.root: template path "
                 "'env.AF_TEST_MISSING_ROOT' not found",
    "state": "aetherflow: {flow}: error[template.missing]: flow.state.path: template path 'env.AF_TEST_MISSING_STATE' "
             "not found",
    "profiles": "aetherflow: error[resolve.profiles_unreadable]: profiles file {dir}/no-such-profiles.yaml: "
                "No such file or directory",
}


@pytest.mark.parametrize("case", sorted(FLOWS))
def test_nothing_is_recorded_when_resolution_fails(cli: Callable[..., object], write_flow: Callable[..., Path],
                                                   case: str, home: Path) -> None:
    flow = write_flow(FLOWS[case])
    res = cli("run", str(flow))
    assert res.exit_code == 2, res.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in res.stderr  # type: ignore[attr-defined]
    want = MESSAGES[case].format(flow=flow, dir=flow.parent)
    assert want in res.stderr.splitlines(), res.stderr  # type: ignore[attr-defined]
    # the flow's own store (state.path: a directory beside the flow file), nor the default one
    for store in (flow.parent / "flowstate", home / "state.db"):
        assert not store.exists(), f"{store} was created for a run that never started"
def test_a_missing_workspace_root_value_names_the_setting(cli: Callable[..., object], write_flow: Callable[..., Path]) -> None:
    flow = write_flow(FLOWS["workspace"])
    res = cli("run", str(flow))
    assert "flow.workspace.root" in res.stderr and "env.AF_TEST_MISSING_ROOT" in res.stderr  # type: ignore[attr-defined]
