"""aetherflow-core's demo layout: a plugin folder with ``__init__.py``, a helper module the steps
import by name, ``steps/`` and ``connectors/`` sub-folders without ``__init__.py``; steps in its
style (``run(self)``, ``self.ctx.artifacts_dir(self.job_id)``, a dict returned), a
``ConnectorBase`` connector, a profile with a nested decode map, the plugin folder and profiles
given by ``AETHERFLOW_PLUGIN_PATHS`` (comma-separated, as there) and ``AETHERFLOW_PROFILES_FILE``."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

from support import job_doc, step_doc


def test_demo_layout_runs_end_to_end(af, reference, shown, tmp_path: Path) -> None:
    d = reference("demo_layout")
    work, state = tmp_path / "work", tmp_path / "state"
    (tmp_path / "shared_plugins").mkdir()
    env = {
        "AETHERFLOW_PLUGIN_PATHS": f"{d / 'plugins'},{tmp_path / 'shared_plugins'}",
        "AETHERFLOW_PROFILES_FILE": str(d / "profiles.yaml"),
        "AETHERFLOW_WORK_ROOT": str(work),
        "DEMO_STATE_DIR": str(state),
        "DEMO_TOKEN": base64.b64encode(b"Bearer demo-token").decode(),
    }
    flow = d / "flows" / "demo_local.yaml"
    res = af("validate", flow, env=env)
    assert res.exit_code == 0, res.stderr
    res = af("run", flow, "--json", env=env)
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    assert (state / "compat_demo_local.sqlite").is_file()  # flow.state.path, as the flow says
    doc = shown(run_id)
    assert job_doc(doc, "pipeline")["status"] == "SUCCESS" and job_doc(doc, "report")["status"] == "SUCCESS"
    art = work / "compat_demo_local" / "pipeline" / run_id / "artifacts"
    assert step_doc(doc, "pipeline", "convert")["outputs"] == {"dst_dir": str(art / "converted"), "converted": 1}
    with zipfile.ZipFile(art / "out" / f"payload_{run_id}.zip") as zf:
        # unzip keeps the archive's folder below src_dir (inbox/), as aetherflow-core does
        assert zf.read("converted/inbox/people.csv") == b"NAME,CITY\nada,london\nalan,wilmslow\n"
    probe = step_doc(doc, "report", "probe")["outputs"]
    assert probe == {
        "work_root": str(work),
        "plugin_strict": False,
        "upstream_files": ["converted", "inbox", "out", "unpacked"],
        "mail_kind": "mail",
        "mail_auth": True,
        "locks": [True, True],
        "state": "StepError: ctx.state (aetherflow-core's state store) is not given to steps: aetherflow records run, "
                 "job and step state itself. Return values as StepResult outputs and read earlier ones as "
                 "{{ steps.ID.KEY }} or jobs.ID.outputs; take a named lock with ctx.acquire_lock(key) or the "
                 "with_lock step",
        "sent": 1,
    }
    history = json.loads(af("runs", "show", run_id, "--json", "--history").stdout)["history"]
    lock_events = [(e["event"], e["data"]["lock"]) for e in history if e["event"].startswith("lock.")]
    # the lock the step left held was released when it ended
    assert lock_events == [("lock.acquired", "demo-probe"), ("lock.released", "demo-probe"),
                           ("lock.acquired", "left-held"), ("lock.released", "left-held")]
    assert "warning" not in res.stderr.lower(), res.stderr  # nothing in the folder was skipped
