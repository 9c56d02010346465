"""File built-ins: ``zip`` and ``unzip`` (stdlib zipfile through the ``archive:zipfile``
connector: a named ``resource`` sets compression and limits, else the defaults apply).

Paths follow ``steps._paths``: relative to the job's artifacts directory, confined to the
flow's workspace directory. ``zip`` stores symlinked files that stay inside the workspace as
regular files and refuses links that lead out of it (and symlinked directories). ``unzip``
refuses the whole archive when any member is unsafe (absolute, ``..``, symlink, duplicate,
too large) before writing anything, extracts into a temporary directory and renames it into
place, replacing an earlier extraction at ``dest``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aetherflow.api import (
    STEP_SKIPPED,
    STEP_SUCCESS,
    ConnectorError,
    Step,
    StepContext,
    StepError,
    StepResult,
    register_step,
)
from aetherflow.steps._paths import flow_area, workspace_path

MAX_NAMES = 1000


def _archiver(ctx: StepContext, resource: Any) -> Any:
    if resource:
        conn = ctx.connectors[str(resource)]
        if not all(callable(getattr(conn, m, None)) for m in ("pack", "unpack")):
            raise StepError(f"resource '{resource}' is not an archive resource (kind archive)", code="archive.not_archive")
        return conn
    from aetherflow.connectors.archive import ZipArchiver

    return ZipArchiver("zip", {}, {})


def _inside(area: Path, path: Path) -> bool:
    return path == area or area in path.parents


def _walk(ctx: StepContext, top: Path, prefix: str, target: Path, shown: str) -> list[tuple[Path, str]]:
    area = flow_area(ctx).resolve()
    out: list[tuple[Path, str]] = []
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for d in dirs:
            if (Path(root) / d).is_symlink():
                rel = (Path(root) / d).relative_to(top).as_posix()
                raise StepError(f"source '{shown}': '{rel}' is a symlinked directory; zip does not follow those",
                                code="workspace.symlink")
        for f in sorted(files):
            full = Path(root) / f
            rel = full.relative_to(top).as_posix()
            real = full.resolve()
            if not _inside(area, real):
                raise StepError(f"source '{shown}': '{rel}' is a symlink pointing outside the workspace",
                                code="workspace.escape")
            if real == target or (full.parent == target.parent and f.startswith(f".{target.name}.")):
                continue  # the archive being written (or its temp file)
            if not real.is_file():
                raise StepError(f"source '{shown}': '{rel}' is not a regular file", code="step.bad_inputs")
            out.append((real, f"{prefix}{rel}"))
    return out


@register_step(
    "zip",
    inputs_schema={
        "type": "object",
        "properties": {
            "source": {
                "oneOf": [{"type": "string", "minLength": 1},
                          {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}],
                "description": "A directory (its contents are zipped) or a list of files/directories.",
            },
            "output": {"type": "string", "minLength": 1,
                       "description": "Archive to write, relative to the job's artifacts directory (default <step id>.zip)."},
            "resource": {"type": "string", "minLength": 1, "description": "An archive resource (compression, limits)."},
            "compression": {"enum": ["deflated", "stored", "bzip2", "lzma"]},
        },
        "required": ["source"],
        "additionalProperties": False,
    },
)
class Zip(Step):
    """Zip files of the workspace into one archive, written atomically; outputs path, files,
    bytes, sha256. Nothing to zip → SKIPPED."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        target = workspace_path(ctx, str(inputs.get("output") or f"{ctx.step_id}.zip"), what="output")
        files = self._collect(ctx, inputs["source"], target)
        if not files:
            reason = "no files to zip"
            return StepResult(STEP_SKIPPED, {"files": 0, "has_data": False, "reason": reason}, reason=reason)
        try:
            info = _archiver(ctx, inputs.get("resource")).pack(files, target, compression=inputs.get("compression"))
        except ConnectorError as exc:
            raise StepError(f"zip: {exc.message}", code=exc.code, hint=exc.hint) from exc
        return StepResult(STEP_SUCCESS, {"path": str(target), "has_data": True, **info})

    @staticmethod
    def _collect(ctx: StepContext, source: Any, target: Path) -> list[tuple[Path, str]]:
        single = isinstance(source, str)
        entries: Sequence[str] = [source] if single else [str(s) for s in source]
        out: list[tuple[Path, str]] = []
        for entry in entries:
            path = workspace_path(ctx, entry, what="source")
            if not path.exists():
                raise StepError(f"source '{entry}' does not exist", code="step.missing_file")
            if path.is_dir():
                prefix = "" if single else f"{Path(entry).name or path.name}/"
                out.extend(_walk(ctx, path, prefix, target, entry))
            elif path.is_file():
                out.append((path, Path(entry).name))
            else:
                raise StepError(f"source '{entry}' is not a regular file or directory", code="step.bad_inputs")
        seen: set[str] = set()
        for _, name in out:
            if name in seen:
                raise StepError(f"two sources would be stored as '{name}' in the archive", code="step.bad_inputs")
            seen.add(name)
        return out


@register_step(
    "unzip",
    inputs_schema={
        "type": "object",
        "properties": {
            "archive": {"type": "string", "minLength": 1, "description": "Zip file, relative to the job's artifacts directory."},
            "dest": {"type": "string", "minLength": 1,
                     "description": "Directory to extract into (replaced as a whole); default the archive name without .zip."},
            "resource": {"type": "string", "minLength": 1, "description": "An archive resource (limits)."},
        },
        "required": ["archive"],
        "additionalProperties": False,
    },
)
class Unzip(Step):
    """Extract a zip archive safely (zip-slip, symlink and size checks first); outputs dest,
    files, bytes and names (up to 1000)."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        archive = workspace_path(ctx, str(inputs["archive"]), what="archive")
        if not archive.is_file():
            raise StepError(f"archive '{inputs['archive']}' does not exist", code="step.missing_file")
        default_dest = archive.name[:-4] if archive.name.lower().endswith(".zip") else f"{archive.name}.d"
        dest = workspace_path(ctx, str(inputs.get("dest") or default_dest), what="dest")
        job_dir = ctx.workspace.resolve()
        protected = {job_dir, job_dir / "artifacts", job_dir / "scratch", job_dir / "manifests"}
        if dest in protected or dest in job_dir.parents or _inside(dest, archive):
            raise StepError(f"dest '{inputs.get('dest') or default_dest}' would replace a workspace directory or the archive itself; "
                            "name a subdirectory", code="step.bad_inputs")
        try:
            info = _archiver(ctx, inputs.get("resource")).unpack(archive, dest)
        except ConnectorError as exc:
            if exc.code == "archive.unsafe_member":
                raise StepError(f"archive '{inputs['archive']}' refused, nothing extracted: {exc.message}",
                                code=exc.code) from exc
            raise StepError(f"unzip: {exc.message}", code=exc.code, hint=exc.hint) from exc
        names = list(info.get("names", []))
        return StepResult(STEP_SUCCESS, {
            "dest": str(dest),
            "files": info["files"],
            "bytes": info["bytes"],
            "names": names[:MAX_NAMES],
            "names_truncated": len(names) > MAX_NAMES,
        })
