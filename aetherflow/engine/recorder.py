"""The run's events and where they go. Every state change the engine records is an ``Event``
carried by the store write that records it (one transaction: the row and its history line);
the same event goes to the observers (live view, events log, plugins). ``Recorder`` makes the
events of one run and hands them to the observers; ``emit`` is for events that are only
history (no row changes with them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aetherflow.events import Event
from aetherflow.model import EMPTY, freeze
from aetherflow.state.store import StateStore

__all__ = ["Recorder"]


class Recorder:
    def __init__(self, store: StateStore, *, run_id: str, flow_id: str, clock: Callable[[], float],
                 observers: Callable[[Event], None], labels: Mapping[str, Any] = EMPTY) -> None:
        self.store = store
        self.run_id = run_id
        self.flow_id = flow_id
        self.clock = clock
        self._observers = observers
        self._labels = dict(labels)  # the run's (state.store.run_labels): on every event

    def event(self, name: str, *, job_id: str | None = None, step_id: str | None = None, attempt: int | None = None,
              **data: Any) -> Event:
        return Event(name=name, run_id=self.run_id, ts=self.clock(), flow_id=self.flow_id, job_id=job_id,
                     step_id=step_id, attempt=attempt, data=freeze(data) if data else EMPTY, **self._labels)

    def observed(self, ev: Event) -> Event:
        """``ev`` handed to the observers; returned for the store write that records it."""
        self._observers(ev)
        return ev

    def emit(self, name: str, **kw: Any) -> Event:
        """An event that is history only: appended to the store's history and observed."""
        ev = self.event(name, **kw)
        self.store.append_history(ev)
        self._observers(ev)
        return ev

    def notify(self, ev: Event) -> None:
        """A transient event (``step.progress``): observers only, never stored."""
        self._observers(ev)
