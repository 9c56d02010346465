"""Which store a location names, and opening it: the one place that knows the backends.

A location is a file path (the embedded SQLite store, ``state/sqlite.py``) or a URL whose
scheme names another backend. Everything else talks to the returned object through the
``StateStore`` protocol of ``state/store.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aetherflow.errors import UsageError
from aetherflow.state.store import StateStore

__all__ = ["is_url", "open_store", "store_exists"]


def is_url(location: str) -> bool:
    """A ``scheme://...`` location (a backend other than a local file)."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.isidentifier()


def open_store(location: str, *, mask: Callable[[str], str] | None = None) -> StateStore:
    """Open (creating if needed) the store at ``location``."""
    if is_url(location):
        scheme = location.partition("://")[0]
        raise UsageError(
            f"state store URL scheme '{scheme}://' is not supported",
            code="usage.store_url",
            hint="give a file path for the embedded SQLite store",
        )
    from aetherflow.state.sqlite import SqliteStore

    return SqliteStore(location, mask=mask)


def store_exists(location: str) -> bool:
    """Whether there is a store to read at ``location`` (a read never creates one)."""
    return is_url(location) or Path(location).exists()
