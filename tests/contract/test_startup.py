"""`aetherflow --version` and `--help` stay light: heavy modules are imported lazily."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("yaml", "jsonschema", "sqlite3", "filelock", "dotenv", "rich", "pydantic", "psycopg",
         "aetherflow.engine", "aetherflow.spec", "aetherflow.state")


def imported_modules(*args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "aetherflow", *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_version_imports_nothing_heavy() -> None:
    mods = imported_modules("--version")
    loaded = sorted(m for m in mods for h in (*HEAVY, "typer", "click") if m == h or m.startswith(h + "."))
    assert loaded == [], f"--version imported {loaded}"


def test_help_imports_no_engine() -> None:
    mods = imported_modules("--help")
    loaded = sorted(m for m in mods for h in HEAVY if m == h or m.startswith(h + "."))
    assert loaded == [], f"--help imported {loaded}"


def test_version_output() -> None:
    from aetherflow import __version__

    proc = subprocess.run([sys.executable, "-m", "aetherflow", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == f"aetherflow {__version__}"
    assert proc.stderr == ""


def test_validating_a_valid_flow_does_not_import_jsonschema(tmp_path: Path) -> None:
    """The quick schema check (docs/performance.md): with both caches off, a valid flow is
    checked without importing jsonschema."""
    flow = Path(__file__).resolve().parents[2] / "flows" / "daily.yaml"
    env = {**os.environ, "AETHERFLOW_HOME": str(tmp_path), "AETHERFLOW_PLUGIN_CACHE": "0",
           "AETHERFLOW_VALIDATION_CACHE": "0"}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "aetherflow", "validate", str(flow)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mods = {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.splitlines() if ln.startswith("import time:")}
    assert "aetherflow.spec.schema" in mods and "yaml" in mods  # it did parse and check
    assert "jsonschema" not in mods
