"""Known-valid flows, so a repeated run of an unchanged flow file skips the JSON Schema checks
(and the jsonschema import) and the YAML parse (and the yaml import): the parse's result is kept.

Contract
--------
``ValidationCache(directory, *, max_entries=256)``
    One entry file per key in ``directory`` (created ``0700``, like the state directory; files
    ``0600``). ``key(raw, inputs_fingerprint)`` is the sha256 over the aetherflow version, the
    bytes of the flow schema file :func:`~aetherflow.spec.schema.load_schema` reads, the flow
    file's raw bytes and a fingerprint of the step types' ``inputs_schema`` (the caller computes
    it from its registry); ``None`` when the schema file cannot be read (then nothing is cached).
    ``remember(key, data, positions)`` is called only for a flow that had no issue at all
    (schema, semantic and registry checks), with what :func:`~aetherflow.spec.loader.load_yaml`
    returned for it. ``lookup(key)`` returns that ``(data, positions)`` again (freshly built
    objects: the caller may keep them), or ``None`` on a miss.

Entry format: the header line ``aetherflow-valid <FORMAT> <interpreter cache tag> <key>\\n``,
the 32-byte sha256 of the payload, then the payload: ``marshal`` of ``(data, values, keys)``,
the parsed document and the two tables of its :class:`~aetherflow.spec.loader.Positions`.
marshal keeps exactly what the loader built (dict key order, tuple paths, ``bool`` vs ``int``
vs ``float``, NaN and infinities) and is the fastest stdlib way to rebuild it; its format may
change between Python versions, hence the cache tag. Anything else (the empty markers of
format 0, another format or interpreter, a file that is truncated or corrupt, whose digest or
shape does not match) is a miss, and the next clean check rewrites it.

Best effort throughout: an unreadable or unwritable directory is a miss and is never an error;
an entry is written to a temporary file and renamed into place. Entries are refreshed (mtime)
when hit and the least recently used are removed once there are more than ``max_entries``, so
the directory stays small.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
import time
from pathlib import Path
from typing import Any

from aetherflow import __version__
from aetherflow.spec.loader import Positions

__all__ = ["FORMAT", "ValidationCache", "flow_schema_bytes"]

#: prune when there are more entries than this, down to three quarters of it (so rarely)
MAX_ENTRIES = 256

#: version of the entry format (0: the empty markers of earlier releases)
FORMAT = 1

_KEY_LEN = 64  # hex sha256
_HEX = frozenset("0123456789abcdef")
_DIGEST_LEN = 32
_TMP_SUFFIX = ".tmp"
_STALE_TMP_SECONDS = 3600  # a temporary file this old was left by a process that died mid-write


def flow_schema_bytes() -> bytes | None:
    """The raw bytes of the flow schema ``load_schema("flow")`` reads; ``None`` if unreadable."""
    from aetherflow.spec import shipped_schema_file

    found = shipped_schema_file("flow")
    try:
        return found.read_bytes() if found is not None else None
    except OSError:
        return None


def _header(key: str) -> bytes:
    return f"aetherflow-valid {FORMAT} {sys.implementation.cache_tag} {key}\n".encode()


class ValidationCache:
    """Entry files holding flows known to be valid, as parsed (see the module docstring)."""

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

    def lookup(self, key: str) -> tuple[Any, Positions] | None:
        """The ``(data, positions)`` remembered under ``key``; ``None`` when there is no usable entry."""
        entry = self.directory / key
        try:
            with open(entry, "rb") as fh:
                blob = fh.read()
        except OSError:
            return None
        parsed = _decode(blob, key)
        if parsed is not None:
            try:
                os.utime(entry)  # a hit refreshes the entry: pruning removes the least recently used
            except OSError:
                pass  # read-only home: still a hit
        return parsed

    def remember(self, key: str, data: Any, positions: Positions) -> None:
        try:
            values, keys = positions.tables()
            payload = marshal.dumps((data, values, keys))
        except ValueError:  # not plain values (load_yaml never returns such): cache nothing
            return
        tmp = self.directory / f".{key}.{os.getpid()}{_TMP_SUFFIX}"
        try:
            self._make_dirs()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(_header(key))
                    fh.write(hashlib.sha256(payload).digest())
                    fh.write(payload)
                os.replace(tmp, self.directory / key)  # readers see the old entry or the whole new one
            except OSError:
                _unlink(tmp)
                raise
            self._prune()
        except OSError:
            pass  # a cache: never fails a run

    def _make_dirs(self) -> None:
        missing = [d for d in (self.directory, *self.directory.parents) if not d.exists()]
        for d in reversed(missing):  # mkdir's mode applies to the last one only with parents=True
            d.mkdir(mode=0o700, exist_ok=True)

    def _prune(self) -> None:
        entries: list[os.DirEntry[str]] = []
        with os.scandir(self.directory) as it:
            for e in it:
                if len(e.name) == _KEY_LEN and _HEX.issuperset(e.name):
                    entries.append(e)
                elif e.name.startswith(".") and e.name.endswith(_TMP_SUFFIX):
                    _remove_stale_tmp(e)
        if len(entries) <= self.max_entries:
            return
        aged: list[tuple[float, str]] = []
        for e in entries:
            try:
                aged.append((e.stat().st_mtime, e.path))
            except OSError:
                continue
        aged.sort()
        keep = self.max_entries * 3 // 4
        for _, path in aged[: max(0, len(aged) - keep)]:
            _unlink(path)


def _decode(blob: bytes, key: str) -> tuple[Any, Positions] | None:
    header = _header(key)
    start = len(header) + _DIGEST_LEN
    if not blob.startswith(header) or len(blob) <= start:
        return None  # an empty marker of format 0, another format or interpreter, or truncated
    payload = memoryview(blob)[start:]
    if hashlib.sha256(payload).digest() != blob[len(header):start]:
        return None  # torn or corrupt
    try:
        loaded = marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return None
    if not (isinstance(loaded, tuple) and len(loaded) == 3
            and isinstance(loaded[1], dict) and isinstance(loaded[2], dict)):
        return None
    data, values, keys = loaded
    return data, Positions(values, keys)


def _remove_stale_tmp(e: os.DirEntry[str]) -> None:
    try:
        if e.stat(follow_symlinks=False).st_mtime < time.time() - _STALE_TMP_SECONDS:
            os.unlink(e.path)
    except OSError:
        pass


def _unlink(path: str | Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
