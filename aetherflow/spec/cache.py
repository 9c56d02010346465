"""Known schema-valid flows, so a repeated run of an unchanged flow file skips the JSON Schema
checks (and the jsonschema import, most of their cost).

Contract
--------
``ValidationCache(directory, *, max_entries=256)``
    One empty marker file per key in ``directory`` (created ``0700``, like the state directory).
    ``key(raw, inputs_fingerprint)`` is the sha256 over the aetherflow version, the bytes of the
    flow schema file :func:`~aetherflow.spec.schema.load_schema` reads, the flow file's raw bytes
    and a fingerprint of the step types' ``inputs_schema`` (the caller computes it from its
    registry); ``None`` when the schema file cannot be read (then nothing is cached).
    ``known_valid(key)`` is one system call; ``remember(key)`` is called only for a flow that had
    no issue at all (schema, semantic and registry checks).

Best effort throughout: an unreadable or unwritable directory is a miss and is never an error.
Markers are refreshed when hit and the least recently used are removed once there are more
than ``max_entries``, so the directory stays small.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from aetherflow import __version__

__all__ = ["ValidationCache", "flow_schema_bytes"]

#: prune when there are more markers than this, down to three quarters of it (so rarely)
MAX_ENTRIES = 256

_KEY_LEN = 64  # hex sha256
_HEX = frozenset("0123456789abcdef")


def flow_schema_bytes() -> bytes | None:
    """The raw bytes of the flow schema ``load_schema("flow")`` reads; ``None`` if unreadable."""
    from aetherflow.spec import shipped_schema_file

    found = shipped_schema_file("flow")
    try:
        return found.read_bytes() if found is not None else None
    except OSError:
        return None


class ValidationCache:
    """Marker files naming flows known to be schema-valid (see the module docstring)."""

    __slots__ = ("directory", "max_entries")

    def __init__(self, directory: Path, *, max_entries: int = MAX_ENTRIES) -> None:
        self.directory = directory
        self.max_entries = max_entries

    def key(self, raw: bytes, inputs_fingerprint: bytes) -> str | None:
        schema = flow_schema_bytes()
        if schema is None:
            return None
        h = hashlib.sha256()
        for part in (__version__.encode("utf-8"), schema, raw, inputs_fingerprint):
            # length-prefixed, so no two different tuples of parts hash the same bytes
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        return h.hexdigest()

    def known_valid(self, key: str) -> bool:
        marker = self.directory / key
        try:
            os.utime(marker)  # a hit refreshes the marker: pruning removes the least recently used
            return True
        except FileNotFoundError:
            return False
        except OSError:  # read-only home, or not our file: a plain existence check then
            return marker.is_file()

    def remember(self, key: str) -> None:
        try:
            self._make_dirs()
            fd = os.open(self.directory / key, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
            self._prune()
        except OSError:
            pass  # a cache: never fails a run

    def _make_dirs(self) -> None:
        missing = [d for d in (self.directory, *self.directory.parents) if not d.exists()]
        for d in reversed(missing):  # mkdir's mode applies to the last one only with parents=True
            d.mkdir(mode=0o700, exist_ok=True)

    def _prune(self) -> None:
        with os.scandir(self.directory) as it:
            markers = [e for e in it if len(e.name) == _KEY_LEN and _HEX.issuperset(e.name)]
        if len(markers) <= self.max_entries:
            return
        aged: list[tuple[float, str]] = []
        for e in markers:
            try:
                aged.append((e.stat().st_mtime, e.path))
            except OSError:
                continue
        aged.sort()
        keep = self.max_entries * 3 // 4
        for _, path in aged[: max(0, len(aged) - keep)]:
            try:
                os.unlink(path)
            except OSError:
                continue
