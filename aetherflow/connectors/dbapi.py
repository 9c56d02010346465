"""Behaviour shared by the SQL connectors (``db:sqlite3``, ``db:postgres``, ``db:sqlalchemy``).

Every SQL connector offers the same three calls, which the ``db_query`` and ``db_extract``
steps use:

* ``query(sql, params, max_rows=N) -> (columns, rows)``: the whole result in memory. More
  than ``max_rows`` rows raise ``ConnectorError`` with code ``db.too_many_rows`` (nothing is
  cut silently).
* ``stream(sql, params, batch=N) -> (columns, rows)``: ``rows`` is an iterator fetching
  ``batch`` rows at a time (a server-side cursor for PostgreSQL). Close it (or exhaust it) to
  end the statement; the connection is busy until then.
* ``execute(sql, params) -> affected rows``: a statement without a result set.
* ``transaction()``: a context manager yielding a :class:`Transaction` for several statements
  committed together (``db_load``); ``placeholder`` is the driver's positional placeholder
  (``?`` or ``%s``) for the SQL built for it.

And aetherflow-core's calls, for plugins written against it: ``read(sql, params)`` and
``fetchall(sql, params)`` (``(columns, rows)``, every row in memory), ``fetchmany(sql, params,
*, fetch_size, sample_size=200)`` (``(columns, rows, pytypes)``: rows fetched ``fetch_size`` at a
time, ``pytypes`` the Python type of each column's first non-null value among the first
``sample_size`` rows, ``object`` when none) and ``connect()`` (a new DB-API connection of the
driver, the caller's own: commit and close it; one left open is closed with the connector).

``params`` are passed to the driver unchanged: a list for positional placeholders, a mapping
for named ones, in the driver's own placeholder style (sqlite3 ``?`` / ``:name``, psycopg
``%s`` / ``%(name)s``). Each call commits on success and rolls back on error, so a connector
shared by several steps never carries a half-done transaction from one step to the next.

A connection is opened on first use and reused for the run; calls are serialised by a lock
(steps of parallel jobs may share a resource). Driver exceptions become ``ConnectorError``
``from`` the original, with messages built by the subclass so no password or DSN leaks.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from aetherflow.api import Connector, ConnectorError

Row = tuple[Any, ...]

log = logging.getLogger("aetherflow.connectors")


def sql_params(name: str, params: Any) -> Sequence[Any] | Mapping[str, Any] | None:
    """Normalise step ``params`` for a DB-API driver: list → tuple, mapping → dict. None stays
    None: the SQL is then sent without placeholder processing (a literal ``%`` is fine)."""
    if params is None:
        return None
    if isinstance(params, Mapping):
        return {str(k): _plain(v) for k, v in params.items()}
    if isinstance(params, (list, tuple)):
        return tuple(_plain(v) for v in params)
    raise ConnectorError(
        f"resource '{name}': params must be a list (positional placeholders) or a mapping (named placeholders), "
        f"not {type(params).__name__}",
        code="db.bad_params",
    )


def _plain(value: Any) -> Any:
    """Flow inputs arrive frozen (read-only mappings, tuples); drivers want dicts and lists
    (psycopg adapts a list as an array, not a tuple)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class SqlConnector(Connector):
    """Base class of the SQL connectors. Subclasses implement ``_connect``, ``_is_driver_error``
    and ``_describe_error``; PostgreSQL also overrides ``_open_stream_cursor``."""

    #: human name of the database product, for messages
    product = "database"
    #: the driver's positional placeholder, for SQL built by steps (``db_load``)
    placeholder = "?"

    def __init__(self, name: str, config: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        super().__init__(name, config, options)
        self._conn: Any = None
        self._lock = threading.Lock()
        self._closed = False
        self._given: list[Any] = []  # connections connect() handed out

    # -- subclass hooks ---------------------------------------------------------------------
    def _connect(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _is_driver_error(self, exc: BaseException) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _describe_error(self, exc: BaseException) -> str:
        """One line about ``exc`` that never contains credentials."""
        text = str(exc).strip()
        first = text.splitlines()[0] if text else ""
        return f"{type(exc).__name__}: {first}" if first else type(exc).__name__

    def _open_stream_cursor(self, conn: Any, batch: int) -> Any:
        cur = conn.cursor()
        cur.arraysize = batch
        return cur

    def _begin(self, conn: Any, cur: Any) -> None:
        """Make sure a transaction is open before ``transaction()``'s first statement (DB-API
        drivers open one implicitly; sqlite3 does not for DDL and savepoints)."""

    # -- shared -----------------------------------------------------------------------------
    def _error(self, action: str, exc: BaseException, code: str = "db.error") -> ConnectorError:
        return ConnectorError(f"resource '{self.name}': {action} failed: {self._describe_error(exc)}", code=code)

    def connection(self) -> Any:
        """The open DB-API connection (opened on first use)."""
        with self._lock:
            return self._connection()

    def _connection(self) -> Any:
        # caller holds self._lock
        if self._closed:
            raise ConnectorError(f"resource '{self.name}': connector is closed", code="db.closed")
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _rollback(self, conn: Any) -> None:
        try:
            conn.rollback()
        except Exception as exc:  # noqa: BLE001 - the original error matters more; reconnect next time
            log.debug("resource '%s': rollback failed (%s); dropping the connection", self.name, type(exc).__name__)
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # noqa: BLE001 - a broken connection may fail to close; it is gone either way
                log.debug("resource '%s': closing a broken connection failed (%s)", self.name, type(exc).__name__)

    def query(self, sql: str, params: Any = None, *, max_rows: int = 1000) -> tuple[list[str], list[Row]]:
        """Run ``sql`` and return (columns, rows); a statement without a result set returns
        ``([], [])``. More than ``max_rows`` rows raise ``db.too_many_rows``."""
        p = sql_params(self.name, params)
        with self._lock:
            conn = self._connection()
            try:
                cur = conn.cursor()
                try:
                    _run(cur, sql, p)
                    if cur.description is None:
                        columns: list[str] = []
                        rows: list[Row] = []
                    else:
                        columns = [str(d[0]) for d in cur.description]
                        rows = [tuple(r) for r in cur.fetchmany(max_rows + 1)]
                finally:
                    cur.close()
                if len(rows) > max_rows:
                    conn.rollback()
                    raise ConnectorError(
                        f"resource '{self.name}': query returned more than {max_rows} rows",
                        code="db.too_many_rows",
                    )
                conn.commit()
            except ConnectorError:
                raise
            except Exception as exc:
                self._rollback(conn)
                if not self._is_driver_error(exc):
                    raise
                raise self._error("query", exc) from exc
            return columns, rows

    def execute(self, sql: str, params: Any = None) -> int:
        """Run a statement without a result set and commit; returns the affected row count
        (-1 when the driver does not know)."""
        p = sql_params(self.name, params)
        with self._lock:
            conn = self._connection()
            try:
                cur = conn.cursor()
                try:
                    _run(cur, sql, p)
                    count = int(cur.rowcount if cur.rowcount is not None else -1)
                finally:
                    cur.close()
                conn.commit()
            except Exception as exc:
                self._rollback(conn)
                if not self._is_driver_error(exc):
                    raise
                raise self._error("statement", exc) from exc
            return count

    def stream(self, sql: str, params: Any = None, *, batch: int = 1000) -> tuple[list[str], RowStream]:
        """Run ``sql`` and return (columns, a ``RowStream`` over the rows, ``batch`` at a time).

        The connector stays busy until the stream is exhausted or closed: use it as a context
        manager (or close it in a ``finally``) when you may stop early."""
        p = sql_params(self.name, params)
        self._lock.acquire()
        cur: Any = None
        try:
            conn = self._connection()
            cur = self._open_stream_cursor(conn, batch)
            _run(cur, sql, p)
            if cur.description is None:
                raise ConnectorError(
                    f"resource '{self.name}': the statement returned no result set (use db_query for statements)",
                    code="db.no_result_set",
                )
            columns = [str(d[0]) for d in cur.description]
        except BaseException as exc:
            try:
                if cur is not None:
                    _quiet_close(cur)
                if self._conn is not None:
                    self._rollback(self._conn)
            finally:
                self._lock.release()
            if isinstance(exc, Exception) and not isinstance(exc, ConnectorError) and self._is_driver_error(exc):
                raise self._error("query", exc) from exc
            raise
        return columns, RowStream(self, conn, cur, batch)

    def _end_stream(self, conn: Any, cur: Any, ok: bool) -> None:
        """Called once by ``RowStream``: close the cursor, commit or roll back, unlock."""
        try:
            _quiet_close(cur)
            if not ok:
                self._rollback(conn)
                return
            try:
                conn.commit()
            except Exception as exc:
                if not self._is_driver_error(exc):
                    raise
                self._rollback(conn)
                raise self._error("commit", exc) from exc
        finally:
            self._lock.release()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Several statements in one transaction: committed when the block ends, rolled back
        when it raises. The connector is busy (locked) meanwhile."""
        with self._lock:
            conn = self._connection()
            cur = conn.cursor()
            try:
                tx = Transaction(self, cur)
                tx._call("begin", lambda: self._begin(conn, cur))
                yield tx
                tx._call("commit", conn.commit)
            except BaseException:
                self._rollback(conn)
                raise
            finally:
                _quiet_close(cur)

    # -- aetherflow-core's calls ------------------------------------------------------------
    def read(self, sql: str, params: Any = None) -> tuple[list[str], list[Row]]:
        """``(columns, rows)`` with every row in memory (aetherflow-core's ``read``)."""
        columns, rows = self.stream(sql, params)
        with rows:
            return columns, list(rows)

    def fetchall(self, sql: str, params: Any = None) -> tuple[list[str], list[Row]]:
        return self.read(sql, params)

    def fetchmany(self, sql: str, params: Any = None, *, fetch_size: int = 1000,
                  sample_size: int = 200) -> tuple[list[str], Iterator[Row], list[type]]:
        """``(columns, rows, pytypes)`` (aetherflow-core's ``fetchmany``): ``rows`` fetched
        ``fetch_size`` at a time; closing it early rolls back and frees the connector."""
        columns, stream = self.stream(sql, params, batch=max(1, int(fetch_size)))
        sample = list(itertools.islice(stream, max(0, int(sample_size))))
        pytypes = [next((type(r[i]) for r in sample if i < len(r) and r[i] is not None), object)
                   for i in range(len(columns))]

        def rows() -> Iterator[Row]:
            try:
                yield from sample
                yield from stream
            finally:
                stream.close()

        return columns, rows(), pytypes

    def connect(self) -> Any:
        """A new DB-API connection of the driver for the caller (aetherflow-core's
        ``connect()``); it is the caller's to commit and close (closed with the connector
        otherwise)."""
        if self._closed:
            raise ConnectorError(f"resource '{self.name}': connector is closed", code="db.closed")
        conn = self._connect()
        self._given.append(conn)
        return conn

    def close(self) -> None:
        for given in self._given:
            try:
                given.close()  # closing a closed DB-API connection is allowed
            except Exception as exc:  # noqa: BLE001 - the caller's connection: only a note
                log.debug("resource '%s': closing a connect() connection failed (%s)", self.name, type(exc).__name__)
        self._given.clear()
        # a stream a step forgot to close would hold the lock forever: wait a little, then close anyway
        locked = self._lock.acquire(timeout=5.0)
        try:
            self._closed = True
            conn, self._conn = self._conn, None
        finally:
            if locked:
                self._lock.release()
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:
                if not self._is_driver_error(exc):
                    raise
                raise self._error("close", exc) from exc

class Transaction:
    """The statements of one :meth:`SqlConnector.transaction`; driver errors become
    ``ConnectorError`` (code ``db.error``, credentials removed). ``savepoint()`` /
    ``rollback_to()`` / ``release()`` mark a point to go back to after a failed statement."""

    def __init__(self, owner: SqlConnector, cur: Any) -> None:
        self._owner = owner
        self._cur = cur

    @property
    def placeholder(self) -> str:
        return self._owner.placeholder

    def _call(self, action: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:
            if not self._owner._is_driver_error(exc):
                raise
            raise self._owner._error(action, exc) from exc

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self._call("statement", lambda: _run(self._cur, sql, None if params is None else tuple(params)))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._call("statement", lambda: self._cur.executemany(sql, [tuple(r) for r in rows]))

    def savepoint(self, name: str = "aetherflow") -> None:
        self.execute(f"SAVEPOINT {name}")

    def rollback_to(self, name: str = "aetherflow") -> None:
        self.execute(f"ROLLBACK TO SAVEPOINT {name}")

    def release(self, name: str = "aetherflow") -> None:
        self.execute(f"RELEASE SAVEPOINT {name}")


def _run(cur: Any, sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> None:
    if params is None:
        cur.execute(sql)
    else:
        cur.execute(sql, params)


def _quiet_close(cur: Any) -> None:
    try:
        cur.close()
    except Exception as exc:  # noqa: BLE001 - the transaction end that follows decides the outcome
        log.debug("closing a cursor failed (%s)", type(exc).__name__)


class RowStream(Iterator[Row]):
    """Rows of a streamed query, fetched ``batch`` at a time. Exhausting it commits and frees
    the connector; ``close()`` before the end rolls back and frees it."""

    def __init__(self, owner: SqlConnector, conn: Any, cur: Any, batch: int) -> None:
        self._owner = owner
        self._conn = conn
        self._cur = cur
        self._batch = batch
        self._buffer: list[Row] = []
        self._pos = 0
        self._done = False

    def __iter__(self) -> RowStream:
        return self

    def __next__(self) -> Row:
        if self._done:
            raise StopIteration
        if self._pos >= len(self._buffer):
            try:
                chunk = self._cur.fetchmany(self._batch)
            except Exception as exc:
                self._finish(False)
                if not self._owner._is_driver_error(exc):
                    raise
                raise self._owner._error("fetch", exc) from exc
            if not chunk:
                self._finish(True)
                raise StopIteration
            self._buffer = [tuple(r) for r in chunk]
            self._pos = 0
        row = self._buffer[self._pos]
        self._pos += 1
        return row

    def _finish(self, ok: bool) -> None:
        if self._done:
            return
        self._done = True
        self._buffer = []
        self._owner._end_stream(self._conn, self._cur, ok)

    def close(self) -> None:
        """Stop early: roll back and free the connector (no-op once exhausted)."""
        self._finish(False)

    def __enter__(self) -> RowStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
