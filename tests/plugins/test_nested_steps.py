"""``register_step(..., nested=[...])``: a plugin step that runs nested steps itself gets them
checked by ``validate`` like the flow's own steps (type, inputs, no waiting step inside), and
runs them through ``ctx.invoke`` with ``ctx.locks`` bound to its job and step."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

PLUGIN = """
from aetherflow.api import STEP_SUCCESS, Step, StepResult, register_step


@register_step("acme.twice", nested=["step"], inputs_schema={
    "type": "object", "properties": {"step": {"type": "object"}, "key": {"type": "string"}},
    "required": ["step"], "additionalProperties": False})
class Twice(Step):
    '''Run the nested step twice under a lock.'''

    def run(self, ctx, inputs):
        lock = ctx.locks.acquire(inputs.get("key", "twice"), 0)
        try:
            first = ctx.invoke(ctx, inputs["step"], 0)
            second = ctx.invoke(ctx, inputs["step"], 1)
        finally:
            ctx.locks.release(lock)
        return StepResult(STEP_SUCCESS, {"runs": [dict(first.outputs), dict(second.outputs)]})
"""


def _setup(tmp_path: Path, write_flow, nested: str) -> tuple[Path, Path]:
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "twice.py").write_text(textwrap.dedent(PLUGIN).lstrip("\n"), encoding="utf-8")
    flow = write_flow(f"""
        version: 1
        flow: {{id: nest}}
        jobs:
          - id: main
            steps:
              - id: t
                type: acme.twice
                inputs:
                  step: {nested}
        """)
    return d, flow


def test_nested_step_runs_and_its_lock_is_recorded(af, write_flow, tmp_path: Path) -> None:
    d, flow = _setup(tmp_path, write_flow, "{type: noop, inputs: {n: 1}}")
    res = af("run", flow, "--plugin-path", d, "--json")
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    shown = json.loads(af("runs", "show", run_id, "--json", "--history").stdout)
    assert shown["jobs"][0]["steps"][0]["outputs"] == {"runs": [{"n": 1}, {"n": 1}]}
    acquired = [e for e in shown["history"] if e["event"] == "lock.acquired"]
    assert [(e["job_id"], e["step_id"], e["data"]["lock"]) for e in acquired] == [("main", "t", "twice")]


def test_validate_checks_nested_steps_of_a_plugin_step(af, write_flow, tmp_path: Path) -> None:
    d, flow = _setup(tmp_path, write_flow, "{type: nope}")
    res = af("validate", flow, "--plugin-path", d)
    assert res.exit_code == 2
    assert "flow.unknown_step_type" in res.stderr and "jobs[0].steps[0].inputs.step.type" in res.stderr


def test_a_waiting_step_cannot_be_nested_in_a_plugin_step(af, write_flow, tmp_path: Path) -> None:
    d, flow = _setup(tmp_path, write_flow, "{type: wait_for_event, inputs: {events: [go]}}")
    res = af("validate", flow, "--plugin-path", d)
    assert res.exit_code == 2
    assert "flow.wait_in_lock" in res.stderr and "cannot run nested in 'acme.twice'" in res.stderr
