"""Named OS locks on filelock: the per-run executor lock, the flow/job lock and ``with_lock``.

Every lock is an ``flock`` held through an open file descriptor, so the kernel releases it when
the holder dies and nothing releases it while the holder lives: there is no TTL. Lock files live
in ``<state dir>/locks/`` with the key hashed into a safe name; they are created 0600 and not
deleted (deleting a lock file another process is about to open breaks mutual exclusion), with
one exception: a pruned run's executor lock, removed by its holder when no process can need it
again (``OsLock.discard``, see ``state/sqlite.py`` ``delete_runs``).
Holder details (run, pid, host, since) are recorded in the store by the caller, for
``aetherflow locks list`` and for error messages.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any

from aetherflow.errors import StateError

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def lock_file_name(key: str) -> str:
    """A safe, collision-free file name for any lock key."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    readable = _SAFE.sub("_", key)[:48].strip("_") or "lock"
    return f"{readable}.{digest}.lock"


class OsLock:
    """One named OS lock. ``acquire(wait)`` returns True when held; ``release()`` frees it."""

    __slots__ = ("key", "path", "_lock", "held_since")

    def __init__(self, lock_dir: Path, key: str) -> None:
        import filelock

        self.key = key
        self.path = lock_dir / lock_file_name(key)
        self.held_since: float | None = None
        try:
            lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create lock directory {lock_dir}: {exc}") from exc
        self._lock: Any = filelock.FileLock(
            str(self.path),
            mode=0o600,
            thread_local=False,
            blocking=True,
            fallback_to_soft=False,
            preserve_lock_file=True,
            poll_interval=0.02,
        )

    def acquire(self, wait_seconds: float = 0.0) -> bool:
        import filelock

        try:
            if wait_seconds <= 0:
                self._lock.acquire(blocking=False)
            else:
                self._lock.acquire(timeout=wait_seconds)
        except filelock.Timeout:
            return False
        except OSError as exc:
            raise StateError(f"cannot lock {self.path}: {exc}") from exc
        self.held_since = time.time()
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)
        self.held_since = None

    @property
    def is_held(self) -> bool:
        return bool(self._lock.is_locked)

    def discard(self) -> None:
        """Remove the lock file while this object holds the lock (``release`` follows): only for
        a lock whose name no process will ask for again (a pruned run's executor lock)."""
        if not self.is_held:
            raise StateError(f"lock {self.key} is not held: its file stays")
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StateError(f"cannot remove lock file {self.path}: {exc}") from exc


def is_free(lock_dir: Path, key: str) -> bool:
    """True when nobody holds ``key`` right now (probe: acquire and release at once)."""
    probe = OsLock(lock_dir, key)
    if probe.acquire(0):
        probe.release()
        return True
    return False
