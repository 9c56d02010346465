"""``with_lock`` for steps: the store's named locks with holder records and lock events.

A step sees only :class:`StepLocks` (``ctx.locks``), bound to its job and step: take a lock by
name, release it; the store and the run's records stay behind it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from aetherflow.engine.recorder import Recorder
from aetherflow.errors import LockBusyError
from aetherflow.state.store import Lock, LockRecord, StateStore, user_lock_key

__all__ = ["LockService", "StepLocks", "holder_text"]

#: released lock objects kept for reuse (they hold no file descriptor once released)
IDLE_LOCKS = 64


class LockService:
    """Named locks for ``with_lock`` with holder records and history events. A released lock
    object is kept, per thread, and used again for the same key (building one costs more than
    taking it); a held one never is, so a second acquire of a held key is refused as before."""

    def __init__(self, store: StateStore, recorder: Recorder, *, pid: int, host: str, clock: Callable[[], float]) -> None:
        self._store = store
        self._recorder = recorder
        self._pid = pid
        self._host = host
        self._clock = clock
        self._idle: dict[tuple[int, str], Lock] = {}

    def acquire(self, key: str, wait_seconds: float, *, job_id: str, step_id: str) -> Lock:
        name = user_lock_key(key)
        lock = self._idle.pop((threading.get_ident(), name), None) or self._store.lock(name)
        if not lock.acquire(wait_seconds):
            who = holder_text(self._store.lock_holder(name))
            self._recorder.emit("lock.busy", job_id=job_id, step_id=step_id, lock=key, holder=who)
            raise LockBusyError(
                f"lock '{key}' is held by {who}; not acquired within {wait_seconds:g} s",
                hint="raise with_lock wait_seconds, or find the holder with `aetherflow locks list`",
            )
        rec = self._recorder
        self._store.record_lock(
            LockRecord(name=name, run_id=rec.run_id, pid=self._pid, host=self._host, since=self._clock(), kind="with_lock"),
            rec.observed(rec.event("lock.acquired", job_id=job_id, step_id=step_id, lock=key)),
        )
        return lock

    def release(self, lock: Lock, *, job_id: str, step_id: str) -> None:
        rec = self._recorder
        try:
            shown = lock.key.removeprefix("user:")
            self._store.remove_lock(lock.key, rec.run_id,
                                    rec.observed(rec.event("lock.released", job_id=job_id, step_id=step_id, lock=shown)))
        finally:
            lock.release()
            if not lock.is_held and len(self._idle) < IDLE_LOCKS:
                self._idle[(threading.get_ident(), lock.key)] = lock

    def for_step(self, job_id: str, step_id: str) -> StepLocks:
        return StepLocks(self, job_id, step_id)


class StepLocks:
    """``ctx.locks``: the run's lock service for one step (holder records name its job and step)."""

    __slots__ = ("_job_id", "_service", "_step_id")

    def __init__(self, service: LockService, job_id: str, step_id: str) -> None:
        self._service = service
        self._job_id = job_id
        self._step_id = step_id

    def acquire(self, key: str, wait_seconds: float = 0.0) -> Lock:
        return self._service.acquire(key, wait_seconds, job_id=self._job_id, step_id=self._step_id)

    def release(self, lock: Lock) -> None:
        self._service.release(lock, job_id=self._job_id, step_id=self._step_id)


def holder_text(holder: LockRecord | None) -> str:
    if holder is None:
        return "another process (holder not recorded)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.since))
    return f"run {holder.run_id} (pid {holder.pid} on {holder.host}, since {since})"
