"""Job workspace directories, path containment and atomic file writes.

A job's workspace is ``<root>/<flow_id>/<job_id>/<run_id>/`` with ``artifacts/``, ``scratch/``
and ``manifests/`` inside (other names when the flow's ``workspace.layout`` renames them, as
aetherflow-core's layout does). ``atomic_write`` writes to a temporary file in the target's directory,
fsyncs it, renames it over the target and fsyncs the directory, so a reader sees either the old
file or the complete new one, never a half-written one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

from aetherflow.errors import StepError

SUBDIRS = ("artifacts", "scratch", "manifests")
DEFAULT_LAYOUT: Mapping[str, str] = MappingProxyType({name: name for name in SUBDIRS})


@dataclass(frozen=True, slots=True, kw_only=True)
class JobWorkspace:
    root: Path  # the flow's workspace root
    path: Path  # this job's directory
    #: the sub-directories' names (``flow.workspace.layout`` over the defaults)
    layout: Mapping[str, str] = field(default_factory=lambda: DEFAULT_LAYOUT)

    @property
    def artifacts(self) -> Path:
        return self.path / self.layout["artifacts"]

    @property
    def scratch(self) -> Path:
        return self.path / self.layout["scratch"]

    @property
    def manifests(self) -> Path:
        return self.path / self.layout["manifests"]

    def subdirs(self) -> tuple[Path, Path, Path]:
        return self.artifacts, self.scratch, self.manifests

    def as_scope(self) -> dict[str, str]:
        return {
            "root": str(self.root),
            "job": str(self.path),
            "artifacts": str(self.artifacts),
            "scratch": str(self.scratch),
            "manifests": str(self.manifests),
        }


def job_workspace(root: Path, flow_id: str, job_id: str, run_id: str,
                  layout: Mapping[str, str] | None = None) -> JobWorkspace:
    names = DEFAULT_LAYOUT if not layout else MappingProxyType({**DEFAULT_LAYOUT, **layout})
    return JobWorkspace(root=root, path=root / flow_id / job_id / run_id, layout=names)


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    path: Path  # absolute: the directory listed joined with the file's relative path
    bytes: int
    mtime_ns: int


def list_files(directory: Path, limit: int = 1000) -> list[ArtifactFile]:
    """The files under ``directory`` (sub-directories included, in sorted order; at most
    ``limit``): the one listing of a job's artifacts, for ``run -v`` and ``runs show -v``.
    Empty when the directory is gone; a file removed while it is listed is left out."""
    found: list[ArtifactFile] = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            try:
                st = p.stat()
            except OSError:
                continue
            found.append(ArtifactFile(path=p, bytes=st.st_size, mtime_ns=st.st_mtime_ns))
            if len(found) >= limit:
                return found
    return found


def artifact_files(ws: JobWorkspace, limit: int = 1000) -> list[dict[str, Any]]:
    """The files under ``ws.artifacts`` (:func:`list_files`): ``path`` relative to the job
    directory (``artifacts/sales.csv``, or ``out/sales.csv`` when the layout renames it) and
    ``bytes``."""
    return [{"path": str(f.path.relative_to(ws.path)), "bytes": f.bytes} for f in list_files(ws.artifacts, limit)]


def ensure(ws: JobWorkspace) -> JobWorkspace:
    for sub in ws.subdirs():
        sub.mkdir(parents=True, exist_ok=True)
    return ws


def remove_run_dirs(root: Path, flow_id: str, run_id: str) -> list[Path]:
    """Delete every job directory of one run (cleanup policy). Returns what was removed."""
    removed: list[Path] = []
    flow_dir = root / flow_id
    if not flow_dir.is_dir():
        return removed
    for job_dir in flow_dir.iterdir():
        target = job_dir / run_id
        if target.is_dir() and not target.is_symlink():
            import shutil  # only for a cleanup policy

            shutil.rmtree(target, ignore_errors=True)
            removed.append(target)
    return removed


def confine(base: Path, candidate: str | os.PathLike[str]) -> Path:
    """Resolve ``candidate`` relative to ``base`` and refuse anything outside ``base``
    (``..``, absolute paths elsewhere, symlinks pointing out)."""
    base_r = base.resolve()
    p = Path(candidate)
    full = (p if p.is_absolute() else base_r / p).resolve()
    if full != base_r and base_r not in full.parents:
        raise StepError(f"path '{candidate}' is outside the workspace {base_r}", code="workspace.escape")
    return full


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temp file beside ``target``; on clean exit fsync and rename it into place.
    On error the temp file is removed and ``target`` is untouched."""
    target_p = Path(target)
    target_p.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # only when a step writes an artifact

    fd, tmp = tempfile.mkstemp(prefix=f".{target_p.name}.", suffix=".tmp", dir=target_p.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target_p)
        fsync_dir(target_p.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write(target: str | os.PathLike[str], data: str | bytes, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``target`` atomically (temp file, fsync, rename, fsync dir)."""
    if isinstance(data, bytes):
        with atomic_open(target, "wb") as fh:
            fh.write(data)
    else:
        with atomic_open(target, "w", encoding=encoding, newline="") as fh:
            fh.write(data)
    return Path(target)
