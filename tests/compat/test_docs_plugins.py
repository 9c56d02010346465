"""Plugins in the shapes aetherflow-core's docs show (docs/18-plugins.md: the simple folder
example and the step template), loaded from a plugin folder named by
``AETHERFLOW_PLUGIN_PATHS``, plus a step that builds ``StepResult`` positionally in
aetherflow-core's order (status, output, reason)."""

from __future__ import annotations

import json

from support import job_doc, step_doc


def test_simple_folder_example(af, reference, shown) -> None:
    d = reference("docs_simple_folder")
    env = {"AETHERFLOW_PLUGIN_PATHS": str(d / "plugins")}
    assert af("validate", d / "flow.yaml", env=env).exit_code == 0
    res = af("run", d / "flow.yaml", "--json", env=env)
    assert res.exit_code == 0, res.stderr
    doc = shown(json.loads(res.stdout)["run_id"])
    assert step_doc(doc, "main", "hello")["outputs"] == {"greeting": "hello", "flow": "docs_simple_folder"}


def test_step_template_and_positional_step_result(af, reference, shown) -> None:
    d = reference("docs_step_template")
    env = {"AETHERFLOW_PLUGIN_PATHS": str(d / "plugins")}
    res = af("validate", d / "flow.yaml", env=env)
    assert res.exit_code == 0, res.stderr
    res = af("run", d / "flow.yaml", "--json", env=env)
    assert res.exit_code == 0, res.stderr
    doc = shown(json.loads(res.stdout)["run_id"])
    assert step_doc(doc, "echo", "with_value")["outputs"] == {"echo": "hellohello"}
    empty = step_doc(doc, "echo", "empty")
    assert empty["status"] == "SKIPPED" and empty["outputs"] == {"reason": "no value given"}
    gate = step_doc(doc, "probe", "gate")
    assert gate["status"] == "SKIPPED" and gate["reason"] == "nothing to do" and gate["outcome"] == "skipped"
    assert job_doc(doc, "probe")["status"] == "SKIPPED" and step_doc(doc, "probe", "never")["status"] == "SKIPPED"
    full = step_doc(doc, "probe_full", "gate")
    assert full["status"] == "SUCCESS" and full["outcome"] == "success" and full["outputs"] == {"has_data": True, "count": 2}
    assert job_doc(doc, "probe_full")["outputs"] == {"count": 2}
