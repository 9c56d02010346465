"""The store backends the contract suite runs against. Each parameter yields a factory of
locations: every call of ``open_store(location)`` on the same location is another client of the
same store (another connection, as another process would be)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aetherflow.state.backends import open_store
from aetherflow.state.store import StateStore

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store location of one backend."""
    if request.param == "sqlite":
        yield str(tmp_path / "state" / "state.db")
    else:  # pragma: no cover - a backend named above without a location
        raise AssertionError(f"no location for backend {request.param}")


@pytest.fixture
def stores(location: str) -> Iterator[Callable[..., StateStore]]:
    """Open clients of the store at ``location``; all closed at teardown."""
    opened: list[StateStore] = []

    def open_(**kw: object) -> StateStore:
        s = open_store(location, **kw)  # type: ignore[arg-type]
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()
