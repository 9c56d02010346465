"""``register_step(..., inline=True)``: the step runs in the engine's thread, not the step worker,
and behaves like any other step (outputs stored, errors fail the step, retries)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

PLUGIN = """
import threading

from aetherflow.api import STEP_SUCCESS, Step, StepError, StepResult, register_step


@register_step("acme.where_inline", inline=True)
class WhereInline(Step):
    '''Report the thread it ran in.'''

    def run(self, ctx, inputs):
        if inputs.get("fail"):
            raise StepError("asked to fail")
        return StepResult(STEP_SUCCESS, {"thread": threading.current_thread().name})


@register_step("acme.where")
class Where(Step):
    '''Report the thread it ran in.'''

    def run(self, ctx, inputs):
        return StepResult(STEP_SUCCESS, {"thread": threading.current_thread().name})
"""


def _flow(steps: str) -> str:
    return "version: 1\nflow: {id: inl}\njobs:\n  - id: main\n    steps:\n" + textwrap.indent(
        textwrap.dedent(steps).strip("\n"), "      ") + "\n"


def _plugins(tmp_path: Path) -> Path:
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "where.py").write_text(textwrap.dedent(PLUGIN).lstrip("\n"), encoding="utf-8")
    return d


def test_inline_step_runs_in_the_engine_thread_and_others_in_the_worker(af, write_flow, tmp_path: Path) -> None:
    d = _plugins(tmp_path)
    flow = write_flow(_flow("""
        - {id: a, type: acme.where_inline}
        - {id: b, type: acme.where}
        - {id: c, type: noop, inputs: {k: 1}}
        """))
    res = af("run", flow, "--plugin-path", d, "--json")
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    shown = json.loads(af("runs", "show", run_id, "--json").stdout)
    outs = {s["step_id"]: s["outputs"] for s in shown["jobs"][0]["steps"]}
    assert outs["b"]["thread"] == "aetherflow-step"
    assert outs["a"]["thread"] != "aetherflow-step"
    assert outs["c"] == {"k": 1}


def test_inline_step_error_fails_the_step_with_its_message(af, write_flow, tmp_path: Path) -> None:
    d = _plugins(tmp_path)
    flow = write_flow(_flow("""
        - {id: a, type: acme.where_inline, inputs: {fail: true}, retry: {max_attempts: 2, initial_delay_seconds: 0}}
        - {id: b, type: noop}
        """))
    res = af("run", flow, "--plugin-path", d, "--json")
    assert res.exit_code == 1, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    shown = json.loads(af("runs", "show", run_id, "--json").stdout)
    steps = {s["step_id"]: s for s in shown["jobs"][0]["steps"]}
    assert steps["a"]["status"] == "FAILED" and steps["a"]["attempt"] == 2
    assert "asked to fail" in steps["a"]["error"]
    assert "b" not in steps or steps["b"]["status"] == "PENDING", steps.get("b")  # never started
