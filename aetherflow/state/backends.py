"""Which store a location names, and opening it: the one place that knows the backends.

A location is a file path (the embedded SQLite store, ``state/sqlite.py``) or a URL whose
scheme names another backend: ``postgresql://`` or ``postgres://`` (``state/postgres.py``,
which needs psycopg 3, the ``postgres`` extra, imported only here and only for such a URL).
Everything else talks to the returned object through the ``StateStore`` protocol of
``state/store.py``.

A URL may carry a password; it is never shown: :func:`public_location` is the URL without it,
and that is what a store reports as its ``location`` (messages, ``runs list``, the list of
known stores in ``$AETHERFLOW_HOME/stores``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aetherflow.errors import UsageError
from aetherflow.state.store import StateStore

__all__ = ["POSTGRES_SCHEMES", "is_url", "open_store", "probe_store", "public_location", "store_exists"]

POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_url(location: str) -> bool:
    """A ``scheme://...`` location (a backend other than a local file)."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.isidentifier()


def public_location(location: str) -> str:
    """The location as it may be shown and recorded: a URL without its password (in the user
    part or as a ``password=`` query parameter); a path unchanged."""
    if not is_url(location):
        return location
    try:
        parts = urlsplit(location)
    except ValueError:
        return location.partition("://")[0] + "://***"
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k == "password" for k, _ in pairs):
            query = urlencode([(k, v) for k, v in pairs if k != "password"], safe="/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def open_store(location: str, *, mask: Callable[[str], str] | None = None) -> StateStore:
    """Open (creating if needed) the store at ``location``."""
    if is_url(location):
        store: StateStore = _postgres(location)(location, mask=mask)
        return store
    from aetherflow.state.sqlite import SqliteStore

    return SqliteStore(location, mask=mask)


def probe_store(location: str) -> str:
    """For ``doctor``: whether the store a URL names can be used, creating nothing (a file
    path is checked by doctor itself). Raises ``StateError``/``UsageError`` saying why not."""
    return str(_postgres(location).probe(location))


def _postgres(location: str) -> type[Any]:
    scheme = location.partition("://")[0]
    if scheme.lower() not in POSTGRES_SCHEMES:
        raise UsageError(
            f"state store URL scheme '{scheme}://' is not supported",
            code="usage.store_url",
            hint="give a file path for the embedded SQLite store, or a postgresql:// URL",
        )
    try:
        from aetherflow.state.postgres import PostgresStore
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "psycopg":
            raise
        raise UsageError(
            f"the PostgreSQL state store {public_location(location)} needs psycopg 3, which is not installed",
            code="usage.store_driver",
            hint="pip install 'aetherflow[postgres]'",
        ) from None
    return PostgresStore


def store_exists(location: str) -> bool:
    """Whether there is a store to read at ``location`` (a read never creates one)."""
    return is_url(location) or Path(location).exists()
