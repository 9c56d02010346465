"""The example plugin's tests leave the repository as they found it: their flows, stores and
files live in temporary directories; run by `.ci/run`, bytecode goes to the PYTHONPYCACHEPREFIX it
sets outside the checkout, and run directly, with no such variable, the plugin's own pytest
configuration puts it there and keeps no pytest cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: watched recursively (aetherflow/ is not: other tests running meanwhile may compile its bytecode)
WATCHED = (ROOT / "plugins", ROOT / "flows")


def _tree() -> dict[str, int]:
    """Every file under WATCHED, and the entries of the repository's top directory (where the
    tests' cwd is), with their modification times."""
    found = {p.name: p.stat().st_mtime_ns for p in ROOT.iterdir() if not p.name.startswith(".")}
    for top in WATCHED:
        for root, _dirs, files in os.walk(top):
            for name in files:
                path = Path(root) / name
                found[str(path.relative_to(ROOT))] = path.stat().st_mtime_ns
    return found


def test_ci_run_puts_bytecode_outside_the_checkout() -> None:
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'export PYTHONPYCACHEPREFIX="${PYTHONPYCACHEPREFIX:-${TMPDIR:-/tmp}/' in text


def test_example_plugin_tests_write_nothing_into_the_repository(tmp_path: Path) -> None:
    """Run as a developer would, in the plugin's directory with its own configuration, without
    PYTHONPYCACHEPREFIX or PYTHONDONTWRITEBYTECODE."""
    plugin = ROOT / "plugins" / "aetherflow-example"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "PYTEST_ADDOPTS")}
    env["TMPDIR"] = str(tmp_path)  # where the plugin's configuration puts bytecode: $TMPDIR/aetherflow-pycache-UID
    before = _tree()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:xdist"],
                          capture_output=True, text=True, env=env, cwd=plugin, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout  # the installed package was tested
    after = _tree()
    assert sorted(set(after) - set(before)) == []
    assert sorted(p for p in before if p in after and after[p] != before[p] and "/" in p) == []
    prefix = tmp_path / f"aetherflow-pycache-{os.getuid()}"
    assert list(prefix.rglob("test_example_plugin*.pyc"))  # the bytecode went there
