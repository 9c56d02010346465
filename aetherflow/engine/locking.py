"""``with_lock`` for steps: named OS locks with holder records and lock events."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aetherflow.errors import LockBusyError
from aetherflow.locks import OsLock, user_lock_key
from aetherflow.state.store import LockRecord

if TYPE_CHECKING:
    from aetherflow.engine.run import Executor


class LockService:
    """Named OS locks for ``with_lock`` with holder records and history events."""

    def __init__(self, ex: Executor) -> None:
        self._ex = ex

    def acquire(self, key: str, wait_seconds: float, *, job_id: str, step_id: str) -> OsLock:
        ex = self._ex
        name = user_lock_key(key)
        lock = OsLock(ex.svc.lock_dir, name)
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

    def release(self, lock: OsLock, *, job_id: str, step_id: str) -> None:
        ex = self._ex
        try:
            ex.svc.store.remove_lock(lock.key, ex.run_id, ex._rec(ex.event("lock.released", job_id=job_id, step_id=step_id, lock=lock.key[5:])))
        finally:
            lock.release()


def holder_text(holder: LockRecord | None) -> str:
    if holder is None:
        return "another process (holder not recorded)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.since))
    return f"run {holder.run_id} (pid {holder.pid} on {holder.host}, since {since})"
