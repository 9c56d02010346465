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


def test_sync_makes_unsynced_commits_durable(tmp_path: Path) -> None:
    store, statements = _store(tmp_path)
    assert store._unsynced is False
    store.set_step("r1", StepWrite(job_id="j", step_id="s", status="SUCCESS", attempt=1), None, sync=False)
    assert store._unsynced is True
    store.remove_wait("r1", "j", "nothing-waits")  # a synchronous commit that writes nothing syncs nothing
    assert store._unsynced is True
    store.sync()
    assert store._unsynced is False
    store.set_job("r1", "j", "RUNNING", None, started_at=2.0)
    store.set_step("r1", StepWrite(job_id="j", step_id="t", status="RUNNING", attempt=1), None)
    assert store._unsynced is False  # the RUNNING commit synced the WAL, the job row with it
    store.close()


FLOW = ("version: 1\nflow:\n  id: f\n{parallel}jobs:\n"
        "  - id: a\n    steps:\n      - {{id: s1, type: noop}}\n      - {{id: s2, type: noop}}\n"
        "      - {{id: s3, type: noop}}\n"
        "  - id: b\n    depends_on: [a]\n    steps:\n      - {{id: t1, type: noop}}\n")


def _traced_run(tmp_path: Path, monkeypatch, text: str) -> list[tuple[bool, list[str]]]:
    """Run ``text`` in this process against a real store with SQL tracing on; every transaction
    as (synchronous?, the step rows it wrote as "job.step=STATUS")."""
    from aetherflow.context import CancelToken
    from aetherflow.runner import Runner, RunRequest
    from aetherflow.settings import settings_from_env
    from aetherflow.state.sqlite import SqliteStore

    flow = tmp_path / "f.yaml"
    flow.write_text(text, encoding="utf-8")
    statements: list[str] = []

    def traced(location: str, mask=None):  # the runner's store seam
        store = SqliteStore(location, mask=mask)
        store._db.set_trace_callback(statements.append)
        return store

    settings = settings_from_env({"AETHERFLOW_HOME": str(tmp_path / "home")})
    outcome = Runner(settings, cancel=CancelToken(), open_store=traced).run(RunRequest(flow_path=str(flow), run_id="r"))
    assert outcome.status == "SUCCESS"
    txs: list[tuple[bool, list[str]]] = []
    sync, rows = True, []
    for st in statements:
        if st == "PRAGMA synchronous=NORMAL":
            sync = False
        elif st == "PRAGMA synchronous=FULL":
            sync = True
        elif st.startswith("INSERT INTO steps"):
            _run, job, step, status = (v.strip(" '") for v in st.split("VALUES (", 1)[1].split(",")[:4])
            rows.append(f"{job}.{step}={status}")
        elif st == "COMMIT":
            txs.append((sync, rows))
            rows = []
    return txs


def test_one_job_at_a_time_every_result_rides_on_the_next_synchronous_commit(tmp_path: Path, monkeypatch) -> None:
    txs = _traced_run(tmp_path, monkeypatch, FLOW.format(parallel=""))
    assert [(s, r) for s, r in txs if r] == [
        (True, ["a.s1=RUNNING"]), (False, ["a.s1=SUCCESS"]),
        (True, ["a.s2=RUNNING"]), (False, ["a.s2=SUCCESS"]),
        (True, ["a.s3=RUNNING"]), (False, ["a.s3=SUCCESS"]),
        (True, ["b.t1=RUNNING"]), (False, ["b.t1=SUCCESS"]),
    ]
    # the run's end is synchronous and comes after the last result: only the release of the
    # run's lock rows (advisory, see above) may follow it unsynced
    last_result = max(i for i, (_, r) in enumerate(txs) if r)
    assert any(s for s, _ in txs[last_result + 1:]), txs[last_result:]


def test_parallel_jobs_sync_each_jobs_last_result(tmp_path: Path, monkeypatch) -> None:
    """With jobs in threads, what follows a job's last step is not known: it waits for its fsync."""
    txs = _traced_run(tmp_path, monkeypatch, FLOW.format(parallel="  max_parallel_jobs: 2\n"))
    assert [(s, r) for s, r in txs if r] == [
        (True, ["a.s1=RUNNING"]), (False, ["a.s1=SUCCESS"]),
        (True, ["a.s2=RUNNING"]), (False, ["a.s2=SUCCESS"]),
        (True, ["a.s3=RUNNING"]), (True, ["a.s3=SUCCESS"]),
        (True, ["b.t1=RUNNING"]), (True, ["b.t1=SUCCESS"]),
    ]
