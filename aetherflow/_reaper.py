"""The watchdog helper program (see ``aetherflow.process``): kills process groups when the
aetherflow process that started it dies.

Run as a script, never imported by aetherflow: ``python -I -S .../aetherflow/_reaper.py`` with
stdin = the read end of a pipe whose only write end the runner holds. Protocol, one command a
line: ``+ PGID GRACE`` registers a group, ``- PGID`` forgets it. End of file means the runner is
gone: every group still registered gets SIGTERM, then SIGKILL once its grace has passed. The
helper ignores SIGINT, SIGHUP and SIGTERM so terminal and service-manager signals aimed at the
runner do not take the safety net down with it. Standard library only, no site packages.
"""

from __future__ import annotations

import os
import signal
import time


def read_until_eof(fd: int) -> dict[int, float]:
    """Apply ``+``/``-`` commands from ``fd`` until end of file; return what is registered."""
    groups: dict[int, float] = {}
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            return groups
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            parts = line.split()
            try:
                if len(parts) == 3 and parts[0] == b"+":
                    groups[int(parts[1])] = float(parts[2])
                elif len(parts) == 2 and parts[0] == b"-":
                    groups.pop(int(parts[1]), None)
            except ValueError:
                continue


def kill_groups(groups: dict[int, float], poll: float = 0.05) -> None:
    """SIGTERM every group; SIGKILL those still there after their grace."""
    start = time.monotonic()
    for pgid in list(groups):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except OSError:
            groups.pop(pgid, None)
    while groups:
        elapsed = time.monotonic() - start
        for pgid, grace in list(groups.items()):
            try:
                os.killpg(pgid, 0)
            except OSError:
                del groups[pgid]
                continue
            if elapsed >= grace:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except OSError:
                    pass
                del groups[pgid]
        if groups:
            time.sleep(poll)


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    kill_groups(read_until_eof(0))


if __name__ == "__main__":
    main()
