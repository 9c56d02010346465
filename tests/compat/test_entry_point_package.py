"""A plugin package in aetherflow-core's shape, installed with pip into a private target directory
put on PYTHONPATH: its entry point names a ``register()`` without parameters that does nothing,
its steps and connectors (both constructor styles) register at import. ``steps list`` shows them
with their distribution, and a flow uses them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from support import step_doc


def test_installed_package_with_a_noop_register(af, reference, shown, tmp_path: Path) -> None:
    src = reference("entry_point_package")
    target = tmp_path / "target"
    # pip builds the package with the hatchling of this environment (the dev extra), without build
    # isolation, so nothing is downloaded, and installs it into target only, with its metadata
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--disable-pip-version-check", "--target", str(target), str(src)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PIP_NO_INPUT": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (target / "acme_core_plugin").is_dir() and list(target.glob("acme_core_plugin-1.2.0.dist-info"))
    shutil.rmtree(src / "src")  # the installed copy is the one used
    env = {"PYTHONPATH": str(target)}

    res = af("steps", "list", "--json", env=env)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    source = "plugin acme-core-plugin (entry point acme = acme_core_plugin:register)"
    rows = {r["type"]: r["source"] for r in doc["steps"]}
    assert rows["acme_count_letters"] == source and rows["acme_announce"] == source
    assert {"board:memory", "board:legacy"} <= set(doc["connectors"])
    assert not [p for p in doc["plugins"] if p["error"]], doc["plugins"]

    res = af("run", src / "flow.yaml", "--json", env=env)
    assert res.exit_code == 0, res.stderr
    run = shown(json.loads(res.stdout)["run_id"])
    assert step_doc(run, "main", "count")["outputs"] == {"letters": 5}
    nothing = step_doc(run, "main", "nothing")
    assert nothing["status"] == "SKIPPED" and nothing["reason"] == "empty text"
    assert step_doc(run, "main", "announce")["outputs"] == {"posted": 1, "channel": "ops"}
    assert step_doc(run, "main", "archive")["outputs"] == {"posted": 1, "channel": "archive"}

    res = af("steps", "list", env={})  # not on PYTHONPATH: not there
    assert res.exit_code == 0 and "acme_count_letters" not in res.stdout
