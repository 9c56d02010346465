"""aetherflow-core's commands take the flow as ``--flow-yaml FILE``; validate, doctor, explain
and graph accept it as run does (and say so when it is given twice or not at all)."""

from __future__ import annotations

import json

import pytest

FLOW = """
version: 1
flow:
  id: spelled
jobs:
  - id: only
    steps:
      - id: noop
        type: noop
"""


@pytest.mark.parametrize("command", ["validate", "doctor", "explain", "graph"])
def test_commands_take_flow_yaml(af, write_flow, command: str) -> None:
    flow = write_flow(FLOW)
    positional = af(command, flow)
    assert positional.exit_code == 0, positional.stderr
    res = af(command, "--flow-yaml", flow)
    assert res.exit_code == 0, res.stderr
    assert res.stdout == positional.stdout
    other = write_flow(FLOW.replace("spelled", "other"), name="other.yaml")
    res = af(command, flow, "--flow-yaml", other)
    assert res.exit_code == 2 and "give the flow file once: FLOW or --flow-yaml, not both" in res.stderr
    res = af(command)
    assert res.exit_code == 2 and f"missing FLOW: aetherflow {command} FLOW.yaml" in res.stderr
    assert "Traceback" not in res.stderr


def test_validate_json_with_flow_yaml(af, write_flow) -> None:
    flow = write_flow(FLOW)
    res = af("validate", "--flow-yaml", flow, "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["flow_id"] == "spelled"
