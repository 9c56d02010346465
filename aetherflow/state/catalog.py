"""The stores this machine has used, and finding a run in them by id.

``run`` records each store location it writes to in ``<home>/stores`` (one a line), so that
commands given only a run id (``resume``, ``runs show``, ``cancel``...) find it wherever the
flow's ``state.path`` put it. ``--state`` / ``AETHERFLOW_STATE`` name one store, looked at first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from aetherflow.errors import NotFoundError, UsageError
from aetherflow.state.backends import is_url, open_store, store_exists
from aetherflow.state.store import RunRecord, StateStore

__all__ = ["StoreCatalog"]

log = logging.getLogger("aetherflow")

Opener = Callable[[str], StateStore]


class StoreCatalog:
    """The known stores of one home directory; ``explicit`` is ``--state``/``AETHERFLOW_STATE``."""

    def __init__(self, home: Path, explicit: str | None = None, *, opener: Opener = open_store) -> None:
        self.home = home
        self.explicit = explicit
        self.open = opener

    @property
    def _registry(self) -> Path:
        return self.home / "stores"

    def remember(self, location: str) -> None:
        """Add ``location`` to ``<home>/stores`` (once); a failure is a warning, not an error."""
        reg = self._registry
        entry = location if is_url(location) else str(Path(location).resolve())
        try:
            known = reg.read_text(encoding="utf-8").splitlines() if reg.exists() else []
            if entry in known:
                return
            reg.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(reg, "a", encoding="utf-8") as fh:
                fh.write(entry + "\n")
            os.chmod(reg, 0o600)
        except OSError as exc:
            log.warning("cannot record store location in %s: %s", reg, exc)

    def locations(self, *, fallback: bool = False) -> list[str]:
        """Stores to read, each once. The explicit one alone, unless ``fallback`` (finding a run by
        id): then every store this machine has used follows it. A store that does not exist is
        never created by a read."""
        out: list[str] = []

        def add(location: str) -> None:
            if location and location not in out and store_exists(location):
                out.append(location)

        if self.explicit:
            add(self.explicit if is_url(self.explicit) else str(Path(self.explicit).expanduser().absolute()))
            if not fallback:
                return out
        add(str(self.home / "state.db"))
        if self._registry.exists():
            for line in self._registry.read_text(encoding="utf-8").splitlines():
                add(line.strip())
        return out

    def newest_run(self, flow_id: str | None = None) -> tuple[StateStore, RunRecord]:
        """The open store holding the newest run (of ``flow_id`` when given) of every known
        store, and the run; the caller closes the store. None at all: ``NotFoundError``."""
        best: tuple[str, RunRecord] | None = None
        locations = self.locations(fallback=True)
        for location in locations:
            store = self.open(location)
            try:
                found = store.list_runs(flow_id=flow_id, limit=1)
            finally:
                store.close()
            if found and (best is None or found[0].created_at > best[1].created_at):
                best = (location, found[0])
        if best is not None:
            store = self.open(best[0])
            rec = store.get_run(best[1].run_id)
            if rec is not None:
                return store, rec
            store.close()
        of = f" of flow '{flow_id}'" if flow_id else ""
        raise NotFoundError(f"no run{of} recorded yet (looked in: {', '.join(locations) or 'no store recorded yet'})",
                            hint="see `aetherflow runs list`")

    def find_run(self, run_id: str, *, flow_id: str | None = None) -> tuple[StateStore, RunRecord]:
        """The open store holding ``run_id`` (or a unique prefix of one) and the run; the caller
        closes the store. ``last`` is the newest run (of ``flow_id`` when given). Unknown:
        ``NotFoundError`` (exit 2); an ambiguous prefix: exit 2."""
        if run_id == "last":
            return self.newest_run(flow_id)
        locations = self.locations(fallback=True)
        matches: list[tuple[str, str]] = []
        for location in locations:
            store = self.open(location)
            rec = store.get_run(run_id)
            if rec is not None:
                return store, rec
            try:
                matches.extend((location, r.run_id) for r in store.find_runs(run_id))
            finally:
                store.close()
        if len(matches) == 1:
            store = self.open(matches[0][0])
            found = store.get_run(matches[0][1])
            if found is not None:
                return store, found
            store.close()
        if len(matches) > 1:
            ids = ", ".join(r for _, r in matches)
            raise UsageError(f"run id prefix '{run_id}' is ambiguous: {ids}", code="run.ambiguous")
        where = ", ".join(locations) or "no store recorded yet"
        raise NotFoundError(f"unknown run id '{run_id}' (looked in: {where})", hint="see `aetherflow runs list`")
