"""Which state changes wait for an fsync: step results and run changes do; lock holder rows, a
job starting or succeeding, and a step result the engine follows at once with the next step's
RUNNING ride on the next synchronous commit (docs/state.md)."""

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


def test_a_step_result_may_skip_its_fsync_when_asked(tmp_path: Path) -> None:
    store, statements = _store(tmp_path)
    store.set_step("r1", StepWrite(job_id="j", step_id="s", status="SUCCESS", attempt=1, outcome="success"), None, sync=False)
    store.set_step("r1", StepWrite(job_id="j", step_id="t", status="RUNNING", attempt=1), None)
    assert _commits(statements) == [False, True]
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


def test_the_engine_fsyncs_each_result_before_the_next_step_runs(tmp_path: Path, monkeypatch) -> None:
    """A real in-process run: a result is committed without an fsync only when the very next
    commit is the next step's synchronous RUNNING; a job's last result waits for its fsync."""
    from aetherflow import pipeline
    from aetherflow.context import CancelToken

    flow = tmp_path / "f.yaml"
    flow.write_text("version: 1\nflow:\n  id: f\njobs:\n"
                    "  - id: a\n    steps:\n      - {id: s1, type: noop}\n      - {id: s2, type: noop}\n"
                    "      - {id: s3, type: noop}\n"
                    "  - id: b\n    depends_on: [a]\n    steps:\n      - {id: t1, type: noop}\n", encoding="utf-8")
    statements: list[str] = []
    real_open = pipeline.open_store

    def traced(path: Path, mask=None):  # the real store, with SQL tracing switched on
        store = real_open(path, mask)
        store._db.set_trace_callback(statements.append)
        return store

    monkeypatch.setattr(pipeline, "open_store", traced)
    settings = pipeline.settings_from_env({"AETHERFLOW_HOME": str(tmp_path / "home")})
    outcome = pipeline.Runner(settings, cancel=CancelToken()).run(pipeline.RunRequest(flow_path=str(flow), run_id="r"))
    assert outcome.status == "SUCCESS"

    # every transaction: (synchronous?, step rows it wrote as "job.step=STATUS")
    txs: list[tuple[bool, list[str]]] = []
    sync, rows = True, []
    for st in statements:
        if st == "PRAGMA synchronous=NORMAL":
            sync = False
        elif st == "PRAGMA synchronous=FULL":
            sync = True
        elif st.startswith("INSERT INTO steps"):
            run, job, step, status = (v.strip(" '") for v in st.split("VALUES (", 1)[1].split(",")[:4])
            rows.append(f"{job}.{step}={status}")
        elif st == "COMMIT":
            txs.append((sync, rows))
            rows = []
    step_txs = [(s, r) for s, r in txs if r]
    assert step_txs == [
        (True, ["a.s1=RUNNING"]), (False, ["a.s1=SUCCESS"]),
        (True, ["a.s2=RUNNING"]), (False, ["a.s2=SUCCESS"]),
        (True, ["a.s3=RUNNING"]), (True, ["a.s3=SUCCESS"]),
        (True, ["b.t1=RUNNING"]), (True, ["b.t1=SUCCESS"]),
    ]
    # nothing else is committed between an unsynced result and the next step's RUNNING
    for i, (s, r) in enumerate(txs):
        if not s and r:
            assert txs[i + 1][0] is True and txs[i + 1][1][0].endswith("=RUNNING"), txs[i: i + 2]
