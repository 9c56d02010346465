"""``archive:zipfile`` (alias ``archive:zip``): build and unpack zip archives (stdlib zipfile).

The ``zip`` and ``unzip`` steps use it (a default instance when they name no resource).
Config/options: ``compression`` (``deflated`` default, ``stored``, ``bzip2``, ``lzma``),
``compresslevel`` (0-9), ``max_bytes`` (largest total uncompressed size ``unpack`` accepts,
default 4 GiB), ``max_members`` (default 100000).

``unpack`` checks every member before writing anything and refuses the whole archive when a
name is absolute (``/etc/x``, ``C:\\x``, ``\\\\host\\x``), contains ``..``, a NUL or a
backslash path, is a duplicate, or is a symbolic link; or when the declared sizes exceed
``max_bytes``. Members are extracted into a fresh temporary directory beside the destination,
which is then renamed into place, so the destination is either absent, the previous complete
extraction, or the new complete one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from aetherflow.api import Connector, ConnectorError, atomic_open, register_connector
from aetherflow.connectors.base import check_keys

KEYS = frozenset({"compression", "compresslevel", "max_bytes", "max_members"})
COMPRESSION = {
    "deflated": zipfile.ZIP_DEFLATED,
    "stored": zipfile.ZIP_STORED,
    "bzip2": zipfile.ZIP_BZIP2,
    "lzma": zipfile.ZIP_LZMA,
}
_DRIVE = re.compile(r"^[A-Za-z]:")
log = logging.getLogger("aetherflow.connectors")


class UnsafeArchiveError(ConnectorError):
    """The archive has a member that would land outside the destination (zip-slip) or is
    otherwise refused. Code ``archive.unsafe_member``."""

    default_code = "archive.unsafe_member"


def member_parts(name: str) -> tuple[str, ...]:
    """The safe relative path parts of an archive member name; raises UnsafeArchiveError."""
    if "\x00" in name:
        raise UnsafeArchiveError(f"member {name!r} has a NUL character in its name")
    if "\\" in name:
        raise UnsafeArchiveError(f"member {name!r} uses backslashes; refusing an ambiguous path")
    if name.startswith("/") or _DRIVE.match(name):
        raise UnsafeArchiveError(f"member {name!r} has an absolute path")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"member {name!r} climbs out of the destination with '..'")
    if not parts:
        raise UnsafeArchiveError(f"member {name!r} has an empty path")
    return parts


@register_connector("archive", "zipfile", aliases=["zip"])
class ZipArchiver(Connector):
    """Zip archives (stdlib zipfile) with zip-slip and size checks on extraction."""

    def __init__(self, name: str, config: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        super().__init__(name, config, options)
        check_keys(name, "config", config, KEYS)
        check_keys(name, "options", options, KEYS)
        merged = {**dict(options), **dict(config)}
        comp = str(merged.get("compression", "deflated")).lower()
        if comp not in COMPRESSION:
            raise ConnectorError(f"resource '{name}': compression must be one of {', '.join(COMPRESSION)}", code="connector.bad_config")
        self.compression = COMPRESSION[comp]
        try:
            level = merged.get("compresslevel")
            self.compresslevel = int(level) if level is not None else None
            self.max_bytes = int(merged.get("max_bytes", 4 * 1024**3))
            self.max_members = int(merged.get("max_members", 100_000))
        except (TypeError, ValueError) as exc:
            raise ConnectorError(f"resource '{name}': compresslevel, max_bytes and max_members must be integers",
                                 code="connector.bad_config") from exc

    # -- pack -----------------------------------------------------------------------------------
    def pack(self, files: Sequence[tuple[Path, str]], target: Path, *, compression: str | None = None) -> dict[str, Any]:
        """Write ``files`` ((path on disk, name in the archive), in order) to ``target``
        atomically. Returns ``{"files", "bytes", "sha256"}``."""
        method = self.compression if compression is None else COMPRESSION.get(compression.lower())
        if method is None:
            raise ConnectorError(f"compression must be one of {', '.join(COMPRESSION)}", code="archive.bad_compression")
        try:
            with atomic_open(target, "wb") as fh, zipfile.ZipFile(
                fh, "w", compression=method, compresslevel=self.compresslevel
            ) as zf:
                for path, arcname in files:
                    zf.write(path, arcname)
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            raise ConnectorError(f"cannot write archive {target.name}: {type(exc).__name__}: {exc}", code="archive.write") from exc
        digest = hashlib.sha256()
        with open(target, "rb") as fh:
            for chunk in iter(lambda: fh.read(1024 * 1024), b""):
                digest.update(chunk)
        return {"files": len(files), "bytes": target.stat().st_size, "sha256": digest.hexdigest()}

    # -- unpack ---------------------------------------------------------------------------------
    def check(self, zf: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
        """Validate every member; returns (info, safe parts) pairs. Raises UnsafeArchiveError."""
        infos = zf.infolist()
        if len(infos) > self.max_members:
            raise UnsafeArchiveError(f"archive has {len(infos)} members, more than max_members {self.max_members}")
        seen: set[tuple[str, ...]] = set()
        total = 0
        out: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
        for info in infos:
            parts = member_parts(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafeArchiveError(f"member {info.filename!r} is a symbolic link; links are not extracted")
            if parts in seen and not info.is_dir():
                raise UnsafeArchiveError(f"member {info.filename!r} appears twice")
            seen.add(parts)
            total += info.file_size
            if total > self.max_bytes:
                raise UnsafeArchiveError(f"archive expands to more than max_bytes ({self.max_bytes} bytes)")
            out.append((info, parts))
        return out

    def unpack(self, archive: Path, dest: Path) -> dict[str, Any]:
        """Extract ``archive`` into ``dest`` (replaced as a whole). Returns
        ``{"files", "bytes", "names"}``."""
        try:
            zf = zipfile.ZipFile(archive)
        except (OSError, zipfile.BadZipFile) as exc:
            raise ConnectorError(f"cannot open archive {archive.name}: {type(exc).__name__}: {exc}", code="archive.read") from exc
        with zf:
            members = self.check(zf)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
            try:
                files, size, names = self._extract(zf, members, tmp)
                swap_in(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return {"files": files, "bytes": size, "names": names}

    def _extract(self, zf: zipfile.ZipFile, members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]],
                 tmp: Path) -> tuple[int, int, list[str]]:
        root = tmp.resolve()
        files = 0
        size = 0
        names: list[str] = []
        for info, parts in members:
            target = root.joinpath(*parts)
            # belt and braces: the checked parts cannot leave root, and root is a fresh directory
            if root not in target.parents:
                raise UnsafeArchiveError(f"member {info.filename!r} would be written outside the destination")
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "xb") as out:
                    shutil.copyfileobj(src, out, 1024 * 1024)
                    out.flush()
                    os.fsync(out.fileno())
            except FileExistsError as exc:
                raise UnsafeArchiveError(f"member {info.filename!r} collides with another member") from exc
            except (OSError, zipfile.BadZipFile, EOFError) as exc:
                raise ConnectorError(f"cannot extract {info.filename!r}: {type(exc).__name__}: {exc}",
                                     code="archive.read") from exc
            if (info.external_attr >> 16) & 0o100:
                target.chmod(target.stat().st_mode | 0o100)
            files += 1
            size += info.file_size
            names.append("/".join(parts))
        return files, size, names

    def close(self) -> None:
        """Nothing to release."""


def swap_in(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` to ``dest``; an existing ``dest`` directory is moved aside first and
    removed after (a file or symlink at ``dest`` is refused)."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise ConnectorError(f"destination {dest.name} exists and is not a directory", code="archive.dest_exists")
    old: Path | None = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.rename(dest, old / "previous")
    try:
        os.rename(tmp, dest)
    except OSError:
        if old is not None:
            os.rename(old / "previous", dest)
            old.rmdir()
        raise
    _fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        log.debug("cannot open %s to fsync it: %s", path, exc)
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        log.debug("fsync of %s failed: %s", path, exc)
    finally:
        os.close(fd)
