"""Every aetherflow-core flow names a state file (``flow.state.path``) that aetherflow-core
created with its own tables. aetherflow recognises such a file, says what it is and what to do,
and changes nothing in it; any other database that is not an aetherflow store is refused too."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest


def _core_state_file(path: Path) -> None:
    """A state file with aetherflow-core's three tables, as one of its runs leaves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE job_runs (job_id TEXT NOT NULL, run_id TEXT NOT NULL, status TEXT NOT NULL,
                               updated_at INTEGER NOT NULL, PRIMARY KEY (job_id, run_id));
        CREATE TABLE step_runs (job_id TEXT NOT NULL, run_id TEXT NOT NULL, step_id TEXT NOT NULL,
                                status TEXT NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (job_id, run_id, step_id));
        CREATE TABLE locks (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at INTEGER NOT NULL);
        INSERT INTO job_runs VALUES ('hello', 'a1b2c3d4e5f6', 'SUCCESS', 1700000000);
    """)
    db.commit()
    db.close()


FLOW = """
version: 1

flow:
  id: hello
  workspace:
    root: work
    cleanup_policy: never
  state:
    backend: sqlite
    path: state/hello.sqlite

jobs:
  - id: hello
    steps:
      - id: echo
        type: external.process
        inputs:
          command: ["sh", "-c", "echo hello from aetherflow"]
          timeout_seconds: 30
"""


@pytest.mark.parametrize("kind", ["aetherflow-core", "other"])
def test_a_foreign_state_file_is_named_and_left_alone(af, write_flow, tmp_path: Path, kind: str) -> None:
    flow = write_flow(FLOW)
    state = tmp_path / "state" / "hello.sqlite"
    if kind == "aetherflow-core":
        _core_state_file(state)
    else:
        state.parent.mkdir()
        db = sqlite3.connect(state)
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        db.commit()
        db.close()
    before = hashlib.sha256(state.read_bytes()).hexdigest()
    res = af("run", flow)
    assert res.exit_code == 1, res.stderr
    assert "Traceback" not in res.stderr and "already exists" not in res.stderr and ".recover" not in res.stderr
    assert "state.foreign" in res.stderr
    if kind == "aetherflow-core":
        assert f"{state} is an aetherflow-core state file (tables job_runs, locks, step_runs)" in res.stderr
        assert "change flow.state.path" in res.stderr and "--state PATH" in res.stderr
    else:
        assert f"{state} is not an aetherflow state database (it holds tables invoices)" in res.stderr
    assert hashlib.sha256(state.read_bytes()).hexdigest() == before
    assert not Path(f"{state}-wal").exists()
    # what the hint says works: another store, and the file is still untouched
    res = af("run", flow, "--state", tmp_path / "aetherflow.db")
    assert res.exit_code == 0, res.stderr
    assert hashlib.sha256(state.read_bytes()).hexdigest() == before
