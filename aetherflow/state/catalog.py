"""The stores this machine has used, and finding a run in them by id or by business key.

``run`` records each store location it writes to in ``<home>/stores`` (one a line), so that
commands given only a run id (``resume``, ``runs show``, ``cancel``...) find it wherever the
flow's ``state.path`` put it. ``--state`` / ``AETHERFLOW_STATE`` name one store, looked at first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from aetherflow.errors import NotFoundError, StateError, UsageError
from aetherflow.model import split_key
from aetherflow.state.backends import is_url, open_store, public_location, store_exists
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
        """Add ``location`` to ``<home>/stores`` (once; a URL without its password: commands that
        find a store there take the password from libpq's own sources); a failure is a warning,
        not an error."""
        reg = self._registry
        entry = public_location(location) if is_url(location) else str(Path(location).resolve())
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
        seen: set[str] = set()

        def add(location: str) -> None:
            shown = public_location(location)  # a URL given with its password is the same store
            if location and shown not in seen and store_exists(location):
                seen.add(shown)
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

    def open_known(self, location: str) -> StateStore | None:
        """Open a store of :meth:`locations`. One only remembered in ``<home>/stores`` (not named
        with ``--state``) that cannot be opened, a database server that does not answer say,
        is ``None`` with a warning naming it, so that the other stores are still read. The
        store ``--state`` names is never skipped: its failure is the command's error."""
        try:
            return self.open(location)
        except StateError as exc:
            if self.explicit and location in self.locations():
                raise
            log.warning("skipping store %s: %s", public_location(location), exc.message)
            return None

    def stores(self, *, fallback: bool = False) -> Iterator[StateStore]:
        """Each store of :meth:`locations` that opens (:meth:`open_known`), open while the caller
        looks at it and closed after."""
        for _, store in self._located(fallback=fallback):
            yield store

    def _located(self, *, fallback: bool) -> Iterator[tuple[str, StateStore]]:
        for location in self.locations(fallback=fallback):
            store = self.open_known(location)
            if store is None:
                continue
            try:
                yield location, store
            finally:
                store.close()

    def newest_run(self, flow_id: str | None = None) -> tuple[StateStore, RunRecord]:
        """The open store holding the newest run (of ``flow_id`` when given) of every known
        store, and the run; the caller closes the store. None at all: ``NotFoundError``."""
        best: tuple[str, RunRecord] | None = None
        locations = self.locations(fallback=True)
        for location, store in self._located(fallback=True):
            found = store.list_runs(flow_id=flow_id, limit=1)
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
            opened = self.open_known(location)
            if opened is None:
                continue
            try:
                rec = opened.get_run(run_id)
                if rec is not None:
                    return opened, rec
                matches.extend((location, r.run_id) for r in opened.find_runs(run_id))
            except BaseException:
                opened.close()
                raise
            opened.close()
        if len(matches) == 1:
            store = self.open(matches[0][0])
            try:
                found = store.get_run(matches[0][1])
            except BaseException:
                store.close()
                raise
            if found is not None:
                return store, found
            store.close()
        if len(matches) > 1:
            ids = ", ".join(r for _, r in matches)
            raise UsageError(f"run id prefix '{run_id}' is ambiguous: {ids}", code="run.ambiguous")
        where = ", ".join(public_location(loc) for loc in locations) or "no store recorded yet"
        raise NotFoundError(f"unknown run id '{run_id}' (looked in: {where})", hint="see `aetherflow runs list`")

    def find_by_key(self, key: str, *, flow_id: str | None = None, active_only: bool = True) -> tuple[StateStore, RunRecord]:
        """The open store and the run holding business key ``key`` (``VALUE`` or
        ``NAME::VALUE``, checked as ``--key``), looked up exactly and completely in every store.

        ``active_only`` (``resume --key``, ``cancel --key``): the RUNNING or WAITING run holding
        it. Otherwise (``runs show --key``) that run if there is one, else the newest run that
        held it. More than one candidate (the same value in several flows or under several key
        names) is an error listing them (exit 2), unless ``flow_id`` narrows them to one; none
        is ``NotFoundError`` (exit 2). The caller closes the store."""
        split_key(key)  # a key that cannot be one is a usage error, not "not found"
        found: list[tuple[str, RunRecord]] = []
        for location, store in self._located(fallback=True):
            found.extend((location, r) for r in store.runs_for_key(key, flow_id=flow_id))
        active = [(loc, r) for loc, r in found if r.status in ("RUNNING", "WAITING")]
        if active or active_only:
            candidates = active
        else:  # the newest run of each (flow, key) that held it
            newest: dict[tuple[str, str | None], tuple[str, RunRecord]] = {}
            for loc, r in sorted(found, key=lambda f: f[1].created_at, reverse=True):
                newest.setdefault((r.flow_id, r.business_key), (loc, r))
            candidates = list(newest.values())
        where = f" in flow '{flow_id}'" if flow_id else ""
        if not candidates:
            what = "no RUNNING or WAITING run holds" if active_only else "no run holds"
            raise NotFoundError(f"{what} business key '{key}'{where}", code="run.key_not_found",
                                hint="see `aetherflow runs list --key " + key + "`")
        if len(candidates) > 1:
            listed = "; ".join(f"{r.run_id} (flow {r.flow_id}, key {r.business_key}, {r.status})" for _, r in candidates)
            raise UsageError(f"business key '{key}'{where} is held by {len(candidates)} runs: {listed}",
                             code="run.key_ambiguous",
                             hint="name the flow with --flow ID, or the key as NAME::VALUE, or use the run id")
        location, rec = candidates[0]
        store = self.open(location)
        full = store.get_run(rec.run_id)
        if full is None:
            store.close()
            raise NotFoundError(f"run {rec.run_id} holding business key '{key}' is gone", code="run.key_not_found")
        return store, full
