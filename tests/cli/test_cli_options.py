"""CLI option handling: --log-format values, --state on every command, runs list --status
values, plugin step descriptions in `steps list`, and step output kept off stdout in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

OK_FLOW = """
version: 1
flow: {id: opts}
jobs:
  - id: a
    steps:
      - {id: s, type: noop}
"""

PLUGIN = '''
from aetherflow.api import STEP_SUCCESS, Step, StepResult, register_step


@register_step("opts.undocumented", inputs_schema={"type": "object"})
class Undocumented(Step):
    def run(self, ctx, inputs):
        print("X-printed-by-step")
        return StepResult(STEP_SUCCESS, {})


@register_step("opts.documented", inputs_schema={"type": "object"})
class Documented(Step):
    """Says what it does."""

    def run(self, ctx, inputs):
        return StepResult(STEP_SUCCESS, {})
'''


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    d = tmp_path / "optplugins"
    d.mkdir()
    (d / "opts_steps.py").write_text(PLUGIN, encoding="utf-8")
    return d


@pytest.mark.parametrize("cmd", [["run", "FLOW"], ["resume", "some-run"], ["resume", "--due"]])
def test_unknown_log_format_is_a_usage_error(cli, write_flow, cmd: list[str]) -> None:
    flow = write_flow(OK_FLOW)
    args = [str(flow) if a == "FLOW" else a for a in cmd]
    res = cli(*args, "--log-format", "xml")
    assert res.exit_code == 2, res.stderr
    assert "--log-format" in res.stderr and "text or json" in res.stderr
    assert res.stdout == ""


def test_state_is_accepted_by_every_command(cli, write_flow, tmp_path: Path) -> None:
    flow = write_flow(OK_FLOW)
    db = str(tmp_path / "elsewhere" / "state.db")
    cases = [
        ["validate", str(flow)],
        ["graph", str(flow)],
        ["schema", "flow"],
        ["steps", "list"],
        ["steps", "show", "noop"],
        ["explain", str(flow)],
        ["doctor", str(flow)],
        ["runs", "list"],
    ]
    for args in cases:
        res = cli(*args, "--state", db)
        assert res.exit_code == 0, (args, res.stderr)
        res = cli(*args, env={"AETHERFLOW_STATE": db})
        assert res.exit_code == 0, (args, res.stderr)


@pytest.mark.parametrize("cmd", [["validate"], ["graph"], ["schema"], ["steps", "list"], ["steps", "show"]])
def test_state_help_says_when_it_is_only_accepted(cli, cmd: list[str]) -> None:
    res = cli(*cmd, "--help", env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "--state" in res.stdout
    assert "uniformity" in res.stdout  # documented as accepted but unused, never silently ignored


def test_explain_state_help_is_the_store_one(cli) -> None:
    res = cli("explain", "--help", env={"COLUMNS": "200"})
    assert "--state" in res.stdout and "uniformity" not in res.stdout


def test_runs_list_rejects_an_unknown_status(cli) -> None:
    res = cli("runs", "list", "--status", "BOGUS")
    assert res.exit_code == 2
    for name in ("RUNNING", "SUCCESS", "FAILED", "WAITING", "CANCELLED", "INTERRUPTED", "CRASHED"):
        assert name in res.stderr
    assert "BOGUS" in res.stderr
    assert res.stdout == ""


def test_runs_list_status_is_case_insensitive(cli, write_flow) -> None:
    flow = write_flow(OK_FLOW)
    assert cli("run", str(flow), "--run-id", "case-1").exit_code == 0
    res = cli("runs", "list", "--status", "success", "--json")
    assert res.exit_code == 0, res.stderr
    assert [r["run_id"] for r in json.loads(res.stdout)["runs"]] == ["case-1"]
    res = cli("runs", "list", "--status", "Failed", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["runs"] == []


def test_steps_list_does_not_show_the_base_class_docstring(cli, plugin_path: Path) -> None:
    res = cli("steps", "list", "--plugin-path", str(plugin_path), "--json")
    assert res.exit_code == 0, res.stderr
    rows = {r["type"]: r for r in json.loads(res.stdout)["steps"]}
    assert rows["opts.undocumented"]["description"] is None
    assert rows["opts.documented"]["description"] == "Says what it does."
    text = cli("steps", "list", "--plugin-path", str(plugin_path)).stdout
    assert "Base class" not in text


def test_step_print_goes_to_stderr_in_process(cli, write_flow, plugin_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: opts_print}
        jobs:
          - id: a
            steps:
              - {id: s, type: opts.undocumented}
        """)
    res = cli("run", str(flow), "--plugin-path", str(plugin_path), "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["status"] == "SUCCESS"
    assert "X-printed-by-step" not in res.stdout
    assert "X-printed-by-step" in res.stderr


def test_mask_filter_masks_message_arguments_and_tracebacks() -> None:
    import logging

    from aetherflow.cli.support import MaskFilter

    f = MaskFilter()
    rec = logging.LogRecord("thirdparty", logging.WARNING, __file__, 1, "token %s", ("SEKRET",), None)
    assert f.filter(rec) and rec.getMessage() == "token SEKRET"  # no mask yet: unchanged
    f.set_mask(lambda s: s.replace("SEKRET", "***"))
    assert f.filter(rec)
    assert rec.msg == "token ***" and rec.args is None
    try:
        raise ValueError("bad SEKRET")
    except ValueError:
        import sys

        rec = logging.LogRecord("thirdparty", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    assert f.filter(rec)
    assert rec.exc_text and "SEKRET" not in rec.exc_text and "bad ***" in rec.exc_text
    rec = logging.LogRecord("thirdparty", logging.WARNING, __file__, 1, "two %s %s", ("SEKRET",), None)
    assert f.filter(rec)  # a bad format call neither raises in the caller nor leaks
    assert "SEKRET" not in rec.getMessage() and "***" in rec.getMessage()


def test_setup_logging_keeps_foreign_root_handlers_and_does_not_stack_its_own() -> None:
    import logging

    from aetherflow.cli.support import setup_logging

    root = logging.getLogger()
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    try:
        setup_logging(0, False)
        setup_logging(1, False, "json")
        ours = [h for h in root.handlers if type(h).__name__ == "_StderrHandler"]
        assert len(ours) == 1 and foreign in root.handlers
    finally:
        root.removeHandler(foreign)
