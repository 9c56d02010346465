"""Embedded SQLite state store: WAL, ``synchronous=FULL``, one ``BEGIN IMMEDIATE`` transaction
per state change with its history row, schema version in ``user_version`` with migrations.

Every transaction is written to the WAL at once (other processes see it, a crash of this one
does not lose it). Most also wait for an fsync before returning. Four kinds of write do not:
lock holder rows (advisory: after a power loss every holder is gone anyway), a job starting,
a job ending SUCCESS (resume derives both from the step records), and the result of a step
whose job goes straight on to its next step (``set_step(..., sync=False)``, the engine's
choice). They become durable with the next synchronous commit, which always comes before the
next step starts or the run ends: the WAL is replayed in order, so a power loss can only drop
the writes made since the last fsync, and no step starts before the result of the one before
it is on disk. A step result so dropped means that step runs again on resume, as a step
recorded RUNNING does.

The file is created 0600 in a 0700 directory. A corrupt or unreadable file raises
``StateError`` with a recovery hint; it is never reset. Every text written (outputs, errors,
history data, params) passes through ``mask`` first, so secrets never reach the file.
One connection per store object, guarded by a lock so parallel jobs can share it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Unpack

from aetherflow.errors import ConflictError, KeyInUseError, StateError
from aetherflow.events import Event
from aetherflow.locks import OsLock, is_free
from aetherflow.model import KEY_SEPARATOR, freeze
from aetherflow.state.rows import LIGHT_RUN_COLUMNS as _LIGHT_RUN_COLUMNS
from aetherflow.state.rows import RUN_COLUMNS as _RUN_COLUMNS
from aetherflow.state.rows import RUN_JSON as _RUN_JSON
from aetherflow.state.rows import dumps as _dumps
from aetherflow.state.rows import fenced, key_value, run_from_row
from aetherflow.state.rows import like_prefix as _like_prefix
from aetherflow.state.rows import load_map as _map
from aetherflow.state.store import (
    AttemptRecord,
    FlowSummary,
    JobFields,
    JobRecord,
    LockRecord,
    OutputChunk,
    ReceivedEvent,
    RunDump,
    RunFields,
    RunRecord,
    StepRecord,
    StepWrite,
    WaitRecord,
    run_lock_key,
)

SCHEMA_VERSION = 6
#: job rows written without their own fsync: resume derives them from the step records
_LAZY_JOB_STATUSES = frozenset({"RUNNING", "SUCCESS"})

_MIGRATIONS: tuple[str, ...] = (
    # version 1
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        flow_id TEXT NOT NULL,
        flow_file TEXT NOT NULL,
        flow_sha256 TEXT NOT NULL,
        flow_text TEXT NOT NULL DEFAULT '',
        flow_version INTEGER,
        params TEXT NOT NULL DEFAULT '{}',
        business_key TEXT,
        key_scope TEXT,
        status TEXT NOT NULL,
        pid INTEGER,
        host TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        updated_at REAL,
        finished_at REAL,
        attempt INTEGER NOT NULL DEFAULT 1,
        plugin_paths TEXT NOT NULL DEFAULT '[]',
        selected_jobs TEXT NOT NULL DEFAULT '[]',
        error TEXT,
        workspace_root TEXT,
        cancel_reason TEXT,
        due_at REAL,
        profile TEXT
    );
    CREATE INDEX runs_created ON runs(created_at DESC);
    CREATE INDEX runs_flow_created ON runs(flow_id, created_at DESC);
    CREATE INDEX runs_status_due ON runs(status, due_at);
    CREATE UNIQUE INDEX runs_active_key ON runs(key_scope, business_key)
        WHERE business_key IS NOT NULL AND status IN ('RUNNING', 'WAITING');
    CREATE INDEX runs_key ON runs(business_key);
    CREATE TABLE jobs (
        run_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        outcome TEXT,
        outputs TEXT NOT NULL DEFAULT '{}',
        started_at REAL,
        finished_at REAL,
        PRIMARY KEY (run_id, job_id)
    ) WITHOUT ROWID;
    CREATE TABLE steps (
        run_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        outcome TEXT,
        outputs TEXT NOT NULL DEFAULT '{}',
        masked_keys TEXT NOT NULL DEFAULT '[]',
        error TEXT,
        reason TEXT,
        started_at REAL,
        finished_at REAL,
        PRIMARY KEY (run_id, job_id, step_id)
    ) WITHOUT ROWID;
    CREATE TABLE attempts (
        run_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        status TEXT NOT NULL,
        outcome TEXT,
        error TEXT,
        started_at REAL,
        finished_at REAL,
        PRIMARY KEY (run_id, job_id, step_id, attempt)
    ) WITHOUT ROWID;
    CREATE TABLE waits (
        run_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        events TEXT NOT NULL DEFAULT '[]',
        due_at REAL,
        created_at REAL NOT NULL,
        PRIMARY KEY (run_id, job_id, step_id)
    ) WITHOUT ROWID;
    CREATE TABLE received_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        name TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}',
        received_at REAL NOT NULL,
        consumed INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX received_events_run ON received_events(run_id, consumed);
    CREATE TABLE history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        ts REAL NOT NULL,
        event TEXT NOT NULL,
        flow_id TEXT,
        job_id TEXT,
        step_id TEXT,
        attempt INTEGER,
        data TEXT
    );
    CREATE INDEX history_run ON history(run_id, id);
    CREATE TABLE locks (
        name TEXT PRIMARY KEY,
        run_id TEXT,
        pid INTEGER,
        host TEXT,
        since REAL NOT NULL,
        kind TEXT NOT NULL
    );
    """,
    # version 2: `runs list --status S` (and CRASHED, which reads RUNNING) newest first without
    # sorting every run of that status
    """
    CREATE INDEX runs_status_created ON runs(status, created_at DESC);
    """,
    # version 3: history keyed by (run_id, id) in one b-tree, ids counted per run. The rowid
    # table with AUTOINCREMENT and its (run_id, id) index made every history row write three
    # pages (table, index, sqlite_sequence); now it writes one. Old ids are kept (per run they
    # are increasing, so the order is unchanged) and new ones continue above them.
    """
    CREATE TABLE history_v3 (
        run_id TEXT NOT NULL,
        id INTEGER NOT NULL,
        ts REAL NOT NULL,
        event TEXT NOT NULL,
        flow_id TEXT,
        job_id TEXT,
        step_id TEXT,
        attempt INTEGER,
        data TEXT,
        PRIMARY KEY (run_id, id)
    ) WITHOUT ROWID;
    INSERT INTO history_v3 (run_id, id, ts, event, flow_id, job_id, step_id, attempt, data)
        SELECT run_id, id, ts, event, flow_id, job_id, step_id, attempt, data FROM history;
    DROP TABLE history;
    ALTER TABLE history_v3 RENAME TO history;
    """,
    # version 4: what a run is labelled with (the flow's tags and metadata, the caller's
    # `--meta`), the metadata its steps report (per step, and merged on the run), and business
    # keys found by value through an index: key_value is the VALUE of NAME::VALUE
    """
    ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE runs ADD COLUMN flow_metadata TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE runs ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE runs ADD COLUMN runtime_metadata TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE runs ADD COLUMN key_value TEXT;
    UPDATE runs SET key_value = substr(business_key, instr(business_key, '::') + 2)
        WHERE business_key IS NOT NULL AND instr(business_key, '::') > 0;
    CREATE INDEX runs_key_value ON runs(key_value, created_at DESC);
    ALTER TABLE steps ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE run_tags (
        tag TEXT NOT NULL,
        run_id TEXT NOT NULL,
        PRIMARY KEY (tag, run_id)
    ) WITHOUT ROWID;
    """,
    # version 5: captured step output (`runs logs`) and the notifications sent once per run
    # (`crashed`, by whichever process finds the run CRASHED first)
    """
    CREATE TABLE output (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        stream TEXT NOT NULL,
        text TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX output_run ON output(run_id, id);
    CREATE TABLE notices (
        run_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (run_id, kind)
    ) WITHOUT ROWID;
    """,
    # version 6: the run's executor generation (fencing, see state/store.py): every create or
    # claim takes the next one, and a write of an executor whose generation is not current is
    # refused
    """
    ALTER TABLE runs ADD COLUMN generation INTEGER NOT NULL DEFAULT 1;
    """,
)

#: run statuses of a run that is over (``delete_runs(finished_before=...)``)
_FINISHED = ("SUCCESS", "FAILED", "CANCELLED", "INTERRUPTED", "TIMED_OUT")

_RECOVERY_HINT = (
    "the state database is unreadable; aetherflow never resets it. Keep a copy, then try "
    "`sqlite3 FILE '.recover' | sqlite3 NEW.db` and point --state at NEW.db, or move the file "
    "aside to start with an empty store (the runs it recorded are then forgotten)"
)


def _key_filter(key: str) -> str:
    """The WHERE term (one ``?``) matching runs holding business key ``key``: ``NAME::VALUE``
    exactly, a bare ``VALUE`` under any name (both indexed)."""
    return "business_key=?" if KEY_SEPARATOR in key else "key_value=?"


#: the tables aetherflow-core's state file (its ``flow.state.path``) holds
_CORE_TABLES = frozenset({"job_runs", "step_runs", "locks"})


def _refuse_foreign(db: Any, path: str) -> None:
    """A database without our schema version that already has tables is not ours: never
    create our tables next to (or over) another program's. aetherflow-core's state file, which
    every one of its flows names in ``flow.state.path``, is recognised and named. The version and
    the tables are read in one read transaction (another aetherflow may be creating ours)."""
    db.execute("BEGIN")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
    finally:
        db.execute("COMMIT")
    if version != 0 or not tables:
        return
    if _CORE_TABLES <= tables:
        raise StateError(
            f"{path} is an aetherflow-core state file (tables {', '.join(sorted(tables))}); aetherflow keeps its runs "
            "in a store of its own and neither reads nor changes that file",
            code="state.foreign",
            hint="give aetherflow another file: change flow.state.path (for example to state/aetherflow.db), or run with "
            "--state PATH (or AETHERFLOW_STATE); leave the aetherflow-core file as it is",
        )
    raise StateError(
        f"{path} is not an aetherflow state database (it holds tables {', '.join(sorted(tables))}); aetherflow leaves it alone",
        code="state.foreign",
        hint="point flow.state.path, --state or AETHERFLOW_STATE at a new file or at an aetherflow store",
    )


class SqliteStore:
    """``StateStore`` on one SQLite file; its named locks are OS file locks in ``locks/`` beside it."""

    def __init__(self, path: str | os.PathLike[str], *, mask: Callable[[str], str] | None = None) -> None:
        self.path = str(path)
        self._mask = mask or (lambda s: s)
        self._lock = threading.RLock()
        self._unsynced = False  # a commit made with sync=False has not been fsynced yet (see sync())
        #: the runs this store object executes, and the generation it holds of each (fencing)
        self._generations: dict[str, int] = {}
        p = Path(self.path)
        try:
            for d in reversed([*p.parents]):  # every directory we create is private (mkdir's mode
                if not d.exists():            # applies to the last one only with parents=True)
                    d.mkdir(mode=0o700, exist_ok=True)
            if not p.exists():
                fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o600)
                os.close(fd)
        except OSError as exc:
            raise StateError(f"cannot create state database {p}: {exc}", code="state.unwritable") from exc
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0, cached_statements=256
            )
            self._db.execute("PRAGMA busy_timeout=30000")
            _refuse_foreign(self._db, self.path)  # before anything is changed in the file
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode is None:
                raise sqlite3.DatabaseError("journal mode not set")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=OFF")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"state database {self.path} is unreadable or corrupt: {exc}", code="state.corrupt", hint=_RECOVERY_HINT
            ) from exc
        for suffix in ("-wal", "-shm"):
            side = Path(self.path + suffix)
            if side.exists():
                try:
                    os.chmod(side, 0o600)
                except OSError:
                    pass

    # plumbing ------------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return self.path

    @property
    def _lock_dir(self) -> Path:
        return Path(self.path).parent / "locks"

    def set_mask(self, mask: Callable[[str], str]) -> None:
        self._mask = mask

    def lock(self, name: str) -> OsLock:
        return OsLock(self._lock_dir, name)

    def lock_is_free(self, name: str) -> bool:
        return is_free(self._lock_dir, name)

    def set_lost_handler(self, handler: Callable[[str], None]) -> None:
        """Nothing to watch: the named locks are this process's own file descriptors, which it
        cannot lose while it lives."""

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state database {self.path} has schema version {version}, newer than this aetherflow "
                f"understands ({SCHEMA_VERSION}); upgrade aetherflow",
                code="state.too_new",
            )
        if version == SCHEMA_VERSION:
            return
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for i in range(version, SCHEMA_VERSION):
                for stmt in _MIGRATIONS[i].split(";"):
                    if stmt.strip():
                        db.execute(stmt)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def sync(self) -> None:
        """Make every commit so far durable, the ones written with ``sync=False`` too: an fsync
        of the WAL file (through a descriptor of our own: fsync flushes the file, whichever
        descriptor asks). Nothing to do when the last commit was synchronous."""
        with self._lock:
            if not self._unsynced:
                return
            try:
                fd = os.open(f"{self.path}-wal", os.O_RDONLY)
            except FileNotFoundError:  # checkpointed and removed: already in the database file
                self._unsynced = False
                return
            except OSError as exc:
                raise StateError(f"state database {self.path}: cannot open its WAL: {exc}", code="state.write_failed") from exc
            try:
                os.fsync(fd)
            except OSError as exc:
                raise StateError(f"state database {self.path}: fsync of its WAL failed: {exc}", code="state.write_failed") from exc
            finally:
                os.close(fd)
            self._unsynced = False

    @contextmanager
    def _tx(self, *, sync: bool = True, fence: str | None = None) -> Iterator[Any]:
        """One ``BEGIN IMMEDIATE`` transaction; with ``sync=False`` its commit does not wait for
        an fsync (see the module docstring for which writes may do that). ``fence``: the run the
        write belongs to; when this store executes it, the write is refused unless this store's
        generation of the run is still the current one."""
        with self._lock:
            db = self._db
            if not sync:
                db.execute("PRAGMA synchronous=NORMAL")
            try:
                changes = db.total_changes
                try:
                    db.execute("BEGIN IMMEDIATE")
                except sqlite3.DatabaseError as exc:
                    raise StateError(f"state database {self.path}: {exc}", code="state.corrupt", hint=_RECOVERY_HINT) from exc
                try:
                    if fence is not None and fence in self._generations:
                        self._check_generation(db, fence)
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                try:
                    db.execute("COMMIT")
                except sqlite3.DatabaseError as exc:
                    db.execute("ROLLBACK")
                    raise StateError(f"state database {self.path}: {exc}", code="state.write_failed") from exc
                if not sync:
                    self._unsynced = True
                elif db.total_changes != changes:  # a commit that wrote frames syncs the whole WAL
                    self._unsynced = False
            finally:
                if not sync:
                    db.execute("PRAGMA synchronous=FULL")

    def _check_generation(self, db: Any, run_id: str) -> None:
        mine = self._generations[run_id]
        row = db.execute("SELECT generation FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None or row[0] != mine:
            raise fenced(run_id, row[0] if row else None, mine)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StateError(
                    f"state database {self.path}: {exc}", code="state.corrupt", hint=_RECOVERY_HINT
                ) from exc

    def _history(self, db: Any, event: Event | None) -> None:
        if event is None:
            return
        data = self._mask(_dumps(event.data)) if event.data else None
        db.execute(  # the next id of this run: a seek to the end of its key range (we hold the write lock)
            "INSERT INTO history (run_id, id, ts, event, flow_id, job_id, step_id, attempt, data) "
            "VALUES (?1, (SELECT COALESCE(MAX(id), 0) + 1 FROM history WHERE run_id = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            (event.run_id, event.ts, event.name, event.flow_id, event.job_id, event.step_id, event.attempt, data),
        )

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass

    # runs ----------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, event: Event) -> None:
        values: list[Any] = []
        for c in _RUN_COLUMNS:
            v = getattr(run, c)
            if c in _RUN_JSON:
                v = self._mask(_dumps(v))
            values.append(v)
        value_of_key = key_value(run.business_key)
        with self._tx() as db:
            if run.business_key is not None:
                sql = ("SELECT run_id, status, pid, host FROM runs WHERE business_key=? "
                       "AND status IN ('RUNNING','WAITING')")
                params: list[Any] = [run.business_key]
                if run.key_scope != "*":  # a global run conflicts with every holder; others with
                    sql += " AND (key_scope IS ? OR key_scope='*')"  # their scope and global ones
                    params.append(run.key_scope)
                row = db.execute(sql + " LIMIT 1", params).fetchone()
                if row is not None:
                    exc = KeyInUseError(
                        f"business key '{run.business_key}' is held by run {row[0]} ({row[1]}, pid {row[2]} on {row[3]})",
                        hint=f"wait for it, or `aetherflow cancel {row[0]}`",
                    )
                    exc.holder = row[0]  # type: ignore[attr-defined]
                    raise exc
            db.execute(
                f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}, key_value) VALUES ({', '.join('?' * len(_RUN_COLUMNS))}, ?)",
                (*values, value_of_key),
            )
            for tag in dict.fromkeys(run.tags):
                db.execute("INSERT INTO run_tags (tag, run_id) VALUES (?, ?)", (tag, run.run_id))
            self._history(db, event)
        self._generations[run.run_id] = 1

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._query(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE run_id=?", (run_id,))
        return run_from_row(rows[0], _RUN_COLUMNS) if rows else None

    def cancel_reason(self, run_id: str) -> str | None:
        """The run's pending cancel request, if any: one indexed column, checked between steps."""
        rows = self._query("SELECT cancel_reason FROM runs WHERE run_id=?", (run_id,))
        return rows[0][0] if rows and rows[0][0] else None

    def run_ids(self, prefix: str, limit: int = 50) -> list[str]:
        rows = self._query(
            "SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY created_at DESC LIMIT ?",
            (_like_prefix(prefix), limit),
        )
        return [r[0] for r in rows]

    def find_runs(self, prefix: str) -> list[RunRecord]:
        rows = self._query(
            f"SELECT {', '.join(_LIGHT_RUN_COLUMNS)} FROM runs WHERE run_id LIKE ? ESCAPE '\\' LIMIT 5",
            (_like_prefix(prefix),),
        )
        return [run_from_row(r, _LIGHT_RUN_COLUMNS) for r in rows]

    def list_runs(
        self, *, status: str | None = None, flow_id: str | None = None, key: str | None = None,
        tags: Sequence[str] = (), limit: int = 50,
    ) -> list[RunRecord]:
        where: list[str] = []
        params: list[Any] = []
        if status:
            where.append("status=?")
            params.append(status)
        if flow_id:
            where.append("flow_id=?")
            params.append(flow_id)
        if key:
            where.append(_key_filter(key))
            params.append(key)
        for tag in tags:
            where.append("EXISTS (SELECT 1 FROM run_tags t WHERE t.tag=? AND t.run_id=runs.run_id)")
            params.append(tag)
        sql = f"SELECT {', '.join(_LIGHT_RUN_COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        params.append(limit)
        return [run_from_row(r, _LIGHT_RUN_COLUMNS) for r in self._query(sql, params)]

    def runs_for_key(self, key: str, *, flow_id: str | None = None, active_only: bool = False) -> list[RunRecord]:
        sql = f"SELECT {', '.join(_LIGHT_RUN_COLUMNS)} FROM runs WHERE {_key_filter(key)}"
        params: list[Any] = [key]
        if flow_id:
            sql += " AND flow_id=?"
            params.append(flow_id)
        if active_only:
            sql += " AND status IN ('RUNNING','WAITING')"
        sql += " ORDER BY created_at DESC, rowid DESC"
        return [run_from_row(r, _LIGHT_RUN_COLUMNS) for r in self._query(sql, params)]

    def update_run(self, run_id: str, event: Event | None, **fields: Unpack[RunFields]) -> None:
        sets: list[str] = []
        values: list[Any] = []
        for k, v in fields.items():
            if k not in _RUN_COLUMNS or k == "run_id":
                raise ValueError(f"unknown run column {k}")
            if k in _RUN_JSON:
                v = self._mask(_dumps(v))
            elif k in ("error", "cancel_reason") and v is not None:
                v = self._mask(str(v))
            sets.append(f"{k}=?")
            values.append(v)
        with self._tx(fence=run_id) as db:
            if sets:
                db.execute(f"UPDATE runs SET {', '.join(sets)} WHERE run_id=?", (*values, run_id))
            self._history(db, event)

    def claim_run(self, run_id: str, expect_status: str, pid: int, host: str, event: Event | None) -> bool:
        """Atomically move a run from ``expect_status`` to RUNNING for this process."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE runs SET status='RUNNING', pid=?, host=?, attempt=attempt+1, generation=generation+1 "
                "WHERE run_id=? AND status=?",
                (pid, host, run_id, expect_status),
            )
            if cur.rowcount != 1:
                return False
            generation = int(db.execute("SELECT generation FROM runs WHERE run_id=?", (run_id,)).fetchone()[0])
            # the claimer holds the run lock, so anything still RUNNING lost its process
            crash = "the runner process died during this attempt"
            db.execute("UPDATE attempts SET status='FAILED', error=? WHERE run_id=? AND status='RUNNING'", (crash, run_id))
            db.execute("UPDATE steps SET status='FAILED', error=? WHERE run_id=? AND status='RUNNING'", (crash, run_id))
            self._history(db, event)
        self._generations[run_id] = generation
        return True

    def dump_run(self, run_id: str) -> RunDump | None:
        run = self.get_run(run_id)
        if run is None:
            return None
        rows = self._query(
            "SELECT id, job_id, step_id, name, data, received_at, consumed FROM received_events WHERE run_id=? ORDER BY id",
            (run_id,),
        )
        events = tuple(
            ReceivedEvent(id=r[0], run_id=run_id, job_id=r[1], step_id=r[2], name=r[3], data=_map(r[4]),
                          received_at=r[5], consumed=bool(r[6]))
            for r in rows
        )
        notices = tuple((r[0], r[1]) for r in self._query("SELECT kind, at FROM notices WHERE run_id=? ORDER BY kind", (run_id,)))
        return RunDump(run=run, jobs=tuple(self.jobs(run_id).values()), steps=tuple(self.steps(run_id).values()),
                       attempts=tuple(self.attempts(run_id)), waits=tuple(self.waits(run_id)), events=events,
                       history=tuple(self.history(run_id)), output=tuple(self.output(run_id, limit=2**62)),
                       notices=notices)

    def load_run(self, dump: RunDump) -> None:
        run = dump.run
        rid = run.run_id
        with self._tx() as db:
            if db.execute("SELECT 1 FROM runs WHERE run_id=?", (rid,)).fetchone() is not None:
                raise ConflictError(f"run {rid} is already recorded in {self.path}", code="store.run_exists")
            values = [_dumps(getattr(run, c)) if c in _RUN_JSON else getattr(run, c) for c in _RUN_COLUMNS]
            db.execute(f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}, key_value) "
                       f"VALUES ({', '.join('?' * len(_RUN_COLUMNS))}, ?)", (*values, key_value(run.business_key)))
            db.executemany("INSERT INTO run_tags (tag, run_id) VALUES (?, ?)", [(t, rid) for t in dict.fromkeys(run.tags)])
            db.executemany(
                "INSERT INTO jobs (run_id, job_id, status, reason, outcome, outputs, started_at, finished_at) "
                "VALUES (?,?,?,?,?,?,?,?)",
                [(rid, j.job_id, j.status, j.reason, j.outcome, _dumps(j.outputs) if j.outputs else "{}", j.started_at,
                  j.finished_at) for j in dump.jobs],
            )
            db.executemany(
                "INSERT INTO steps (run_id, job_id, step_id, status, attempt, outcome, outputs, masked_keys, error, reason, "
                "started_at, finished_at, metadata) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(rid, st.job_id, st.step_id, st.status, st.attempt, st.outcome, _dumps(st.outputs) if st.outputs else "{}",
                  _dumps(list(st.masked_keys)) if st.masked_keys else "[]", st.error, st.reason, st.started_at,
                  st.finished_at, _dumps(st.metadata) if st.metadata else "{}") for st in dump.steps],
            )
            db.executemany(
                "INSERT INTO attempts (run_id, job_id, step_id, attempt, status, outcome, error, started_at, finished_at) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                [(rid, a.job_id, a.step_id, a.attempt, a.status, a.outcome, a.error, a.started_at, a.finished_at)
                 for a in dump.attempts],
            )
            db.executemany(
                "INSERT INTO waits (run_id, job_id, step_id, kind, events, due_at, created_at) VALUES (?,?,?,?,?,?,?)",
                [(rid, w.job_id, w.step_id, w.kind, _dumps(list(w.events)), w.due_at, w.created_at) for w in dump.waits],
            )
            db.executemany(
                "INSERT INTO received_events (run_id, job_id, step_id, name, data, received_at, consumed) "
                "VALUES (?,?,?,?,?,?,?)",
                [(rid, e.job_id, e.step_id, e.name, _dumps(e.data), e.received_at, int(e.consumed)) for e in dump.events],
            )
            db.executemany(
                "INSERT INTO history (run_id, id, ts, event, flow_id, job_id, step_id, attempt, data) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                [(rid, n, e.ts, e.name, e.flow_id, e.job_id, e.step_id, e.attempt, _dumps(e.data) if e.data else None)
                 for n, e in enumerate(dump.history, start=1)],
            )
            db.executemany(
                "INSERT INTO output (run_id, job_id, step_id, attempt, stream, text, at) VALUES (?,?,?,?,?,?,?)",
                [(rid, c.job_id, c.step_id, c.attempt, c.stream, c.text, c.at) for c in dump.output],
            )
            db.executemany("INSERT INTO notices (run_id, kind, at) VALUES (?,?,?)", [(rid, k, at) for k, at in dump.notices])

    def delete_runs(self, run_ids: Sequence[str], *, finished_before: float | None = None) -> list[str]:
        """Each run under its executor lock (taken without waiting; a held one is skipped), in
        its own transaction; then its lock file is removed while still held. That file is only
        ever opened for this run id (``run_lock_key``), by an executor of the run or a probe of
        its liveness: after the delete, a process that opened it earlier finds no run when it
        gets the lock, and one that opens it later creates a new file and finds no run either.
        Flow, job and ``with_lock`` lock files are shared by many runs and never removed."""
        deleted: list[str] = []
        for rid in dict.fromkeys(run_ids):
            if not self._query("SELECT 1 FROM runs WHERE run_id=?", (rid,)):
                continue
            lock = self.lock(run_lock_key(rid))
            if not lock.acquire(0):
                continue
            try:
                with self._tx() as db:
                    row = db.execute("SELECT status, COALESCE(finished_at, created_at) FROM runs WHERE run_id=?",
                                     (rid,)).fetchone()
                    if row is None or (finished_before is not None and (row[0] not in _FINISHED or row[1] >= finished_before)):
                        continue
                    for table in ("steps", "jobs", "attempts", "waits", "received_events", "history", "run_tags",
                                  "output", "notices", "runs"):
                        db.execute(f"DELETE FROM {table} WHERE run_id=?", (rid,))
                    db.execute("DELETE FROM locks WHERE name=?", (run_lock_key(rid),))
                    deleted.append(rid)
                if deleted and deleted[-1] == rid:
                    lock.discard()
            finally:
                lock.release()
        return deleted

    def mark_notified(self, run_id: str, kind: str, event: Event | None) -> bool:
        import time

        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO notices (run_id, kind, at) VALUES (?,?,?)", (run_id, kind, time.time()))
            if cur.rowcount != 1:
                return False
            self._history(db, event)
            return True

    def flow_summaries(self) -> list[FlowSummary]:
        counts: dict[str, dict[str, int]] = {}
        for flow_id, status, n in self._query("SELECT flow_id, status, COUNT(*) FROM runs GROUP BY flow_id, status"):
            counts.setdefault(flow_id, {})[status] = n
        last = {
            rec.flow_id: rec
            for rec in (run_from_row(r, _LIGHT_RUN_COLUMNS) for r in self._query(
                f"SELECT {', '.join(_LIGHT_RUN_COLUMNS)} FROM runs r WHERE rowid = (SELECT rowid FROM runs "
                "WHERE flow_id = r.flow_id ORDER BY created_at DESC, rowid DESC LIMIT 1)"
            ))
        }
        success = dict(self._query("SELECT flow_id, MAX(COALESCE(finished_at, updated_at)) FROM runs "
                                   "WHERE status='SUCCESS' GROUP BY flow_id"))
        failures = dict(self._query("SELECT r.flow_id, COUNT(*) FROM attempts a JOIN runs r ON r.run_id = a.run_id "
                                    "WHERE a.status='FAILED' GROUP BY r.flow_id"))
        return [
            FlowSummary(flow_id=f, runs_by_status=freeze(counts[f]), last_run=last.get(f), last_success_at=success.get(f),
                        step_failures=int(failures.get(f, 0)))
            for f in sorted(counts)
        ]

    # jobs and steps -------------------------------------------------------------------------
    def set_job(self, run_id: str, job_id: str, status: str, event: Event | None, **fields: Unpack[JobFields]) -> None:
        outputs = fields.get("outputs")
        with self._tx(sync=status not in _LAZY_JOB_STATUSES, fence=run_id) as db:
            db.execute(
                "INSERT INTO jobs (run_id, job_id, status, reason, outcome, outputs, started_at, finished_at) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(run_id, job_id) DO UPDATE SET status=excluded.status, "
                "reason=excluded.reason, outcome=excluded.outcome, outputs=excluded.outputs, "
                "started_at=COALESCE(excluded.started_at, jobs.started_at), finished_at=excluded.finished_at",
                (
                    run_id,
                    job_id,
                    status,
                    self._mask(reason) if (reason := fields.get("reason")) else None,
                    fields.get("outcome"),
                    self._mask(_dumps(outputs)) if outputs else "{}",
                    fields.get("started_at"),
                    fields.get("finished_at"),
                ),
            )
            self._history(db, event)

    def _write_step(self, db: Any, run_id: str, w: StepWrite) -> None:
        outputs = self._mask(_dumps(w.outputs)) if w.outputs else "{}"
        error = self._mask(w.error) if w.error else None
        reason = self._mask(w.reason) if w.reason else None
        metadata = self._mask(_dumps(w.metadata)) if w.metadata else "{}"
        db.execute(
            "INSERT INTO steps (run_id, job_id, step_id, status, attempt, outcome, outputs, masked_keys, error, reason, "
            "started_at, finished_at, metadata) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(run_id, job_id, step_id) "
            "DO UPDATE SET status=excluded.status, attempt=excluded.attempt, outcome=excluded.outcome, "
            "outputs=excluded.outputs, masked_keys=excluded.masked_keys, error=excluded.error, reason=excluded.reason, "
            "started_at=COALESCE(excluded.started_at, steps.started_at), finished_at=excluded.finished_at, "
            "metadata=excluded.metadata",
            (
                run_id,
                w.job_id,
                w.step_id,
                w.status,
                w.attempt,
                w.outcome,
                outputs,
                _dumps(list(w.masked_keys)) if w.masked_keys else "[]",
                error,
                reason,
                w.started_at,
                w.finished_at,
                metadata,
            ),
        )
        if w.metadata:  # merged into the run's runtime metadata, key by key, in this transaction
            row = db.execute("SELECT runtime_metadata FROM runs WHERE run_id=?", (run_id,)).fetchone()
            merged = {**(json.loads(row[0]) if row and row[0] else {}), **json.loads(metadata)}
            db.execute("UPDATE runs SET runtime_metadata=? WHERE run_id=?", (_dumps(merged), run_id))
        if w.attempt > 0:
            db.execute(
                "INSERT INTO attempts (run_id, job_id, step_id, attempt, status, outcome, error, started_at, finished_at) "
                "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(run_id, job_id, step_id, attempt) DO UPDATE SET "
                "status=excluded.status, outcome=excluded.outcome, error=excluded.error, "
                "started_at=COALESCE(excluded.started_at, attempts.started_at), finished_at=excluded.finished_at",
                (run_id, w.job_id, w.step_id, w.attempt, w.attempt_status or w.status, w.outcome, error, w.started_at,
                 w.finished_at),
            )

    def set_step(self, run_id: str, write: StepWrite, event: Event | None, *, sync: bool = True) -> None:
        """``sync=False`` only for a step result the caller follows at once with a synchronous
        write (the next step's RUNNING): see the module docstring."""
        with self._tx(sync=sync, fence=run_id) as db:
            self._write_step(db, run_id, write)
            self._history(db, event)

    def set_steps(self, run_id: str, writes: Sequence[StepWrite], event: Event | None) -> None:
        with self._tx(fence=run_id) as db:
            for w in writes:
                self._write_step(db, run_id, w)
            self._history(db, event)

    def jobs(self, run_id: str) -> dict[str, JobRecord]:
        rows = self._query(
            "SELECT job_id, status, reason, outcome, outputs, started_at, finished_at FROM jobs WHERE run_id=?", (run_id,)
        )
        return {
            r[0]: JobRecord(
                run_id=run_id,
                job_id=r[0],
                status=r[1],
                reason=r[2],
                outcome=r[3],
                outputs=_map(r[4]),
                started_at=r[5],
                finished_at=r[6],
            )
            for r in rows
        }

    def steps(self, run_id: str) -> dict[tuple[str, str], StepRecord]:
        rows = self._query(
            "SELECT job_id, step_id, status, attempt, outcome, outputs, masked_keys, error, reason, started_at, finished_at, "
            "metadata FROM steps WHERE run_id=?",
            (run_id,),
        )
        return {
            (r[0], r[1]): StepRecord(
                run_id=run_id,
                job_id=r[0],
                step_id=r[1],
                status=r[2],
                attempt=r[3],
                outcome=r[4],
                outputs=_map(r[5]),
                masked_keys=() if not r[6] or r[6] == "[]" else tuple(json.loads(r[6])),
                error=r[7],
                reason=r[8],
                started_at=r[9],
                finished_at=r[10],
                metadata=_map(r[11]),
            )
            for r in rows
        }

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        rows = self._query(
            "SELECT job_id, step_id, attempt, status, outcome, error, started_at, finished_at FROM attempts "
            "WHERE run_id=? ORDER BY started_at, job_id, step_id, attempt",
            (run_id,),
        )
        return [
            AttemptRecord(
                run_id=run_id,
                job_id=r[0],
                step_id=r[1],
                attempt=r[2],
                status=r[3],
                outcome=r[4],
                error=r[5],
                started_at=r[6],
                finished_at=r[7],
            )
            for r in rows
        ]

    def history(self, run_id: str) -> list[Event]:
        rows = self._query(
            "SELECT event, ts, flow_id, job_id, step_id, attempt, data FROM history WHERE run_id=? ORDER BY id", (run_id,)
        )
        return [
            Event(
                name=r[0],
                run_id=run_id,
                ts=r[1],
                flow_id=r[2] or "",
                job_id=r[3],
                step_id=r[4],
                attempt=r[5],
                data=freeze(json.loads(r[6])) if r[6] else freeze({}),
            )
            for r in rows
        ]

    def append_history(self, event: Event) -> None:
        with self._tx(fence=event.run_id) as db:
            self._history(db, event)

    # captured output --------------------------------------------------------------------------
    def append_output(self, run_id: str, chunks: Sequence[OutputChunk]) -> None:
        if not chunks:
            return
        with self._tx(sync=False, fence=run_id) as db:
            db.executemany(
                "INSERT INTO output (run_id, job_id, step_id, attempt, stream, text, at) VALUES (?,?,?,?,?,?,?)",
                [(run_id, c.job_id, c.step_id, c.attempt, c.stream, self._mask(c.text), c.at) for c in chunks],
            )

    def output(
        self, run_id: str, *, job_id: str | None = None, step_id: str | None = None, attempt: int | None = None,
        after: int = 0, limit: int = 1000,
    ) -> list[OutputChunk]:
        sql = "SELECT id, job_id, step_id, attempt, stream, text, at FROM output WHERE run_id=? AND id>?"
        params: list[Any] = [run_id, after]
        for column, value in (("job_id", job_id), ("step_id", step_id), ("attempt", attempt)):
            if value is not None:
                sql += f" AND {column}=?"
                params.append(value)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [OutputChunk(run_id=run_id, seq=r[0], job_id=r[1], step_id=r[2], attempt=r[3], stream=r[4], text=r[5],
                            at=r[6]) for r in self._query(sql, params)]

    # waits and events -----------------------------------------------------------------------
    def set_wait(self, wait: WaitRecord, write: StepWrite, event: Event | None) -> None:
        with self._tx(fence=wait.run_id) as db:
            self._write_step(db, wait.run_id, write)
            db.execute(
                "INSERT OR REPLACE INTO waits (run_id, job_id, step_id, kind, events, due_at, created_at) VALUES (?,?,?,?,?,?,?)",
                (wait.run_id, wait.job_id, wait.step_id, wait.kind, _dumps(list(wait.events)), wait.due_at, wait.created_at),
            )
            self._history(db, event)

    def waits(self, run_id: str) -> list[WaitRecord]:
        rows = self._query(
            "SELECT job_id, step_id, kind, events, due_at, created_at FROM waits WHERE run_id=? ORDER BY created_at",
            (run_id,),
        )
        return [
            WaitRecord(
                run_id=run_id,
                job_id=r[0],
                step_id=r[1],
                kind=r[2],
                events=tuple(json.loads(r[3] or "[]")),
                due_at=r[4],
                created_at=r[5],
            )
            for r in rows
        ]

    def remove_wait(self, run_id: str, job_id: str, step_id: str) -> None:
        with self._tx(fence=run_id) as db:
            db.execute("DELETE FROM waits WHERE run_id=? AND job_id=? AND step_id=?", (run_id, job_id, step_id))

    def clear_waits(self, run_id: str, event: Event | None) -> None:
        with self._tx(fence=run_id) as db:
            db.execute("DELETE FROM waits WHERE run_id=?", (run_id,))
            self._history(db, event)

    def cancel_run(self, run_id: str, reason: str, now: float, event: Event | None) -> None:
        """One transaction: pending waits removed, waiting/running jobs and steps CANCELLED,
        the run CANCELLED with its reason."""
        reason = self._mask(reason)
        with self._tx() as db:
            db.execute("DELETE FROM waits WHERE run_id=?", (run_id,))
            db.execute("UPDATE jobs SET status='CANCELLED', reason=?, finished_at=? "
                       "WHERE run_id=? AND status IN ('WAITING','RUNNING','PENDING')", (reason, now, run_id))
            db.execute("UPDATE steps SET status='CANCELLED', reason=?, finished_at=? "
                       "WHERE run_id=? AND status IN ('WAITING','RUNNING','PENDING')", (reason, now, run_id))
            db.execute("UPDATE runs SET status='CANCELLED', cancel_reason=?, finished_at=?, due_at=NULL WHERE run_id=?",
                       (reason, now, run_id))
            self._history(db, event)

    def reschedule_run(self, run_id: str, due_at: float, event: Event | None) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE runs SET due_at=? WHERE run_id=? AND status='WAITING'", (due_at, run_id))
            if cur.rowcount != 1:
                return False
            db.execute("UPDATE waits SET due_at=? WHERE run_id=?", (due_at, run_id))
            self._history(db, event)
            return True

    def add_event(self, ev: ReceivedEvent, event: Event | None) -> int:
        with self._tx(fence=ev.run_id) as db:
            cur = db.execute(
                "INSERT INTO received_events (run_id, job_id, step_id, name, data, received_at, consumed) VALUES (?,?,?,?,?,?,0)",
                (ev.run_id, ev.job_id, ev.step_id, ev.name, self._mask(_dumps(ev.data)), ev.received_at),
            )
            self._history(db, event)
            return int(cur.lastrowid or 0)

    def pending_events(self, run_id: str) -> list[ReceivedEvent]:
        rows = self._query(
            "SELECT id, job_id, step_id, name, data, received_at FROM received_events WHERE run_id=? AND consumed=0 ORDER BY id",
            (run_id,),
        )
        return [
            ReceivedEvent(
                id=r[0], run_id=run_id, job_id=r[1], step_id=r[2], name=r[3], data=freeze(json.loads(r[4] or "{}")), received_at=r[5]
            )
            for r in rows
        ]

    def consume_event(self, event_id: int) -> None:
        rows = self._query("SELECT run_id FROM received_events WHERE id=?", (event_id,))
        with self._tx(fence=rows[0][0] if rows else None) as db:
            db.execute("UPDATE received_events SET consumed=1 WHERE id=?", (event_id,))

    def due_runs(self, now: float, *, flow_id: str | None = None, limit: int | None = None) -> list[RunRecord]:
        sql = f"SELECT {', '.join(_LIGHT_RUN_COLUMNS)} FROM runs WHERE status='WAITING' AND due_at IS NOT NULL AND due_at<=?"
        params: list[Any] = [now]
        if flow_id:
            sql += " AND flow_id=?"
            params.append(flow_id)
        sql += " ORDER BY due_at"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return [run_from_row(r, _LIGHT_RUN_COLUMNS) for r in self._query(sql, params)]

    # locks ----------------------------------------------------------------------------------
    def record_lock(self, lock: LockRecord, event: Event | None) -> None:
        with self._tx(sync=False, fence=lock.run_id) as db:
            db.execute(
                "INSERT OR REPLACE INTO locks (name, run_id, pid, host, since, kind) VALUES (?,?,?,?,?,?)",
                (lock.name, lock.run_id, lock.pid, lock.host, lock.since, lock.kind),
            )
            self._history(db, event)

    def remove_lock(self, name: str, run_id: str | None, event: Event | None) -> None:
        with self._tx(sync=False, fence=run_id) as db:
            db.execute("DELETE FROM locks WHERE name=? AND (run_id IS ? OR run_id=?)", (name, run_id, run_id))
            self._history(db, event)

    def locks(self) -> list[LockRecord]:
        rows = self._query("SELECT name, run_id, pid, host, since, kind FROM locks ORDER BY since")
        return [LockRecord(name=r[0], run_id=r[1], pid=r[2], host=r[3], since=r[4], kind=r[5]) for r in rows]

    def lock_holder(self, name: str) -> LockRecord | None:
        rows = self._query("SELECT name, run_id, pid, host, since, kind FROM locks WHERE name=?", (name,))
        if not rows:
            return None
        r = rows[0]
        return LockRecord(name=r[0], run_id=r[1], pid=r[2], host=r[3], since=r[4], kind=r[5])
