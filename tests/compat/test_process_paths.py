"""external.process written as aetherflow-core's docs/22-external-process-step.md shows it:
relative paths (atomic_dir folders, marker_file, require_glob, marker_path, log.file_path) are
relative to the job's artifacts directory, so a marker written there is found and the command
does not run again; ``workspace.layout`` renames the job directory's sub-directories."""

from __future__ import annotations

import json
from pathlib import Path

from support import step_doc


def test_relative_paths_and_layout(af, reference, shown, tmp_path: Path) -> None:
    d = reference("process_paths")
    work = tmp_path / "work"
    env = {"AETHERFLOW_WORK_ROOT": str(work)}
    res = af("validate", d / "flow.yaml", env=env)
    assert res.exit_code == 0, res.stderr
    res = af("run", d / "flow.yaml", "--json", env=env)
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    doc = shown(run_id)
    job = work / "process_paths" / "export" / run_id
    assert sorted(p.name for p in job.iterdir()) == ["data", "loads.txt", "meta", "tmp"]  # the layout's names
    data = job / "data"
    publish = step_doc(doc, "export", "publish")["outputs"]
    assert publish["target_dir"] == str(data / "out" / "final")
    assert (data / "out" / "final" / "part-0.csv").read_text() == "exported\n"
    assert not (data / "out" / ".tmp_run").exists()
    load = step_doc(doc, "export", "load")["outputs"]
    assert load["log_file"] == str(data / "logs" / "load.log") and load["marker_path"] == str(data / "flags" / "loaded")
    again = step_doc(doc, "export", "load_again")["outputs"]
    assert again["idempotent_skip"] is True and again["marker_path"] == str(data / "flags" / "loaded")
    assert (job / "loads.txt").read_text() == "load\n"  # the marker was found: the command ran once


def test_layout_is_checked(af, write_flow) -> None:
    for layout, problem in (("{logs: x}", "schema.additional_property"), ("{artifacts: ../x}", "schema.pattern")):
        flow = write_flow(f"""
            version: 1
            flow: {{id: bad_layout, workspace: {{layout: {layout}}}}}
            jobs:
              - id: a
                steps:
                  - {{id: s, type: noop}}
            """)
        res = af("validate", flow)
        assert res.exit_code == 2 and problem in res.stderr and "workspace.layout" in res.stderr, res.stderr
