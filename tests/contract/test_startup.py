"""`aetherflow --version` and `--help` stay light: heavy modules are imported lazily."""

from __future__ import annotations

import subprocess
import sys

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
