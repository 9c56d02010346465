"""``db:sqlalchemy``: reference flows name their database by a SQLAlchemy-style ``url``.

One registry key maps to one class, so this small dispatcher reads ``config.url`` and hands
the work to ``db:sqlite3`` (``sqlite://…``) or ``db:postgres`` (``postgresql://…``,
``postgres://…``; a ``+driver`` suffix such as ``postgresql+psycopg2://`` is dropped).
SQLAlchemy itself is not used. Other config keys and the options go to the chosen connector,
except SQLAlchemy's connection pool options (``pool_size``, ``max_overflow``, ``pool_pre_ping``,
``pool_recycle``, ``pool_timeout``, and the same under ``pool:``), which are accepted and have no
effect: a resource has one connection per run.

With PostgreSQL, SQL written for SQLAlchemy's ``text()`` keeps working: when ``params`` is a
mapping and the SQL has ``:name`` binds, they become psycopg's ``%(name)s`` and every literal
``%`` is doubled (psycopg reads ``%`` everywhere once params are given). Binds are not looked
for inside quoted strings, quoted identifiers, dollar-quoted bodies or comments; ``::type``
casts stay casts (``:id::int`` is a bind followed by a cast) and ``\\:`` is a literal colon,
as in SQLAlchemy. SQL without ``:name`` binds goes to psycopg unchanged (``%s`` /
``%(name)s`` still work). SQLite takes ``:name`` natively.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from aetherflow.api import Connector, ConnectorError, register_connector
from aetherflow.connectors.dbapi import Row, RowStream, SqlConnector, Transaction
from aetherflow.connectors.postgres import PostgresConnector
from aetherflow.connectors.sqlite import SqliteConnector

#: SQLAlchemy engine pool options (aetherflow-core's demo profile sets them): accepted, no effect
POOL_OPTIONS = frozenset({"pool", "pool_size", "max_overflow", "pool_pre_ping", "pool_recycle", "pool_timeout"})


@register_connector("db", "sqlalchemy")
class SqlAlchemyUrlConnector(Connector):
    """SQLAlchemy-style url: sqlite:// → db:sqlite3, postgresql:// → db:postgres."""

    def __init__(self, name: str, config: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        super().__init__(name, config, options)
        url = config.get("url")
        if not isinstance(url, str) or "://" not in url:
            raise ConnectorError(
                f"resource '{name}': db:sqlalchemy needs config.url (sqlite:///file.db or postgresql://host/db)",
                code="connector.bad_config",
            )
        scheme, _, rest = url.partition("://")
        dialect = scheme.split("+", 1)[0].lower()
        others = {k: v for k, v in config.items() if k != "url"}
        options = {k: v for k, v in options.items() if k not in POOL_OPTIONS}
        self.inner: SqlConnector
        self.pyformat = dialect in ("postgresql", "postgres")
        if dialect == "sqlite":
            self.inner = SqliteConnector(name, {"url": url, **others}, options)
        elif dialect in ("postgresql", "postgres"):
            self.inner = PostgresConnector(name, {"url": f"postgresql://{rest}", **others}, options)
        else:
            # the scheme alone, never the rest of the url (it may carry a password)
            raise ConnectorError(
                f"resource '{name}': db:sqlalchemy url scheme '{scheme}' is not supported (use sqlite:// or postgresql://)",
                code="connector.bad_config",
            )

    def _sql(self, sql: str, params: Any) -> tuple[str, Any]:
        if self.pyformat and isinstance(params, Mapping):
            return named_to_pyformat(self.name, sql, params)
        return sql, params

    def query(self, sql: str, params: Any = None, *, max_rows: int = 1000) -> tuple[list[str], list[Row]]:
        return self.inner.query(*self._sql(sql, params), max_rows=max_rows)

    def stream(self, sql: str, params: Any = None, *, batch: int = 1000) -> tuple[list[str], RowStream]:
        return self.inner.stream(*self._sql(sql, params), batch=batch)

    def execute(self, sql: str, params: Any = None) -> int:
        return self.inner.execute(*self._sql(sql, params))

    @property
    def placeholder(self) -> str:
        return self.inner.placeholder

    def transaction(self) -> AbstractContextManager[Transaction]:
        return self.inner.transaction()

    # aetherflow-core's calls (connectors/dbapi.py)
    def read(self, sql: str, params: Any = None) -> tuple[list[str], list[Row]]:
        return self.inner.read(*self._sql(sql, params))

    def fetchall(self, sql: str, params: Any = None) -> tuple[list[str], list[Row]]:
        return self.read(sql, params)

    def fetchmany(self, sql: str, params: Any = None, *, fetch_size: int = 1000,
                  sample_size: int = 200) -> tuple[list[str], Iterator[Row], list[type]]:
        return self.inner.fetchmany(*self._sql(sql, params), fetch_size=fetch_size, sample_size=sample_size)

    def connect(self) -> Any:
        """The driver's DB-API connection (sqlite3 or psycopg), not a SQLAlchemy Connection."""
        return self.inner.connect()

    def close(self) -> None:
        self.inner.close()


_WORD = re.compile(r"\w")
_BIND = re.compile(r"\w+")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def named_to_pyformat(name: str, sql: str, params: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """SQLAlchemy-style ``:name`` binds → psycopg ``%(name)s`` (see the module docstring).
    Returns ``sql`` unchanged when it has no ``:name`` bind. A bind missing from ``params``
    raises ``db.bad_params``."""
    text, binds = _translate(sql)
    if not binds:
        return sql, params
    absent = sorted({b for b in binds if b not in params})
    if absent:
        raise ConnectorError(
            f"resource '{name}': the SQL uses {', '.join(':' + b for b in absent)} but params has no such key",
            code="db.bad_params",
        )
    return text, params


def _translate(sql: str) -> tuple[str, list[str]]:
    out: list[str] = []
    binds: list[str] = []
    i, n = 0, len(sql)

    def prev_is_word(at: int) -> bool:
        return at > 0 and bool(_WORD.match(sql[at - 1]))

    while i < n:
        c = sql[i]
        end = -1
        if c == "'":  # a string literal; E'…' strings use backslash escapes
            end = _quote_end(sql, i, "'", backslashes=i > 0 and sql[i - 1] in "eE" and not prev_is_word(i - 1))
        elif c == '"':  # a quoted identifier
            end = _quote_end(sql, i, '"', backslashes=False)
        elif sql.startswith("--", i):
            nl = sql.find("\n", i)
            end = n if nl < 0 else nl
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            end = n if close < 0 else close + 2
        elif c == "$" and not prev_is_word(i) and (m := _DOLLAR_TAG.match(sql, i)):
            close = sql.find(m.group(), m.end())
            end = n if close < 0 else close + len(m.group())
        if end >= 0:  # copied as is, except that psycopg needs every % doubled
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        if c == "\\" and sql.startswith(":", i + 1):  # SQLAlchemy's escaped colon
            out.append(":")
            i += 2
        elif sql.startswith("::", i):  # a cast
            out.append("::")
            i += 2
        elif c == ":" and not prev_is_word(i) and (m := _BIND.match(sql, i + 1)) \
                and not (sql.startswith(":", m.end()) and not sql.startswith("::", m.end())):
            binds.append(m.group())
            out.append(f"%({m.group()})s")
            i = m.end()
        elif c == "%":
            out.append("%%")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out), binds


def _quote_end(sql: str, start: int, quote: str, *, backslashes: bool) -> int:
    """Index after the literal opened at ``start`` (a doubled quote is part of it)."""
    i, n = start + 1, len(sql)
    while i < n:
        c = sql[i]
        if backslashes and c == "\\":
            i += 2
            continue
        if c == quote:
            if sql.startswith(quote, i + 1):
                i += 2
                continue
            return i + 1
        i += 1
    return n
