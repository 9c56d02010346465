"""Flows in the shapes of aetherflow-core's quickstart and its skipping-and-gating guide, run as
written: a state file named by flow.state.path, a probe step with on_no_data: skip_job, a probe
job whose outputs gate later jobs with `when`."""

from __future__ import annotations

import json
from pathlib import Path

from support import job_doc, step_doc


def test_quickstart(af, reference, shown) -> None:
    d = reference("docs_flows")
    assert af("validate", d / "quickstart.yaml").exit_code == 0
    res = af("run", d / "quickstart.yaml", "--json")
    assert res.exit_code == 0, res.stderr
    assert (d / "state" / "greeting.sqlite").is_file()
    doc = shown(json.loads(res.stdout)["run_id"])
    assert step_doc(doc, "greet", "say")["outputs"]["stdout"] == "greetings from the quickstart\n"


def test_gating(af, reference, shown, tmp_path: Path) -> None:
    d = reference("docs_flows")
    env = {"GATING_DB": str(tmp_path / "gating.sqlite")}
    assert af("validate", d / "gating.yaml", env=env).exit_code == 0
    res = af("run", d / "gating.yaml", "--json", env=env)
    assert res.exit_code == 0, res.stderr
    doc = shown(json.loads(res.stdout)["run_id"])
    assert job_doc(doc, "short_circuit")["status"] == "SKIPPED"
    assert step_doc(doc, "short_circuit", "extract")["status"] == "SKIPPED"
    assert job_doc(doc, "probe")["outputs"] == {"has_data": True, "count": 2}
    assert job_doc(doc, "process")["status"] == "SUCCESS"
    assert step_doc(doc, "process", "extract")["outputs"]["rows"] == 1
    skipped = job_doc(doc, "only_when_empty")
    assert skipped["status"] == "SKIPPED" and skipped["reason"] == "condition false"
