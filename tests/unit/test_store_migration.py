"""Opening a store written by an older aetherflow migrates it forward and keeps every row; a
store newer than this aetherflow is refused, not reset (docs/state.md)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aetherflow.errors import StateError
from aetherflow.events import Event
from aetherflow.state import sqlite as sqlite_store
from aetherflow.state.sqlite import SCHEMA_VERSION, SqliteStore


def _old_store(path: Path, version: int) -> None:
    """A store as aetherflow left it at schema ``version``: the first migrations only."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    for migration in sqlite_store._MIGRATIONS[:version]:
        db.executescript(migration)
    db.execute(
        "INSERT INTO runs (run_id, flow_id, flow_file, flow_sha256, status, created_at) "
        "VALUES ('old', 'f', 'f.yaml', ?, 'FAILED', 1.0), ('other', 'f', 'f.yaml', ?, 'SUCCESS', 2.0)",
        ("0" * 64, "0" * 64),
    )
    # interleaved runs, as two runs sharing a store write them: global ids 1..5
    for i, (run_id, name) in enumerate([("old", "run.started"), ("other", "run.started"), ("old", "step.started"),
                                        ("other", "run.finished"), ("old", "step.failed")], start=1):
        db.execute("INSERT INTO history (id, run_id, ts, event, flow_id, data) VALUES (?, ?, 1.0, ?, 'f', NULL)",
                   (i, run_id, name))
    db.execute(f"PRAGMA user_version={version}")
    db.close()


@pytest.mark.parametrize("version", [1, 2, 3])
def test_old_store_is_migrated_with_its_history(tmp_path: Path, version: int) -> None:
    path = tmp_path / "state.db"
    _old_store(path, version)
    store = SqliteStore(path)
    try:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [e.name for e in store.history("old")] == ["run.started", "step.started", "step.failed"]
        assert [e.name for e in store.history("other")] == ["run.started", "run.finished"]
        store.append_history(Event(name="run.resumed", run_id="old", ts=3.0, flow_id="f"))
        assert [e.name for e in store.history("old")][-2:] == ["step.failed", "run.resumed"]
        assert store.get_run("other") is not None
        assert [r.run_id for r in store.list_runs(limit=10)] == ["other", "old"]
        store.delete_runs(["old"])
        assert store.history("old") == []
        assert [e.name for e in store.history("other")] == ["run.started", "run.finished"]
    finally:
        store.close()


def test_keys_of_an_old_store_are_found_by_value(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _old_store(path, 3)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT INTO runs (run_id, flow_id, flow_file, flow_sha256, status, created_at, business_key, key_scope) "
               "VALUES ('keyed', 'f', 'f.yaml', ?, 'WAITING', 3.0, 'orderid::42', 'f')", ("0" * 64,))
    db.close()
    store = SqliteStore(path)
    try:
        assert [r.run_id for r in store.runs_for_key("42", active_only=True)] == ["keyed"]
        assert [r.run_id for r in store.runs_for_key("orderid::42")] == ["keyed"]
        rec = store.get_run("keyed")
        assert rec is not None and (rec.tags, dict(rec.meta), dict(rec.runtime_metadata)) == ((), {}, {})
    finally:
        store.close()


def test_history_ids_count_per_run(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    try:
        for i in range(3):
            for run_id in ("a", "b"):
                store.append_history(Event(name=f"e{i}", run_id=run_id, ts=float(i), flow_id="f"))
        rows = store._db.execute("SELECT run_id, id, event FROM history ORDER BY run_id, id").fetchall()
        assert rows == [("a", 1, "e0"), ("a", 2, "e1"), ("a", 3, "e2"), ("b", 1, "e0"), ("b", 2, "e1"), ("b", 3, "e2")]
    finally:
        store.close()


def test_newer_store_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _old_store(path, 2)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StateError) as info:
        SqliteStore(path)
    assert info.value.code == "state.too_new"
    assert "upgrade aetherflow" in str(info.value)
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM history").fetchone()[0] == 5
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    db.close()
