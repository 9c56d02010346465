"""PostgreSQL state store (SPEC section 12): several hosts share one database.

Selected by a ``postgresql://`` (or ``postgres://``) URL; psycopg 3 (the ``postgres`` extra).
Credentials come from the URL or from libpq's own sources (``PGPASSWORD``, ``~/.pgpass``,
``PGSERVICE``); a password is never shown: the store's ``location`` is the URL without it, and
every message is scrubbed of it. ``?schema=NAME`` chooses the schema (default ``aetherflow``);
every other query parameter goes to libpq (``sslmode``, ``connect_timeout``...).

Schema. The tables live in one schema, created and migrated on first use in one transaction
under a transaction-level advisory lock, so hosts starting together do not race; the version
is in ``meta``. A schema written by a newer aetherflow is refused (``state.too_new``).

Writes. Every state change is one SQL statement (data-modifying ``WITH`` parts, one per table)
in autocommit, so it is one transaction with its history row and one round trip. The writes
the SQLite store makes without an fsync (``docs/state.md``) are committed here with
``synchronous_commit`` off for that transaction: visible to every session at once, made
durable by the next synchronous commit (WAL is flushed in order), which comes before the next
step starts or the run ends, exactly as in SQLite.

Fencing (``state/store.py``). ``runs.generation`` is raised by every ``create_run``/
``claim_run``; a write of this store for a run it executes checks it in the same statement
(``fence()``, which takes a share lock on the run's row, so a claim and a fenced write are
ordered) and is refused with ``state.fenced`` when another executor has claimed the run.

Locks. Named locks are session-level advisory locks (64-bit keys hashed from the schema and
the name) on one dedicated connection per store object; PostgreSQL frees them when that
session ends, so a killed holder's locks are free as soon as the server notices. A lock object
has one holder per process (PostgreSQL's locks are re-entrant within a session; a table of held
keys makes them exclusive between this process's lock objects too). ``lock_is_free`` reads
``pg_locks``. While locks are held a watchdog thread pings the lock connection every
``LIVENESS_CHECK_SECONDS``; when it (or any write) finds a connection broken, the store is
*lost*: the lost handler is called once and every later write is refused (``state.lost``).

Keepalives. Client side (libpq): a silent server is noticed after 5 s idle + 3 probes 2 s apart,
and data unacknowledged for 15 s fails the connection (``tcp_user_timeout``). Server side (set
for each session): a silent client is noticed after 20 s idle + 4 probes 5 s apart (40 s), so a
dead host's locks are freed within 60 s, and a cut-off executor has given up (15 s) before
another host can take its run over. Values given in the URL win.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Unpack
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from aetherflow.errors import ConflictError, KeyInUseError, StateError, UsageError
from aetherflow.events import Event
from aetherflow.model import KEY_SEPARATOR, freeze
from aetherflow.state.backends import public_location
from aetherflow.state.rows import (
    FENCED_HINT,
    LIGHT_RUN_COLUMNS,
    RUN_COLUMNS,
    RUN_JSON,
    dumps,
    fenced,
    key_value,
    like_prefix,
    load_map,
    run_from_row,
)
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

__all__ = ["DEFAULT_SCHEMA", "SCHEMA_VERSION", "PostgresStore", "lock_ident"]

SCHEMA_VERSION = 1
DEFAULT_SCHEMA = "aetherflow"
#: how often a store holding locks checks that their connection is alive
LIVENESS_CHECK_SECONDS = 1.0
#: how often a lock being waited for is tried again
LOCK_POLL_SECONDS = 0.02
CONNECT_TIMEOUT = "10"
CLIENT_KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "15000",
}
SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": "20",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "4",
    "tcp_user_timeout": "40000",
}
#: SQLSTATE of a write refused by fence()
FENCED = "AF409"
#: run statuses of a run that is over (``delete_runs(finished_before=...)``)
_FINISHED = ("SUCCESS", "FAILED", "CANCELLED", "INTERRUPTED", "TIMED_OUT")
#: writes committed without waiting for the WAL flush (see the module docstring)
_LAZY_JOB_STATUSES = frozenset({"RUNNING", "SUCCESS"})

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _migrations(schema: str) -> tuple[str, ...]:
    s = f'"{schema}"'
    return (
        # version 1
        f"""
        CREATE TABLE {s}.runs (
            seq bigserial NOT NULL,
            run_id text PRIMARY KEY,
            flow_id text NOT NULL,
            flow_file text NOT NULL,
            flow_sha256 text NOT NULL,
            flow_text text NOT NULL DEFAULT '',
            flow_version integer,
            params text NOT NULL DEFAULT '{{}}',
            business_key text,
            key_scope text,
            status text NOT NULL,
            pid integer,
            host text,
            created_at double precision NOT NULL,
            started_at double precision,
            updated_at double precision,
            finished_at double precision,
            attempt integer NOT NULL DEFAULT 1,
            plugin_paths text NOT NULL DEFAULT '[]',
            selected_jobs text NOT NULL DEFAULT '[]',
            error text,
            workspace_root text,
            cancel_reason text,
            due_at double precision,
            profile text,
            tags text NOT NULL DEFAULT '[]',
            flow_metadata text NOT NULL DEFAULT '{{}}',
            meta text NOT NULL DEFAULT '{{}}',
            runtime_metadata text NOT NULL DEFAULT '{{}}',
            key_value text,
            generation bigint NOT NULL DEFAULT 1
        );
        CREATE INDEX runs_created ON {s}.runs (created_at DESC, seq DESC);
        CREATE INDEX runs_flow_created ON {s}.runs (flow_id, created_at DESC, seq DESC);
        CREATE INDEX runs_status_created ON {s}.runs (status, created_at DESC, seq DESC);
        CREATE INDEX runs_due ON {s}.runs (due_at) WHERE status = 'WAITING' AND due_at IS NOT NULL;
        CREATE INDEX runs_key ON {s}.runs (business_key, created_at DESC, seq DESC);
        CREATE INDEX runs_key_value ON {s}.runs (key_value, created_at DESC, seq DESC);
        CREATE TABLE {s}.run_tags (
            tag text NOT NULL,
            run_id text NOT NULL,
            PRIMARY KEY (tag, run_id)
        );
        CREATE INDEX runs_id_prefix ON {s}.runs (run_id text_pattern_ops);
        CREATE TABLE {s}.jobs (
            run_id text NOT NULL,
            job_id text NOT NULL,
            status text NOT NULL,
            reason text,
            outcome text,
            outputs text NOT NULL DEFAULT '{{}}',
            started_at double precision,
            finished_at double precision,
            PRIMARY KEY (run_id, job_id)
        );
        CREATE TABLE {s}.steps (
            run_id text NOT NULL,
            job_id text NOT NULL,
            step_id text NOT NULL,
            status text NOT NULL,
            attempt integer NOT NULL DEFAULT 0,
            outcome text,
            outputs text NOT NULL DEFAULT '{{}}',
            masked_keys text NOT NULL DEFAULT '[]',
            error text,
            reason text,
            started_at double precision,
            finished_at double precision,
            metadata text NOT NULL DEFAULT '{{}}',
            PRIMARY KEY (run_id, job_id, step_id)
        );
        CREATE TABLE {s}.attempts (
            run_id text NOT NULL,
            job_id text NOT NULL,
            step_id text NOT NULL,
            attempt integer NOT NULL,
            status text NOT NULL,
            outcome text,
            error text,
            started_at double precision,
            finished_at double precision,
            PRIMARY KEY (run_id, job_id, step_id, attempt)
        );
        CREATE TABLE {s}.waits (
            run_id text NOT NULL,
            job_id text NOT NULL,
            step_id text NOT NULL,
            kind text NOT NULL,
            events text NOT NULL DEFAULT '[]',
            due_at double precision,
            created_at double precision NOT NULL,
            PRIMARY KEY (run_id, job_id, step_id)
        );
        CREATE TABLE {s}.received_events (
            id bigserial PRIMARY KEY,
            run_id text NOT NULL,
            job_id text NOT NULL,
            step_id text NOT NULL,
            name text NOT NULL,
            data text NOT NULL DEFAULT '{{}}',
            received_at double precision NOT NULL,
            consumed boolean NOT NULL DEFAULT false
        );
        CREATE INDEX received_events_run ON {s}.received_events (run_id, consumed);
        CREATE TABLE {s}.history (
            id bigserial PRIMARY KEY,
            run_id text NOT NULL,
            ts double precision NOT NULL,
            event text NOT NULL,
            flow_id text,
            job_id text,
            step_id text,
            attempt integer,
            data text
        );
        CREATE INDEX history_run ON {s}.history (run_id, id);
        CREATE TABLE {s}.output (
            id bigserial PRIMARY KEY,
            run_id text NOT NULL,
            job_id text NOT NULL,
            step_id text NOT NULL,
            attempt integer NOT NULL,
            stream text NOT NULL,
            text text NOT NULL,
            at double precision NOT NULL
        );
        CREATE INDEX output_run ON {s}.output (run_id, id);
        CREATE TABLE {s}.notices (
            run_id text NOT NULL,
            kind text NOT NULL,
            at double precision NOT NULL,
            PRIMARY KEY (run_id, kind)
        );
        CREATE TABLE {s}.locks (
            name text PRIMARY KEY,
            run_id text,
            pid integer,
            host text,
            since double precision NOT NULL,
            kind text NOT NULL
        );
        CREATE FUNCTION {s}.fence(p_run text, p_generation bigint) RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            current_generation bigint;
        BEGIN
            SELECT generation INTO current_generation FROM {s}.runs WHERE run_id = p_run FOR SHARE;
            IF current_generation IS DISTINCT FROM p_generation THEN
                RAISE EXCEPTION 'run % was taken over by another executor (generation %; this process has %)',
                    p_run, coalesce(current_generation::text, 'none'), p_generation USING ERRCODE = '{FENCED}';
            END IF;
        END
        $$;
        """,
    )


def _key_filter(key: str) -> str:
    """The WHERE term (one parameter) matching runs holding business key ``key``: ``NAME::VALUE``
    exactly, a bare ``VALUE`` under any name (both indexed)."""
    return "business_key = %s" if KEY_SEPARATOR in key else "key_value = %s"


def lock_ident(schema: str, name: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of lock ``name`` in ``schema``."""
    digest = hashlib.blake2b(f"{schema}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _halves(ident: int) -> tuple[int, int]:
    """The two 32-bit halves ``pg_locks`` shows a bigint advisory key as (classid, objid)."""
    u = ident & 0xFFFF_FFFF_FFFF_FFFF
    return u >> 32, u & 0xFFFF_FFFF


def _parse(url: str) -> tuple[dict[str, Any], str]:
    """libpq parameters and the schema of a store URL; a bad URL is a usage error."""
    public = public_location(url)
    try:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError as exc:
        raise UsageError(f"invalid state store URL {public}: {exc}", code="usage.store_url") from exc
    schema = DEFAULT_SCHEMA
    rest: list[tuple[str, str]] = []
    for k, v in pairs:
        if k == "schema":
            schema = v
        else:
            rest.append((k, v))
    if not _SCHEMA_NAME.match(schema):
        raise UsageError(
            f"invalid state store URL {public}: schema {schema!r} is not a plain identifier "
            "(letters, digits and _, at most 63, not starting with a digit)",
            code="usage.store_url",
        )
    libpq_url = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), ""))
    try:
        params = conninfo_to_dict(libpq_url)
    except psycopg.Error as exc:
        raise UsageError(f"invalid state store URL {public}: {str(exc).strip()}", code="usage.store_url") from exc
    return params, schema


class PostgresStore:
    """``StateStore`` on a PostgreSQL schema; named locks are session advisory locks."""

    @classmethod
    def probe(cls, url: str) -> str:
        """What ``doctor`` says about the store at ``url``, creating nothing: reachable, its
        schema version, or what the first run will need. Errors as ``StateError``."""
        store = cls.__new__(cls)
        store._init_fields(url, None)
        conn = store._conn = store._connect("probe")
        user = conn.info.user
        try:
            version = store._schema_version()
            if version is not None:
                store._check_version(version)
                return f"{store._public} reachable, schema \"{store._schema}\" version {version}"
            row = conn.execute(
                "SELECT has_database_privilege(current_database(), 'CREATE') OR EXISTS (SELECT 1 FROM pg_namespace "
                "WHERE nspname = %s AND pg_has_role(nspowner, 'USAGE'))", (store._schema,)).fetchone()
        except psycopg.Error as exc:
            raise store._error(exc, "checking it") from None
        finally:
            conn.close()
        if row is None or not row[0]:
            raise StateError(
                f"{store._public} reachable, but user {user} may not create schema \"{store._schema}\"",
                code="state.permission",
                hint=f"grant it CREATE on the database, or have its owner run: CREATE SCHEMA \"{store._schema}\" "
                f"AUTHORIZATION \"{user}\"",
            )
        return f"{store._public} reachable; schema \"{store._schema}\" is created by the first run"

    def _init_fields(self, url: str, mask: Callable[[str], str] | None) -> None:
        self._public = public_location(url)
        self._params, self._schema = _parse(url)
        password = str(self._params.get("password") or "")
        self._secrets = [p for p in {password, quote(password, safe="")} if p]
        self._mask = mask or (lambda s: s)
        self._generations: dict[str, int] = {}
        self._state_lock = threading.Lock()
        self._lost: str | None = None
        self._on_lost: Callable[[str], None] | None = None
        self._unsynced = False
        self._closed = False

    def __init__(self, url: str, *, mask: Callable[[str], str] | None = None) -> None:
        self._init_fields(url, mask)
        self._conn = self._connect("data")
        self._locks = _LockSession(self)
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # plumbing ------------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return self._public

    def set_mask(self, mask: Callable[[str], str]) -> None:
        self._mask = mask

    def set_lost_handler(self, handler: Callable[[str], None]) -> None:
        with self._state_lock:
            self._on_lost = handler
            lost = self._lost
        if lost is not None:
            handler(lost)

    def _scrub(self, text: str) -> str:
        """A driver's message for one line of ours: without the password, whitespace collapsed."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())

    def _connect(self, role: str) -> psycopg.Connection[Any]:
        kw: dict[str, Any] = dict(self._params)
        kw.setdefault("connect_timeout", CONNECT_TIMEOUT)
        for k, v in CLIENT_KEEPALIVES.items():
            kw.setdefault(k, v)
        kw.setdefault("application_name", f"aetherflow/{os.getpid()}/{role}")
        try:
            conn = psycopg.connect(autocommit=True, **kw)
        except psycopg.Error as exc:
            raise StateError(
                f"cannot connect to the state store {self._public}: {self._scrub(str(exc).strip())}",
                code="state.unreachable",
                hint="check that the server runs and the URL (host, port, database, user); a password comes from "
                "the URL, PGPASSWORD, ~/.pgpass or PGSERVICE",
            ) from None
        settings = {"search_path": f'"{self._schema}"', **SERVER_KEEPALIVES}
        sets = ", ".join("set_config(%s, %s, false)" for _ in settings)
        try:
            conn.execute(f"SELECT {sets}", [x for kv in settings.items() for x in kv])
        except psycopg.Error as exc:
            conn.close()
            raise StateError(f"state store {self._public}: cannot set up the session: {self._scrub(str(exc).strip())}",
                             code="state.error") from None
        return conn

    def _error(self, exc: psycopg.Error, doing: str, conn: psycopg.Connection[Any] | None = None) -> StateError:
        """A psycopg error as ours: a broken connection loses the store, a fence refusal is
        ``state.fenced``, a missing privilege says which."""
        text = self._scrub(str(exc).strip())
        conn = conn or self._conn
        if exc.sqlstate == FENCED:
            return StateError(f"{text}: this write was refused", code="state.fenced", hint=FENCED_HINT)
        if conn.broken or conn.closed:
            self._mark_lost(f"the connection to the database failed ({text})")
            return self._lost_error(doing)
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            return StateError(f"state store {self._public}: permission denied {doing}: {text}", code="state.permission",
                              hint=f"the database user needs the privileges of the owner of schema \"{self._schema}\"")
        return StateError(f"state store {self._public}: {doing}: {text}", code="state.error")

    def _lost_error(self, doing: str) -> StateError:
        hint = ("what this process executes is stopped and it records nothing more; a run it executed shows "
                "CRASHED: resume it (from any host sharing the store) once the database is reachable"
                if self._on_lost is not None else "check that the database is reachable, then run the command again")
        return StateError(f"lost the state store {self._public} {doing}: {self._lost}", code="state.lost", hint=hint)

    def _mark_lost(self, reason: str) -> None:
        with self._state_lock:
            if self._lost is not None:
                return
            self._lost = reason
            handler = self._on_lost
        if handler is not None:
            handler(reason)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise self._error(exc, "reading") from None

    def _write(self, parts: Sequence[tuple[str, Sequence[Any]]], *, fence: str | None = None, sync: bool = True,
               value: str | None = None, value_params: Sequence[Any] = ()) -> Any:
        """One write: ``parts`` (data-modifying statements) as the ``WITH`` clauses ``w0``,
        ``w1``... of one statement, fenced when this store executes run ``fence``, committed
        without waiting for the WAL flush when not ``sync``. ``value`` is an expression over
        them the statement returns (``(SELECT id FROM w0)``)."""
        if self._lost is not None:
            raise self._lost_error("before writing")
        stmt, params = self._statement(parts, fence=fence, sync=sync, value=value, value_params=value_params)
        try:
            row = self._conn.execute(stmt, params).fetchone()
        except psycopg.Error as exc:
            raise self._error(exc, "writing") from None
        if not sync:
            self._unsynced = True
        return row[-1] if row else None

    def _statement(self, parts: Sequence[tuple[str, Sequence[Any]]], *, fence: str | None = None, sync: bool = True,
                   value: str | None = None, value_params: Sequence[Any] = ()) -> tuple[str, list[Any]]:
        """The one statement of a write (see ``_write``) and its parameters."""
        params: list[Any] = []
        ctes = []
        for i, (sql, p) in enumerate(parts):
            ctes.append(f"w{i} AS ({sql})")
            params.extend(p)
        cols = []
        generation = self._generations.get(fence) if fence is not None else None
        if generation is not None:
            cols.append("fence(%s, %s)")
            params.extend((fence, generation))
        if not sync:
            cols.append("set_config('synchronous_commit', 'off', true)")
        cols.append(value or "1")
        params.extend(value_params)
        stmt = (f"WITH {', '.join(ctes)} " if ctes else "") + f"SELECT {', '.join(cols)}"
        return stmt, params

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[psycopg.Cursor[Any]]:
        """An explicit transaction, for the few writes that are more than one statement: many rows
        (``load_run``, ``delete_runs``), a business key's admission, a step's metadata merge."""
        if self._lost is not None:
            raise self._lost_error(f"before {doing}")
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                yield cur
        except psycopg.Error as exc:
            raise self._error(exc, doing) from None

    def _history_part(self, event: Event | None) -> list[tuple[str, Sequence[Any]]]:
        if event is None:
            return []
        data = self._mask(dumps(event.data)) if event.data else None
        return [("INSERT INTO history (run_id, ts, event, flow_id, job_id, step_id, attempt, data) "
                 "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                 (event.run_id, event.ts, event.name, event.flow_id, event.job_id, event.step_id, event.attempt, data))]

    def _migrate(self) -> None:
        version = self._schema_version()
        if version == SCHEMA_VERSION:
            return
        self._check_version(version)
        migrations = _migrations(self._schema)
        try:
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_ident(self._schema, "\0migrate"),))
                exists = self._conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self._schema,)).fetchone()
                if exists is None:
                    self._conn.execute(f'CREATE SCHEMA "{self._schema}"')
                self._conn.execute(f'CREATE TABLE IF NOT EXISTS "{self._schema}".meta (key text PRIMARY KEY, value text NOT NULL)')
                row = self._conn.execute(f"SELECT value FROM \"{self._schema}\".meta WHERE key = 'schema_version'").fetchone()
                current = int(row[0]) if row else 0
                self._check_version(current)
                for i in range(current, SCHEMA_VERSION):
                    self._conn.execute(migrations[i])
                self._conn.execute(
                    f"INSERT INTO \"{self._schema}\".meta (key, value) VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))
        except StateError:
            raise
        except pg_errors.InsufficientPrivilege as exc:
            user = self._conn.info.user
            raise StateError(
                f"cannot create the tables of the state store {self._public}: {self._scrub(str(exc).strip())}",
                code="state.permission",
                hint=f"the first use creates schema \"{self._schema}\" and its tables: grant user {user} CREATE on "
                f"the database, or have its owner run: CREATE SCHEMA \"{self._schema}\" AUTHORIZATION \"{user}\"",
            ) from None
        except psycopg.Error as exc:
            raise self._error(exc, "creating its tables") from None

    def _schema_version(self) -> int | None:
        try:
            row = self._conn.execute(f"SELECT value FROM \"{self._schema}\".meta WHERE key = 'schema_version'").fetchone()
        except (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName):
            return None
        except psycopg.Error as exc:
            raise self._error(exc, "reading its schema version") from None
        return int(row[0]) if row else None

    def _check_version(self, version: int | None) -> None:
        if version is not None and version > SCHEMA_VERSION:
            raise StateError(
                f"state store {self._public} (schema \"{self._schema}\") has schema version {version}, newer than "
                f"this aetherflow understands ({SCHEMA_VERSION})",
                code="state.too_new",
                hint="upgrade aetherflow on this host to the version the other hosts run",
            )

    def sync(self) -> None:
        """Make every commit so far durable: a synchronous commit of a transaction with an id
        flushes the WAL up to it, the commits made without waiting included. (A later
        synchronous write does the same when it changed a row; one that changed none would not,
        so only this clears the mark.)"""
        if not self._unsynced:
            return
        if self._lost is not None:
            raise self._lost_error("before syncing")
        try:
            self._conn.execute("SELECT pg_current_xact_id()")
        except psycopg.Error as exc:
            raise self._error(exc, "syncing") from None
        self._unsynced = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._locks.close()
        with suppress(psycopg.Error):
            self._conn.close()

    # locks ---------------------------------------------------------------------------------
    def lock(self, name: str) -> PgLock:
        return PgLock(self._locks, name, lock_ident(self._schema, name))

    def lock_is_free(self, name: str) -> bool:
        classid, objid = _halves(lock_ident(self._schema, name))
        rows = self._query(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = %s::bigint::oid "
            "AND objid = %s::bigint::oid AND objsubid = 1)",
            (classid, objid),
        )
        return bool(rows[0][0])

    def record_lock(self, lock: LockRecord, event: Event | None) -> None:
        self._write(
            [("INSERT INTO locks (name, run_id, pid, host, since, kind) VALUES (%s, %s, %s, %s, %s, %s) "
              "ON CONFLICT (name) DO UPDATE SET run_id = excluded.run_id, pid = excluded.pid, host = excluded.host, "
              "since = excluded.since, kind = excluded.kind",
              (lock.name, lock.run_id, lock.pid, lock.host, lock.since, lock.kind)), *self._history_part(event)],
            fence=lock.run_id, sync=False)

    def remove_lock(self, name: str, run_id: str | None, event: Event | None) -> None:
        self._write([("DELETE FROM locks WHERE name = %s AND run_id IS NOT DISTINCT FROM %s", (name, run_id)),
                     *self._history_part(event)], fence=run_id, sync=False)

    def locks(self) -> list[LockRecord]:
        rows = self._query("SELECT name, run_id, pid, host, since, kind FROM locks ORDER BY since")
        return [LockRecord(name=r[0], run_id=r[1], pid=r[2], host=r[3], since=r[4], kind=r[5]) for r in rows]

    def lock_holder(self, name: str) -> LockRecord | None:
        rows = self._query("SELECT name, run_id, pid, host, since, kind FROM locks WHERE name = %s", (name,))
        if not rows:
            return None
        r = rows[0]
        return LockRecord(name=r[0], run_id=r[1], pid=r[2], host=r[3], since=r[4], kind=r[5])

    # runs ----------------------------------------------------------------------------------
    def _run_values(self, run: RunRecord, mask: Callable[[str], str]) -> list[Any]:
        return [mask(dumps(getattr(run, c))) if c in RUN_JSON else getattr(run, c) for c in RUN_COLUMNS]

    def create_run(self, run: RunRecord, event: Event) -> None:
        """Insert the run. With a business key, admission is one transaction under a
        transaction-level advisory lock on the key: hosts admitting the same key at once are
        taken one after the other, and each sees the runs admitted before it."""
        parts: list[tuple[str, Sequence[Any]]] = [(
            f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}, key_value) VALUES ({', '.join(['%s'] * (len(RUN_COLUMNS) + 1))})",
            [*self._run_values(run, self._mask), key_value(run.business_key)])]
        if run.tags:
            parts.append(("INSERT INTO run_tags (tag, run_id) SELECT DISTINCT t, %s FROM unnest(%s::text[]) AS t",
                          (run.run_id, list(run.tags))))
        stmt, params = self._statement([*parts, *self._history_part(event)])
        try:
            if run.business_key is None:
                if self._lost is not None:
                    raise self._lost_error("before writing")
                self._conn.execute(stmt, params)
            else:
                with self._transaction("admitting the run") as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock_ident(self._schema, "\0key:" + run.business_key),))
                    sql = "SELECT run_id, status, pid, host FROM runs WHERE business_key = %s AND status IN ('RUNNING', 'WAITING')"
                    args: list[Any] = [run.business_key]
                    if run.key_scope != "*":  # a global run conflicts with every holder; others with their
                        sql += " AND (key_scope IS NOT DISTINCT FROM %s OR key_scope = '*')"  # scope and global ones
                        args.append(run.key_scope)
                    cur.execute(sql + " LIMIT 1", args)
                    h = cur.fetchone()
                    if h is not None:
                        err = KeyInUseError(
                            f"business key '{run.business_key}' is held by run {h[0]} ({h[1]}, pid {h[2]} on {h[3]})",
                            hint=f"wait for it, or `aetherflow cancel {h[0]}`",
                        )
                        err.holder = h[0]  # type: ignore[attr-defined]
                        raise err
                    cur.execute(stmt, params)
        except pg_errors.UniqueViolation:
            raise ConflictError(f"run {run.run_id} is already recorded in {self._public}", code="run.exists") from None
        except psycopg.Error as exc:
            raise self._error(exc, "writing") from None
        self._generations[run.run_id] = 1

    def _runs(self, sql: str, params: Sequence[Any]) -> list[RunRecord]:
        return [run_from_row(r, LIGHT_RUN_COLUMNS) for r in self._query(sql, params)]

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._query(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id = %s", (run_id,))
        return run_from_row(rows[0], RUN_COLUMNS) if rows else None

    def cancel_reason(self, run_id: str) -> str | None:
        rows = self._query("SELECT cancel_reason FROM runs WHERE run_id = %s", (run_id,))
        return rows[0][0] if rows and rows[0][0] else None

    def run_ids(self, prefix: str, limit: int = 50) -> list[str]:
        rows = self._query(
            "SELECT run_id FROM runs WHERE run_id LIKE %s ESCAPE '\\' ORDER BY created_at DESC, seq DESC LIMIT %s",
            (like_prefix(prefix), limit),
        )
        return [r[0] for r in rows]

    def find_runs(self, prefix: str) -> list[RunRecord]:
        rows = self._query(
            f"SELECT {', '.join(LIGHT_RUN_COLUMNS)} FROM runs WHERE run_id LIKE %s ESCAPE '\\' LIMIT 5",
            (like_prefix(prefix),),
        )
        return [run_from_row(r, LIGHT_RUN_COLUMNS) for r in rows]

    def list_runs(
        self, *, status: str | None = None, flow_id: str | None = None, key: str | None = None,
        tags: Sequence[str] = (), limit: int = 50,
    ) -> list[RunRecord]:
        where: list[str] = []
        params: list[Any] = []
        if status:
            where.append("status = %s")
            params.append(status)
        if flow_id:
            where.append("flow_id = %s")
            params.append(flow_id)
        if key:
            where.append(_key_filter(key))
            params.append(key)
        for tag in tags:
            where.append("EXISTS (SELECT 1 FROM run_tags t WHERE t.tag = %s AND t.run_id = runs.run_id)")
            params.append(tag)
        sql = f"SELECT {', '.join(LIGHT_RUN_COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, seq DESC LIMIT %s"
        params.append(limit)
        return self._runs(sql, params)

    def update_run(self, run_id: str, event: Event | None, **fields: Unpack[RunFields]) -> None:
        sets: list[str] = []
        values: list[Any] = []
        for k, v in fields.items():
            if k not in RUN_COLUMNS or k == "run_id":
                raise ValueError(f"unknown run column {k}")
            if k in RUN_JSON:
                v = self._mask(dumps(v))
            elif k in ("error", "cancel_reason") and v is not None:
                v = self._mask(str(v))
            sets.append(f"{k} = %s")
            values.append(v)
        generation = self._generations.get(run_id)
        if not sets:
            self._write(self._history_part(event), fence=run_id)
            return
        if generation is None:
            self._write([(f"UPDATE runs SET {', '.join(sets)} WHERE run_id = %s", (*values, run_id)),
                         *self._history_part(event)])
            return
        # the run's row is updated here: the fence is the update's own condition, and fence()
        # (which explains the refusal) runs only when no row matched
        self._write(
            [(f"UPDATE runs SET {', '.join(sets)} WHERE run_id = %s AND generation = %s RETURNING 1",
              (*values, run_id, generation)), *self._history_part(event)],
            value="(CASE WHEN NOT EXISTS (SELECT 1 FROM w0) THEN fence(%s, %s) END)",
            value_params=(run_id, generation),
        )

    def claim_run(self, run_id: str, expect_status: str, pid: int, host: str, event: Event | None) -> bool:
        """Move the run from ``expect_status`` to RUNNING for this executor with the next
        generation, at once (the row's lock orders concurrent claims: one wins)."""
        crash = "the runner process died during this attempt"
        claimed = "EXISTS (SELECT 1 FROM w0)"
        parts: list[tuple[str, Sequence[Any]]] = [
            ("UPDATE runs SET status = 'RUNNING', pid = %s, host = %s, attempt = attempt + 1, generation = generation + 1 "
             "WHERE run_id = %s AND status = %s RETURNING generation", (pid, host, run_id, expect_status)),
            (f"UPDATE attempts SET status = 'FAILED', error = %s WHERE run_id = %s AND status = 'RUNNING' AND {claimed}",
             (crash, run_id)),
            (f"UPDATE steps SET status = 'FAILED', error = %s WHERE run_id = %s AND status = 'RUNNING' AND {claimed}",
             (crash, run_id)),
        ]
        if event is not None:
            data = self._mask(dumps(event.data)) if event.data else None
            parts.append(("INSERT INTO history (run_id, ts, event, flow_id, job_id, step_id, attempt, data) "
                          "SELECT %s, %s, %s, %s, %s, %s, %s, %s FROM w0",
                          (event.run_id, event.ts, event.name, event.flow_id, event.job_id, event.step_id,
                           event.attempt, data)))
        generation = self._write(parts, value="(SELECT generation FROM w0)")
        if generation is None:
            return False
        self._generations[run_id] = int(generation)
        return True

    def runs_for_key(self, key: str, *, flow_id: str | None = None, active_only: bool = False) -> list[RunRecord]:
        sql = f"SELECT {', '.join(LIGHT_RUN_COLUMNS)} FROM runs WHERE {_key_filter(key)}"
        params: list[Any] = [key]
        if flow_id:
            sql += " AND flow_id = %s"
            params.append(flow_id)
        if active_only:
            sql += " AND status IN ('RUNNING', 'WAITING')"
        sql += " ORDER BY created_at DESC, seq DESC"
        return self._runs(sql, params)

    def reschedule_run(self, run_id: str, due_at: float, event: Event | None) -> bool:
        parts: list[tuple[str, Sequence[Any]]] = [
            ("UPDATE runs SET due_at = %s WHERE run_id = %s AND status = 'WAITING' RETURNING 1", (due_at, run_id)),
            ("UPDATE waits SET due_at = %s WHERE run_id = %s AND EXISTS (SELECT 1 FROM w0)", (due_at, run_id)),
        ]
        if event is not None:
            data = self._mask(dumps(event.data)) if event.data else None
            parts.append(("INSERT INTO history (run_id, ts, event, flow_id, job_id, step_id, attempt, data) "
                          "SELECT %s, %s, %s, %s, %s, %s, %s, %s FROM w0",
                          (event.run_id, event.ts, event.name, event.flow_id, event.job_id, event.step_id,
                           event.attempt, data)))
        return bool(self._write(parts, value="EXISTS (SELECT 1 FROM w0)"))

    def cancel_run(self, run_id: str, reason: str, now: float, event: Event | None) -> None:
        """One statement: pending waits removed, waiting/running jobs and steps CANCELLED, the
        run CANCELLED with its reason."""
        reason = self._mask(reason)
        active = "('WAITING', 'RUNNING', 'PENDING')"
        self._write([
            ("DELETE FROM waits WHERE run_id = %s", (run_id,)),
            (f"UPDATE jobs SET status = 'CANCELLED', reason = %s, finished_at = %s WHERE run_id = %s AND status IN {active}",
             (reason, now, run_id)),
            (f"UPDATE steps SET status = 'CANCELLED', reason = %s, finished_at = %s WHERE run_id = %s AND status IN {active}",
             (reason, now, run_id)),
            ("UPDATE runs SET status = 'CANCELLED', cancel_reason = %s, finished_at = %s, due_at = NULL WHERE run_id = %s",
             (reason, now, run_id)),
            *self._history_part(event),
        ])

    def delete_runs(self, run_ids: Sequence[str], *, finished_before: float | None = None) -> list[str]:
        """Each run under its executor lock (taken without waiting; a held one is skipped), in
        its own transaction. Advisory locks leave nothing behind to remove."""
        deleted: list[str] = []
        for rid in dict.fromkeys(run_ids):
            if not self._query("SELECT 1 FROM runs WHERE run_id = %s", (rid,)):
                continue
            lock = self.lock(run_lock_key(rid))
            if not lock.acquire(0):
                continue
            try:
                with self._transaction("deleting runs") as cur:
                    cur.execute("SELECT status, COALESCE(finished_at, created_at) FROM runs WHERE run_id = %s FOR UPDATE",
                                (rid,))
                    row = cur.fetchone()
                    if row is None or (finished_before is not None
                                       and (row[0] not in _FINISHED or row[1] >= finished_before)):
                        continue
                    for table in ("steps", "jobs", "attempts", "waits", "received_events", "history", "run_tags",
                                  "output", "notices", "runs"):
                        cur.execute(f"DELETE FROM {table} WHERE run_id = %s", (rid,))
                    cur.execute("DELETE FROM locks WHERE name = %s", (run_lock_key(rid),))
                    deleted.append(rid)
            finally:
                lock.release()
        return deleted

    def mark_notified(self, run_id: str, kind: str, event: Event | None) -> bool:
        parts: list[tuple[str, Sequence[Any]]] = [
            ("INSERT INTO notices (run_id, kind, at) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
             (run_id, kind, time.time())),
        ]
        if event is not None:
            data = self._mask(dumps(event.data)) if event.data else None
            parts.append(("INSERT INTO history (run_id, ts, event, flow_id, job_id, step_id, attempt, data) "
                          "SELECT %s, %s, %s, %s, %s, %s, %s, %s FROM w0",
                          (event.run_id, event.ts, event.name, event.flow_id, event.job_id, event.step_id,
                           event.attempt, data)))
        return bool(self._write(parts, value="EXISTS (SELECT 1 FROM w0)"))

    def flow_summaries(self) -> list[FlowSummary]:
        counts: dict[str, dict[str, int]] = {}
        for flow_id, status, n in self._query("SELECT flow_id, status, COUNT(*) FROM runs GROUP BY flow_id, status"):
            counts.setdefault(flow_id, {})[status] = int(n)
        last = {rec.flow_id: rec for rec in self._runs(
            f"SELECT DISTINCT ON (flow_id) {', '.join(LIGHT_RUN_COLUMNS)} FROM runs "
            "ORDER BY flow_id, created_at DESC, seq DESC", ())}
        success = dict(self._query("SELECT flow_id, MAX(COALESCE(finished_at, updated_at)) FROM runs "
                                   "WHERE status = 'SUCCESS' GROUP BY flow_id"))
        failures = dict(self._query("SELECT r.flow_id, COUNT(*) FROM attempts a JOIN runs r ON r.run_id = a.run_id "
                                    "WHERE a.status = 'FAILED' GROUP BY r.flow_id"))
        return [
            FlowSummary(flow_id=f, runs_by_status=freeze(counts[f]), last_run=last.get(f), last_success_at=success.get(f),
                        step_failures=int(failures.get(f, 0)))
            for f in sorted(counts)
        ]

    def dump_run(self, run_id: str) -> RunDump | None:
        run = self.get_run(run_id)
        if run is None:
            return None
        rows = self._query(
            "SELECT id, job_id, step_id, name, data, received_at, consumed FROM received_events WHERE run_id = %s "
            "ORDER BY id", (run_id,))
        events = tuple(
            ReceivedEvent(id=r[0], run_id=run_id, job_id=r[1], step_id=r[2], name=r[3], data=load_map(r[4]),
                          received_at=r[5], consumed=bool(r[6]))
            for r in rows
        )
        notices = tuple((r[0], r[1]) for r in self._query(
            "SELECT kind, at FROM notices WHERE run_id = %s ORDER BY kind COLLATE \"C\"", (run_id,)))
        return RunDump(run=run, jobs=tuple(self.jobs(run_id).values()), steps=tuple(self.steps(run_id).values()),
                       attempts=tuple(self.attempts(run_id)), waits=tuple(self.waits(run_id)), events=events,
                       history=tuple(self.history(run_id)), output=tuple(self.output(run_id, limit=2**62)),
                       notices=notices)

    def load_run(self, dump: RunDump) -> None:
        run = dump.run
        rid = run.run_id
        with self._transaction(f"copying run {rid}") as cur:
            cur.execute("SELECT 1 FROM runs WHERE run_id = %s FOR UPDATE", (rid,))
            if cur.fetchone() is not None:
                raise ConflictError(f"run {rid} is already recorded in {self._public}", code="store.run_exists")
            cur.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}, key_value) "
                        f"VALUES ({', '.join(['%s'] * (len(RUN_COLUMNS) + 1))})",
                        [*self._run_values(run, lambda s: s), key_value(run.business_key)])
            cur.executemany("INSERT INTO run_tags (tag, run_id) VALUES (%s, %s)", [(t, rid) for t in dict.fromkeys(run.tags)])
            cur.executemany(
                "INSERT INTO jobs (run_id, job_id, status, reason, outcome, outputs, started_at, finished_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(rid, j.job_id, j.status, j.reason, j.outcome, dumps(j.outputs) if j.outputs else "{}", j.started_at,
                  j.finished_at) for j in dump.jobs])
            cur.executemany(
                "INSERT INTO steps (run_id, job_id, step_id, status, attempt, outcome, outputs, masked_keys, error, reason, "
                "started_at, finished_at, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(rid, st.job_id, st.step_id, st.status, st.attempt, st.outcome, dumps(st.outputs) if st.outputs else "{}",
                  dumps(list(st.masked_keys)) if st.masked_keys else "[]", st.error, st.reason, st.started_at,
                  st.finished_at, dumps(st.metadata) if st.metadata else "{}") for st in dump.steps])
            cur.executemany(
                "INSERT INTO attempts (run_id, job_id, step_id, attempt, status, outcome, error, started_at, finished_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(rid, a.job_id, a.step_id, a.attempt, a.status, a.outcome, a.error, a.started_at, a.finished_at)
                 for a in dump.attempts])
            cur.executemany(
                "INSERT INTO waits (run_id, job_id, step_id, kind, events, due_at, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(rid, w.job_id, w.step_id, w.kind, dumps(list(w.events)), w.due_at, w.created_at) for w in dump.waits])
            cur.executemany(
                "INSERT INTO received_events (run_id, job_id, step_id, name, data, received_at, consumed) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(rid, e.job_id, e.step_id, e.name, dumps(e.data), e.received_at, e.consumed) for e in dump.events])
            cur.executemany(
                "INSERT INTO history (run_id, ts, event, flow_id, job_id, step_id, attempt, data) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(rid, e.ts, e.name, e.flow_id, e.job_id, e.step_id, e.attempt, dumps(e.data) if e.data else None)
                 for e in dump.history])
            cur.executemany(
                "INSERT INTO output (run_id, job_id, step_id, attempt, stream, text, at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(rid, c.job_id, c.step_id, c.attempt, c.stream, c.text, c.at) for c in dump.output])
            cur.executemany("INSERT INTO notices (run_id, kind, at) VALUES (%s, %s, %s)", [(rid, k, at) for k, at in dump.notices])

    # jobs and steps ------------------------------------------------------------------------
    def set_job(self, run_id: str, job_id: str, status: str, event: Event | None, **fields: Unpack[JobFields]) -> None:
        outputs = fields.get("outputs")
        reason = fields.get("reason")
        self._write(
            [("INSERT INTO jobs (run_id, job_id, status, reason, outcome, outputs, started_at, finished_at) "
              "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id, job_id) DO UPDATE SET status = excluded.status, "
              "reason = excluded.reason, outcome = excluded.outcome, outputs = excluded.outputs, "
              "started_at = COALESCE(excluded.started_at, jobs.started_at), finished_at = excluded.finished_at",
              (run_id, job_id, status, self._mask(reason) if reason else None, fields.get("outcome"),
               self._mask(dumps(outputs)) if outputs else "{}", fields.get("started_at"), fields.get("finished_at"))),
             *self._history_part(event)],
            fence=run_id, sync=status not in _LAZY_JOB_STATUSES)

    def _step_parts(self, run_id: str, writes: Sequence[StepWrite]) -> list[tuple[str, Sequence[Any]]]:
        steps: list[Any] = []
        attempts: list[Any] = []
        for w in writes:
            error = self._mask(w.error) if w.error else None
            steps.extend((run_id, w.job_id, w.step_id, w.status, w.attempt, w.outcome,
                          self._mask(dumps(w.outputs)) if w.outputs else "{}",
                          dumps(list(w.masked_keys)) if w.masked_keys else "[]", error,
                          self._mask(w.reason) if w.reason else None, w.started_at, w.finished_at,
                          self._mask(dumps(w.metadata)) if w.metadata else "{}"))
            if w.attempt > 0:
                attempts.append((run_id, w.job_id, w.step_id, w.attempt, w.attempt_status or w.status, w.outcome, error,
                                 w.started_at, w.finished_at))
        rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(writes))
        parts: list[tuple[str, Sequence[Any]]] = [(
            "INSERT INTO steps (run_id, job_id, step_id, status, attempt, outcome, outputs, masked_keys, error, reason, "
            f"started_at, finished_at, metadata) VALUES {rows} ON CONFLICT (run_id, job_id, step_id) DO UPDATE SET "
            "status = excluded.status, attempt = excluded.attempt, outcome = excluded.outcome, outputs = excluded.outputs, "
            "masked_keys = excluded.masked_keys, error = excluded.error, reason = excluded.reason, "
            "started_at = COALESCE(excluded.started_at, steps.started_at), finished_at = excluded.finished_at, "
            "metadata = excluded.metadata", steps)]
        if attempts:
            rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(attempts))
            parts.append((
                "INSERT INTO attempts (run_id, job_id, step_id, attempt, status, outcome, error, started_at, finished_at) "
                f"VALUES {rows} ON CONFLICT (run_id, job_id, step_id, attempt) DO UPDATE SET status = excluded.status, "
                "outcome = excluded.outcome, error = excluded.error, "
                "started_at = COALESCE(excluded.started_at, attempts.started_at), finished_at = excluded.finished_at",
                [x for a in attempts for x in a]))
        return parts

    def set_step(self, run_id: str, write: StepWrite, event: Event | None, *, sync: bool = True) -> None:
        self._write_steps(run_id, [write], [], event, sync=sync)

    def set_steps(self, run_id: str, writes: Sequence[StepWrite], event: Event | None) -> None:
        if not writes:
            self._write(self._history_part(event), fence=run_id)
            return
        latest = {(w.job_id, w.step_id): w for w in writes}  # one statement may write a row once
        self._write_steps(run_id, list(latest.values()), [], event)

    def _write_steps(self, run_id: str, writes: Sequence[StepWrite], more: Sequence[tuple[str, Sequence[Any]]],
                     event: Event | None, *, sync: bool = True) -> None:
        """Step rows (and ``more`` parts) in one write. Metadata a step reports is merged, key by
        key, into the run's runtime metadata in the same transaction: that one reads the run's
        row first (locked, and the fence checked on it), so it is a transaction of two statements."""
        parts = [*self._step_parts(run_id, writes), *more, *self._history_part(event)]
        reported = [w.metadata for w in writes if w.metadata]
        if not reported:
            self._write(parts, fence=run_id, sync=sync)
            return
        with self._transaction("writing") as cur:
            cur.execute("SELECT runtime_metadata, generation FROM runs WHERE run_id = %s FOR UPDATE", (run_id,))
            row = cur.fetchone()
            mine = self._generations.get(run_id)
            if mine is not None and (row is None or row[1] != mine):
                raise fenced(run_id, row[1] if row else None, mine)
            merged = dict(json.loads(row[0])) if row and row[0] else {}
            for m in reported:
                merged.update(json.loads(self._mask(dumps(m))))
            parts.append(("UPDATE runs SET runtime_metadata = %s WHERE run_id = %s", (dumps(merged), run_id)))
            if not sync:
                cur.execute("SET LOCAL synchronous_commit TO off")
            stmt, params = self._statement(parts)
            cur.execute(stmt, params)
        if not sync:
            self._unsynced = True

    def jobs(self, run_id: str) -> dict[str, JobRecord]:
        rows = self._query(
            "SELECT job_id, status, reason, outcome, outputs, started_at, finished_at FROM jobs WHERE run_id = %s",
            (run_id,))
        return {
            r[0]: JobRecord(run_id=run_id, job_id=r[0], status=r[1], reason=r[2], outcome=r[3], outputs=load_map(r[4]),
                            started_at=r[5], finished_at=r[6])
            for r in rows
        }

    def steps(self, run_id: str) -> dict[tuple[str, str], StepRecord]:
        rows = self._query(
            "SELECT job_id, step_id, status, attempt, outcome, outputs, masked_keys, error, reason, started_at, finished_at, "
            "metadata FROM steps WHERE run_id = %s", (run_id,))
        return {
            (r[0], r[1]): StepRecord(
                run_id=run_id, job_id=r[0], step_id=r[1], status=r[2], attempt=r[3], outcome=r[4], outputs=load_map(r[5]),
                masked_keys=() if not r[6] or r[6] == "[]" else tuple(json.loads(r[6])), error=r[7], reason=r[8],
                started_at=r[9], finished_at=r[10], metadata=load_map(r[11]))
            for r in rows
        }

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        rows = self._query(
            "SELECT job_id, step_id, attempt, status, outcome, error, started_at, finished_at FROM attempts "
            "WHERE run_id = %s ORDER BY started_at NULLS FIRST, job_id COLLATE \"C\", step_id COLLATE \"C\", attempt",
            (run_id,))
        return [AttemptRecord(run_id=run_id, job_id=r[0], step_id=r[1], attempt=r[2], status=r[3], outcome=r[4],
                              error=r[5], started_at=r[6], finished_at=r[7]) for r in rows]

    def history(self, run_id: str) -> list[Event]:
        rows = self._query(
            "SELECT event, ts, flow_id, job_id, step_id, attempt, data FROM history WHERE run_id = %s ORDER BY id",
            (run_id,))
        return [Event(name=r[0], run_id=run_id, ts=r[1], flow_id=r[2] or "", job_id=r[3], step_id=r[4], attempt=r[5],
                      data=freeze(json.loads(r[6])) if r[6] else freeze({})) for r in rows]

    def append_history(self, event: Event) -> None:
        self._write(self._history_part(event), fence=event.run_id)

    # captured output -----------------------------------------------------------------------
    def append_output(self, run_id: str, chunks: Sequence[OutputChunk]) -> None:
        if not chunks:
            return
        rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(chunks))
        self._write([(f"INSERT INTO output (run_id, job_id, step_id, attempt, stream, text, at) VALUES {rows}",
                      [x for c in chunks
                       for x in (run_id, c.job_id, c.step_id, c.attempt, c.stream, self._mask(c.text), c.at)])],
                    fence=run_id, sync=False)

    def output(
        self, run_id: str, *, job_id: str | None = None, step_id: str | None = None, attempt: int | None = None,
        after: int = 0, limit: int = 1000,
    ) -> list[OutputChunk]:
        sql = "SELECT id, job_id, step_id, attempt, stream, text, at FROM output WHERE run_id = %s AND id > %s"
        params: list[Any] = [run_id, after]
        for column, value in (("job_id", job_id), ("step_id", step_id), ("attempt", attempt)):
            if value is not None:
                sql += f" AND {column} = %s"
                params.append(value)
        sql += " ORDER BY id LIMIT %s"
        params.append(limit)
        return [OutputChunk(run_id=run_id, seq=r[0], job_id=r[1], step_id=r[2], attempt=r[3], stream=r[4], text=r[5],
                            at=r[6]) for r in self._query(sql, params)]

    # waits and events ----------------------------------------------------------------------
    def set_wait(self, wait: WaitRecord, write: StepWrite, event: Event | None) -> None:
        self._write_steps(wait.run_id, [write], [
            ("INSERT INTO waits (run_id, job_id, step_id, kind, events, due_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
             "ON CONFLICT (run_id, job_id, step_id) DO UPDATE SET kind = excluded.kind, events = excluded.events, "
             "due_at = excluded.due_at, created_at = excluded.created_at",
             (wait.run_id, wait.job_id, wait.step_id, wait.kind, dumps(list(wait.events)), wait.due_at, wait.created_at)),
        ], event)

    def waits(self, run_id: str) -> list[WaitRecord]:
        rows = self._query(
            "SELECT job_id, step_id, kind, events, due_at, created_at FROM waits WHERE run_id = %s ORDER BY created_at",
            (run_id,))
        return [WaitRecord(run_id=run_id, job_id=r[0], step_id=r[1], kind=r[2], events=tuple(json.loads(r[3] or "[]")),
                           due_at=r[4], created_at=r[5]) for r in rows]

    def remove_wait(self, run_id: str, job_id: str, step_id: str) -> None:
        self._write([("DELETE FROM waits WHERE run_id = %s AND job_id = %s AND step_id = %s", (run_id, job_id, step_id))],
                    fence=run_id)

    def clear_waits(self, run_id: str, event: Event | None) -> None:
        self._write([("DELETE FROM waits WHERE run_id = %s", (run_id,)), *self._history_part(event)], fence=run_id)

    def add_event(self, ev: ReceivedEvent, event: Event | None) -> int:
        new_id = self._write(
            [("INSERT INTO received_events (run_id, job_id, step_id, name, data, received_at, consumed) "
              "VALUES (%s, %s, %s, %s, %s, %s, false) RETURNING id",
              (ev.run_id, ev.job_id, ev.step_id, ev.name, self._mask(dumps(ev.data)), ev.received_at)),
             *self._history_part(event)],
            fence=ev.run_id, value="(SELECT id FROM w0)")
        return int(new_id)

    def pending_events(self, run_id: str) -> list[ReceivedEvent]:
        rows = self._query(
            "SELECT id, job_id, step_id, name, data, received_at FROM received_events WHERE run_id = %s AND NOT consumed "
            "ORDER BY id", (run_id,))
        return [ReceivedEvent(id=r[0], run_id=run_id, job_id=r[1], step_id=r[2], name=r[3], data=load_map(r[4]),
                              received_at=r[5]) for r in rows]

    def consume_event(self, event_id: int) -> None:
        fence = None
        if self._generations:
            rows = self._query("SELECT run_id FROM received_events WHERE id = %s", (event_id,))
            fence = rows[0][0] if rows else None
        self._write([("UPDATE received_events SET consumed = true WHERE id = %s", (event_id,))], fence=fence)

    def due_runs(self, now: float, *, flow_id: str | None = None, limit: int | None = None) -> list[RunRecord]:
        sql = (f"SELECT {', '.join(LIGHT_RUN_COLUMNS)} FROM runs WHERE status = 'WAITING' AND due_at IS NOT NULL "
               "AND due_at <= %s")
        params: list[Any] = [now]
        if flow_id:
            sql += " AND flow_id = %s"
            params.append(flow_id)
        sql += " ORDER BY due_at"
        if limit:
            sql += " LIMIT %s"
            params.append(limit)
        return self._runs(sql, params)


class _LockSession:
    """The store's dedicated connection for session advisory locks, opened on first use and
    shared by its lock objects, with one holder per key in this process, watched while it holds
    any lock."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._conn: psycopg.Connection[Any] | None = None
        self._mutex = threading.Lock()
        self._held: dict[int, PgLock] = {}
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and (conn.broken or conn.closed) and not self._held:
            conn = self._conn = None  # nothing was held on it: nothing was lost
        if conn is None:
            conn = self._conn = self._store._connect("locks")
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="aetherflow-store-watch", daemon=True)
            self._watchdog.start()
        return conn

    def try_acquire(self, lock: PgLock) -> bool:
        store = self._store
        with self._mutex:
            if store._lost is not None:
                raise store._lost_error(f"taking lock {lock.key}")
            if lock.ident in self._held:
                return False
            conn = self._connection()
            try:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock.ident,)).fetchone()
            except psycopg.Error as exc:
                if self._held:
                    raise store._error(exc, f"taking lock {lock.key}", conn) from None
                raise StateError(f"state store {store.location}: cannot take lock {lock.key}: "
                                 f"{store._scrub(str(exc).strip())}", code="state.error") from None
            if row is None or not row[0]:
                return False
            self._held[lock.ident] = lock
            return True

    def holds(self, lock: PgLock) -> bool:
        return self._held.get(lock.ident) is lock and self._store._lost is None

    def release(self, lock: PgLock) -> None:
        with self._mutex:
            if self._held.get(lock.ident) is not lock:
                return
            del self._held[lock.ident]
            conn = self._conn
            if conn is None or conn.broken or conn.closed or self._store._lost is not None:
                return  # the session is gone, and every lock it held with it
            with suppress(psycopg.Error):  # a lock not released is released with its session
                conn.execute("SELECT pg_advisory_unlock(%s)", (lock.ident,))

    def _watch(self) -> None:
        while not self._stop.wait(LIVENESS_CHECK_SECONDS):
            with self._mutex:
                conn = self._conn
                if conn is None or not self._held:
                    continue
                try:
                    conn.execute("SELECT 1")
                except psycopg.Error as exc:
                    self._store._mark_lost(
                        f"the connection holding its locks failed ({self._store._scrub(str(exc).strip())})")
                    with suppress(psycopg.Error):
                        conn.close()
                    return

    def close(self) -> None:
        self._stop.set()
        with self._mutex:
            self._held.clear()
            if self._conn is not None:
                with suppress(psycopg.Error):
                    self._conn.close()
                self._conn = None


class PgLock:
    """One named lock of a ``PostgresStore`` (``Lock`` protocol): a session advisory lock."""

    __slots__ = ("held_since", "ident", "key", "_session")

    def __init__(self, session: _LockSession, key: str, ident: int) -> None:
        self._session = session
        self.key = key
        self.ident = ident
        self.held_since: float | None = None

    def acquire(self, wait_seconds: float = 0.0) -> bool:
        deadline = time.monotonic() + max(wait_seconds, 0.0)
        while True:
            if self._session.try_acquire(self):
                self.held_since = time.time()
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(LOCK_POLL_SECONDS, left))

    def release(self) -> None:
        self._session.release(self)
        self.held_since = None

    @property
    def is_held(self) -> bool:
        return self._session.holds(self)
