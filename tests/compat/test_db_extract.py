"""aetherflow-core's single-flow demo shape: a check_items probe gating a db_extract job, a
``db:sqlalchemy`` resource from a profile with pool options, ``{{ result.rows }}`` and
``{{ result.output }}`` promoted, and a query with no rows giving a header-only file."""

from __future__ import annotations

import json
from pathlib import Path

from support import job_doc, step_doc


def test_probe_then_extract(af, reference, shown, tmp_path: Path) -> None:
    d = reference("db_extract")
    work = tmp_path / "work"
    env = {
        "AETHERFLOW_PROFILES_FILE": str(d / "profiles.yaml"),
        "AETHERFLOW_WORK_ROOT": str(work),
        "DEMO_STATE_DIR": str(tmp_path / "state"),
        "DB_URL": f"sqlite:///{tmp_path / 'demo.sqlite'}",
    }
    res = af("validate", d / "flow.yaml", env=env)
    assert res.exit_code == 0, res.stderr
    res = af("run", d / "flow.yaml", "--json", env=env)
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    doc = shown(run_id)
    art = work / "compat_db_extract" / "extract_only" / run_id / "artifacts"
    assert job_doc(doc, "extract_only")["outputs"] == {"rows": 1, "file": str(art / "data.tsv"), "empty_rows": 0}
    assert (art / "data.tsv").read_text() == "COL\n1\n"  # byte for byte what aetherflow-core writes
    nothing = step_doc(doc, "extract_only", "nothing")
    assert nothing["status"] == "SUCCESS" and (art / "empty.tsv").read_text() == "COL\n"
