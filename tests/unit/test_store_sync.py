"""Which state changes wait for an fsync: step results and run changes do; lock holder rows and
a job starting or succeeding ride on the next synchronous commit (docs/state.md)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from aetherflow.events import Event
from aetherflow.model import freeze
from aetherflow.state.sqlite import SqliteStore
from aetherflow.state.store import LockRecord, RunRecord, StepWrite

FULL = 2


def _store(tmp_path: Path) -> tuple[SqliteStore, list[str]]:
    store = SqliteStore(tmp_path / "state.db")
    run = RunRecord(run_id="r1", flow_id="f", flow_file="f.yaml", flow_sha256="0" * 64, flow_text="", params=freeze({}),
                    status="RUNNING", pid=1, host="h", created_at=1.0, updated_at=1.0)
    store.create_run(run, Event(name="run.started", run_id="r1", ts=1.0, flow_id="f"))
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    return store, statements


def _commits(statements: list[str]) -> list[bool]:
    """For every COMMIT traced: True when it ran under synchronous=FULL."""
    sync = True
    out = []
    for st in statements:
        if st == "PRAGMA synchronous=NORMAL":
            sync = False
        elif st == "PRAGMA synchronous=FULL":
            sync = True
        elif st == "COMMIT":
            out.append(sync)
    return out


def test_results_and_run_changes_wait_for_fsync(tmp_path: Path) -> None:
    store, statements = _store(tmp_path)
    store.set_step("r1", StepWrite(job_id="j", step_id="s", status="RUNNING", attempt=1, started_at=2.0), None)
    store.set_step("r1", StepWrite(job_id="j", step_id="s", status="SUCCESS", attempt=1, outcome="success", finished_at=3.0), None)
    store.set_job("r1", "j", "FAILED", None, reason="step 's' failed")
    store.set_job("r1", "j", "SKIPPED", None, reason="when is false")
    store.update_run("r1", None, status="SUCCESS", finished_at=4.0)
    assert _commits(statements) == [True] * 5
    store.close()


def test_lock_rows_and_job_start_or_success_do_not(tmp_path: Path) -> None:
    store, statements = _store(tmp_path)
    store.record_lock(LockRecord(name="user:a", run_id="r1", pid=1, host="h", since=2.0, kind="with_lock"), None)
    store.set_job("r1", "j", "RUNNING", None, started_at=2.0)
    store.set_job("r1", "j", "SUCCESS", None, finished_at=3.0)
    store.remove_lock("user:a", "r1", None)
    assert _commits(statements) == [False] * 4
    # the connection is back at FULL for the next write
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == FULL
    store.close()


def test_unsynced_writes_are_visible_to_other_processes_at_once(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    store.record_lock(LockRecord(name="user:a", run_id="r1", pid=1, host="h", since=2.0, kind="with_lock"), None)
    store.set_job("r1", "j", "RUNNING", None, started_at=2.0)
    other = sqlite3.connect(tmp_path / "state.db")
    try:
        assert other.execute("SELECT run_id FROM locks WHERE name='user:a'").fetchone() == ("r1",)
        assert other.execute("SELECT status FROM jobs WHERE job_id='j'").fetchone() == ("RUNNING",)
    finally:
        other.close()
        store.close()
