"""``with_lock`` for steps: named OS locks with holder records and lock events."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from aetherflow.errors import LockBusyError
from aetherflow.state.store import Lock, LockRecord, user_lock_key

if TYPE_CHECKING:
    from aetherflow.engine.run import Executor


#: released lock objects kept for reuse (they hold no file descriptor once released)
IDLE_LOCKS = 64


class LockService:
    """Named OS locks for ``with_lock`` with holder records and history events. A released lock
    object is kept, per thread, and used again for the same key (building one costs more than
    taking it); a held one never is, so a second acquire of a held key is refused as before."""

    def __init__(self, ex: Executor) -> None:
        self._ex = ex
        self._idle: dict[tuple[int, str], Lock] = {}

    def acquire(self, key: str, wait_seconds: float, *, job_id: str, step_id: str) -> Lock:
        ex = self._ex
        name = user_lock_key(key)
        lock = self._idle.pop((threading.get_ident(), name), None) or ex.svc.store.lock(name)
        if not lock.acquire(wait_seconds):
            holder = ex.svc.store.lock_holder(name)
            who = holder_text(holder)
            ex.emit("lock.busy", job_id=job_id, step_id=step_id, lock=key, holder=who)
            raise LockBusyError(
                f"lock '{key}' is held by {who}; not acquired within {wait_seconds:g} s",
                hint="raise with_lock wait_seconds, or find the holder with `aetherflow locks list`",
            )
        ex.svc.store.record_lock(
            LockRecord(name=name, run_id=ex.run_id, pid=ex.svc.pid, host=ex.svc.host, since=ex.svc.clock(), kind="with_lock"),
            ex._rec(ex.event("lock.acquired", job_id=job_id, step_id=step_id, lock=key)),
        )
        return lock

    def release(self, lock: Lock, *, job_id: str, step_id: str) -> None:
        ex = self._ex
        try:
            ex.svc.store.remove_lock(lock.key, ex.run_id, ex._rec(ex.event("lock.released", job_id=job_id, step_id=step_id, lock=lock.key[5:])))
        finally:
            lock.release()
            if not lock.is_held and len(self._idle) < IDLE_LOCKS:
                self._idle[(threading.get_ident(), lock.key)] = lock


def holder_text(holder: LockRecord | None) -> str:
    if holder is None:
        return "another process (holder not recorded)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.since))
    return f"run {holder.run_id} (pid {holder.pid} on {holder.host}, since {since})"
