"""``kv:sqlite``: a key-value store kept in one SQLite file (standard library only).

Declare it as a resource and reach it from a step through ``ctx.connectors["NAME"]``::

    resources:
      kv:
        kind: kv
        driver: sqlite
        config: {path: "{{ env.EXAMPLE_KV_PATH:example-kv.sqlite }}"}
        options: {timeout_seconds: 5}

``config.path`` is the database file (created on first use; a relative path is relative to the
directory aetherflow runs in). Values are JSON. Every write is one committed transaction with
``synchronous=FULL``, so a step that returns SUCCESS after ``put`` has made its write durable.
Driver errors leave this module as ``ConnectorError``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aetherflow.core.api import Connector, ConnectorError, register_connector

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    written_by TEXT,
    updated_at REAL NOT NULL
)
"""

#: returned by ``get`` for a missing key when no default is given
MISSING: Any = object()


@register_connector("kv", "sqlite", aliases=("sqlite3",))
class KvSqliteConnector(Connector):
    """Key-value store in one SQLite file (JSON values, upsert writes)."""

    def __init__(self, name: str, config: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        super().__init__(name, config, options)
        path = config.get("path")
        if not isinstance(path, str) or not path:
            raise ConnectorError(
                f"resource '{name}': kv:sqlite needs config.path (the database file)",
                code="connector.bad_config",
            )
        self.path = Path(path).expanduser()
        self.timeout = float(options.get("timeout_seconds", 5))
        self._conn: sqlite3.Connection | None = None
        # steps may run on different worker threads; one connection, one writer at a time
        self._lock = threading.Lock()

    # -- public operations ----------------------------------------------------------------------
    def get(self, key: str, default: Any = MISSING) -> Any:
        with self._lock:
            row = self._query("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        return json.loads(row[0])

    def put(self, key: str, value: Any, *, written_by: str | None = None) -> bool:
        """Insert or replace ``key``; returns False when it already held this value (idempotent)."""
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
        with self._lock:
            conn = self._connection()
            try:
                with conn:  # one transaction: commit on success, roll back on error
                    row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
                    if row is not None and row[0] == text:
                        return False
                    conn.execute(
                        "INSERT INTO kv (key, value, written_by, updated_at) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                        "written_by = excluded.written_by, updated_at = excluded.updated_at",
                        (key, text, written_by, time.time()),
                    )
            except sqlite3.Error as exc:
                raise ConnectorError(f"resource '{self.name}': cannot write key '{key}': {exc}") from exc
        return True

    def scan(self, prefix: str = "") -> dict[str, Any]:
        """Every key starting with ``prefix`` and its value, in key order."""
        with self._lock:
            rows = self._query(
                "SELECT key, value FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key",
                (len(prefix), prefix),
            ).fetchall()
        return {k: json.loads(v) for k, v in rows}

    def delete(self, key: str) -> bool:
        with self._lock:
            conn = self._connection()
            try:
                with conn:
                    cur = conn.execute("DELETE FROM kv WHERE key = ?", (key,))
            except sqlite3.Error as exc:
                raise ConnectorError(f"resource '{self.name}': cannot delete key '{key}': {exc}") from exc
        return cur.rowcount > 0

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- internals --------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False)
                conn.execute("PRAGMA synchronous=FULL")
                with conn:
                    conn.execute(_SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise ConnectorError(f"resource '{self.name}': cannot open {self.path}: {exc}") from exc
            self._conn = conn
        return self._conn

    def _query(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self._connection().execute(sql, params)
        except sqlite3.Error as exc:
            raise ConnectorError(f"resource '{self.name}': query failed: {exc}") from exc
