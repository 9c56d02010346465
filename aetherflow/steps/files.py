"""File built-ins: ``zip`` and ``unzip`` (stdlib zipfile through the ``archive:zipfile``
connector: a named ``resource`` sets compression and limits, else the defaults apply).

Paths follow ``steps._paths``: relative to the job's artifacts directory, confined to the
flow's workspace directory. ``zip`` stores symlinked files that stay inside the workspace as
regular files and refuses links that lead out of it (and symlinked directories). ``unzip``
refuses the whole archive when any member is unsafe (absolute, ``..``, symlink, duplicate,
too large) before writing anything, extracts into a temporary directory and renames it into
place, replacing an earlier extraction at ``dest``.

The aetherflow-core inputs are accepted too. ``zip``: ``items`` (paths, globs, ``{path: …}`` or
``{glob: …}``; archive names relative to ``src_dir``, default the artifacts directory),
``recursive``, ``dest_path`` (= ``output``), ``overwrite`` and ``password`` (refused: the
stdlib cannot write encrypted archives). ``unzip``: ``archives`` (one or several) extracted
*into* ``dest_dir`` (merged, laid out like the reference), ``src_dir``, ``overwrite``,
``private_zip_folder``; ``members`` and ``password`` (ZipCrypto) work in both forms.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import zipfile
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
from aetherflow.connectors.archive import UnsafeArchiveError, ZipArchiver, swap_in
from aetherflow.steps._paths import flow_area, workspace_path

MAX_NAMES = 1000
_PATH_LIST = {"oneOf": [{"type": "string", "minLength": 1},
                        {"type": "array", "items": {"type": "string", "minLength": 1}}]}
_ZIP_ITEM = {"oneOf": [
    {"type": "string", "minLength": 1},
    {"type": "object", "properties": {"path": {"type": "string", "minLength": 1}},
     "required": ["path"], "additionalProperties": False},
    {"type": "object", "properties": {"glob": {"type": "string", "minLength": 1}},
     "required": ["glob"], "additionalProperties": False},
]}
_PASSWORD = {"type": ["string", "null"]}


def _resource(inputs: Mapping[str, Any]) -> Any:
    """``resource`` (ours) or ``connector`` (aetherflow-core's second name for it)."""
    return inputs.get("resource") or inputs.get("connector")


def _password(inputs: Mapping[str, Any]) -> str | None:
    """The password, or None when absent or empty (as in aetherflow-core)."""
    value = inputs.get("password")
    return str(value) if value not in (None, "") else None


def _archiver(ctx: StepContext, resource: Any, verb: str = "zip") -> Any:
    if resource:
        try:
            conn = ctx.connectors[str(resource)]
        except ConnectorError as exc:
            raise StepError(f"{verb}: {exc.message}", code=exc.code, hint=exc.hint) from exc
        if not all(callable(getattr(conn, m, None)) for m in ("pack", "unpack")):
            raise StepError(f"resource '{resource}' is not an archive resource (kind archive)", code="archive.not_archive")
        return conn
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
            "items": {"oneOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": _ZIP_ITEM}],
                      "description": "aetherflow-core: files, directories and globs (or {path: …} / {glob: …}); "
                                     "archive names are relative to src_dir."},
            "src_dir": {"type": "string", "minLength": 1,
                        "description": "aetherflow-core: base directory of the archive names (default the artifacts directory)."},
            "recursive": {"type": "boolean", "default": True,
                          "description": "aetherflow-core: include the files below directories named in items."},
            "output": {"type": "string", "minLength": 1,
                       "description": "Archive to write, relative to the job's artifacts directory (default <step id>.zip)."},
            "dest_path": {"type": "string", "minLength": 1, "description": "aetherflow-core name of output."},
            "overwrite": {"type": "boolean", "default": True,
                          "description": "false: fail instead of replacing an existing archive."},
            "password": {**_PASSWORD, "description": "Refused when set: Python's zipfile cannot write encrypted archives."},
            "resource": {"type": "string", "minLength": 1, "description": "An archive resource (compression, limits)."},
            "connector": {"type": "string", "minLength": 1, "description": "aetherflow-core name of resource."},
            "compression": {"enum": ["deflated", "stored", "bzip2", "lzma"]},
        },
        "oneOf": [{"required": ["source"]}, {"required": ["items"]}],
        "allOf": [{"not": {"required": ["output", "dest_path"]}}, {"not": {"required": ["resource", "connector"]}}],
        "dependentRequired": {"src_dir": ["items"], "recursive": ["items"]},
        "additionalProperties": False,
    },
)
class Zip(Step):
    """Zip files of the workspace into one archive, written atomically; outputs path, files,
    bytes, sha256. Nothing to zip → SKIPPED."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        shown = str(inputs.get("output") or inputs.get("dest_path") or f"{ctx.step_id}.zip")
        target = workspace_path(ctx, shown, what="output")
        if _password(inputs) is not None:
            raise StepError(
                "zip: a password is set, but archives are written with Python's zipfile, which cannot "
                "create encrypted zip files; refusing to write the archive unencrypted",
                code="archive.encryption_unsupported",
                hint="drop password, or encrypt with a tool in an external.process step (e.g. 7z a -p… or zip -e)",
            )
        if inputs.get("overwrite") is False and (target.exists() or target.is_symlink()):
            raise StepError(f"output '{shown}' already exists and overwrite is false", code="archive.dest_exists")
        core = "items" in inputs and "source" not in inputs
        missing: list[str] = []
        if core:
            base, files = self._collect_items(ctx, inputs, target, missing)
        else:
            base, files = None, self._collect(ctx, inputs["source"], target)
        extra: dict[str, Any] = {}
        if core:
            extra = {"output": str(target), "src_dir": str(base)}
            if missing:
                extra["missing"] = missing[:MAX_NAMES]
        if not files:
            reason = "no files to zip"
            return StepResult(STEP_SKIPPED, {"files": 0, "has_data": False, "reason": reason,
                                             **({**extra, "count": 0} if core else {})}, reason=reason)
        try:
            info = _archiver(ctx, _resource(inputs)).pack(files, target, compression=inputs.get("compression"))
        except ConnectorError as exc:
            raise StepError(f"zip: {exc.message}", code=exc.code, hint=exc.hint) from exc
        outputs = {"path": str(target), "has_data": True, **info}
        if core:  # the reference's output names as well
            outputs.update(extra, count=info.get("files", len(files)), password=False)
        return StepResult(STEP_SUCCESS, outputs)

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
        _no_duplicates(out)
        return out

    @staticmethod
    def _collect_items(ctx: StepContext, inputs: Mapping[str, Any], target: Path,
                       missing: list[str]) -> tuple[Path, list[tuple[Path, str]]]:
        """aetherflow-core's ``items``: paths and globs; a path that matches nothing is skipped
        (with a warning) as the reference does; names are relative to ``src_dir``."""
        base = workspace_path(ctx, str(inputs["src_dir"]), what="src_dir") if inputs.get("src_dir") \
            else ctx.artifacts_dir().resolve()
        if not base.is_dir():
            raise StepError(f"src_dir '{inputs.get('src_dir')}' is not a directory", code="step.missing_file")
        recursive = bool(inputs.get("recursive", True))
        raw = inputs["items"]
        entries: list[Any] = [raw] if isinstance(raw, str) else list(raw)
        found: dict[str, Path] = {}

        def add(path: Path, shown: str) -> None:
            if path.is_dir():
                if recursive:
                    try:
                        prefix = path.relative_to(base).as_posix()
                    except ValueError:
                        raise StepError(f"items: '{shown}' is outside src_dir {base}", code="step.bad_inputs") from None
                    prefix = "" if prefix == "." else f"{prefix}/"
                    for real, name in _walk(ctx, path, prefix, target, shown):
                        found.setdefault(name, real)
            elif path.is_file():
                if path == target:
                    return  # the archive being written
                try:
                    found.setdefault(path.relative_to(base).as_posix(), path)
                except ValueError:
                    raise StepError(f"items: '{shown}' is outside src_dir {base}", code="step.bad_inputs") from None

        for item in entries:
            if isinstance(item, Mapping):
                pattern, text = ("path" not in item), str(item.get("path") or item.get("glob") or "")
            else:
                text = str(item)
                pattern = glob.has_magic(text)
            if not text:
                raise StepError("items: an entry is empty", code="step.bad_inputs")
            if pattern:  # pathlib globbing, as the reference (``*`` matches dot files too)
                full = Path(text) if Path(text).is_absolute() else ctx.artifacts_dir() / text
                rel = full.relative_to(full.anchor)
                matches = sorted(Path(full.anchor).glob(str(rel))) if str(rel) not in ("", ".") else []
                for m in matches:
                    add(workspace_path(ctx, str(m), what="items"), str(m))
                if not matches:
                    missing.append(text)
                continue
            path = workspace_path(ctx, text, what="items")
            if not path.exists():
                missing.append(text)
                continue
            add(path, text)
        for text in missing:
            ctx.log.warning("zip: items entry '%s' matches no file; skipped", text)
        return base, sorted(((p, n) for n, p in found.items()), key=lambda pn: pn[1])


def _no_duplicates(files: Sequence[tuple[Path, str]]) -> None:
    seen: set[str] = set()
    for _, name in files:
        if name in seen:
            raise StepError(f"two sources would be stored as '{name}' in the archive", code="step.bad_inputs")
        seen.add(name)


@register_step(
    "unzip",
    inputs_schema={
        "type": "object",
        "properties": {
            "archive": {"type": "string", "minLength": 1, "description": "Zip file, relative to the job's artifacts directory."},
            "dest": {"type": "string", "minLength": 1,
                     "description": "Directory to extract into (replaced as a whole); default the archive name without .zip."},
            "archives": {**_PATH_LIST, "description": "aetherflow-core: zip file(s) extracted into dest_dir (merged)."},
            "dest_dir": {"type": "string", "minLength": 1, "description": "aetherflow-core: directory the archives are extracted into."},
            "src_dir": {"type": "string", "minLength": 1,
                        "description": "aetherflow-core: an archive at src_dir/a/x.zip goes to dest_dir/a/ (default the artifacts directory)."},
            "private_zip_folder": {"type": "boolean", "default": False,
                                   "description": "aetherflow-core: extract src_dir/a/x.zip into dest_dir/a/x/ instead."},
            "overwrite": {"type": "boolean", "default": True,
                          "description": "aetherflow-core: false keeps files already in dest_dir."},
            "members": {"type": ["array", "null"], "items": {"type": "string", "minLength": 1},
                        "description": "Extract only these member names."},
            "password": {**_PASSWORD, "description": "Password of a ZipCrypto-encrypted archive."},
            "resource": {"type": "string", "minLength": 1, "description": "An archive resource (limits)."},
            "connector": {"type": "string", "minLength": 1, "description": "aetherflow-core name of resource."},
        },
        "oneOf": [{"required": ["archive"]}, {"required": ["archives", "dest_dir"]}],
        "allOf": [{"not": {"required": ["resource", "connector"]}}],
        "dependentRequired": {"dest": ["archive"], "src_dir": ["archives"], "private_zip_folder": ["archives"],
                              "overwrite": ["archives"]},
        "additionalProperties": False,
    },
)
class Unzip(Step):
    """Extract a zip archive safely (zip-slip, symlink and size checks first); outputs dest,
    files, bytes and names (up to 1000)."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        if "archives" in inputs and "archive" not in inputs:
            return self._core(ctx, inputs)
        archive = workspace_path(ctx, str(inputs["archive"]), what="archive")
        if not archive.is_file():
            raise StepError(f"archive '{inputs['archive']}' does not exist", code="step.missing_file")
        default_dest = archive.name[:-4] if archive.name.lower().endswith(".zip") else f"{archive.name}.d"
        dest = workspace_path(ctx, str(inputs.get("dest") or default_dest), what="dest")
        job_dir = ctx.workspace.resolve()
        protected = {job_dir, *(job_dir / sub.name for sub in ctx.ws.subdirs())}
        if dest in protected or dest in job_dir.parents or _inside(dest, archive):
            raise StepError(f"dest '{inputs.get('dest') or default_dest}' would replace a workspace directory or the archive itself; "
                            "name a subdirectory", code="step.bad_inputs")
        archiver = _archiver(ctx, _resource(inputs), "unzip")
        password, members = _password(inputs), inputs.get("members")
        if password is None and members is None:
            try:
                info = archiver.unpack(archive, dest)
            except ConnectorError as exc:
                raise _unzip_error(str(inputs["archive"]), exc) from exc
            except (RuntimeError, NotImplementedError) as exc:  # an encrypted or AES archive
                raise _zip_read_error(str(inputs["archive"]), exc, None) from exc
            names = list(info.get("names", []))
            files, size = info["files"], info["bytes"]
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp, names, size = _extract_to_temp(archiver, archive, str(inputs["archive"]), dest.parent,
                                                password=password, members=members)
            try:
                swap_in(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            files = len(names)
        return StepResult(STEP_SUCCESS, {
            "dest": str(dest),
            "files": files,
            "bytes": size,
            "names": names[:MAX_NAMES],
            "names_truncated": len(names) > MAX_NAMES,
        })

    @staticmethod
    def _core(ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        """aetherflow-core's form: each archive is extracted into ``dest_dir`` (under the
        archive's directory relative to ``src_dir``), merging with what is there; an archive
        that does not exist is skipped with a warning, as the reference does. All archives are
        checked and extracted to temporary directories first, so a refused one (unsafe member,
        wrong password) leaves ``dest_dir`` untouched."""
        raw = inputs.get("archives")
        archives = [] if raw is None else [raw] if isinstance(raw, str) else [str(a) for a in raw]
        dest_dir = workspace_path(ctx, str(inputs["dest_dir"]), what="dest_dir")
        src_dir = workspace_path(ctx, str(inputs["src_dir"]), what="src_dir") if inputs.get("src_dir") \
            else ctx.artifacts_dir().resolve()
        private = bool(inputs.get("private_zip_folder", False))
        overwrite = inputs.get("overwrite") is not False
        password, members = _password(inputs), inputs.get("members")
        archiver = _archiver(ctx, _resource(inputs), "unzip")
        dest_dir.mkdir(parents=True, exist_ok=True)  # workspace_path resolved it: no link in it
        unzipped: list[dict[str, Any]] = []
        missing: list[str] = []
        all_names: list[str] = []
        seen: set[str] = set()
        total = 0
        staged: list[tuple[Path, Path, Path, int]] = []  # (archive, out_dir, temp dir, bytes)
        try:
            for shown in archives:
                archive = workspace_path(ctx, shown, what="archives")
                if not archive.is_file():
                    ctx.log.warning("unzip: archive '%s' does not exist; skipped", shown)
                    missing.append(shown)
                    continue
                try:
                    rel = archive.relative_to(src_dir)
                    out_dir = dest_dir / (rel.with_suffix("") if private else rel.parent)
                except ValueError:
                    out_dir = dest_dir / archive.name
                tmp, _, size = _extract_to_temp(archiver, archive, shown, dest_dir, password=password, members=members)
                staged.append((archive, out_dir, tmp, size))
            merged = [(archive, out_dir, _merge(tmp, out_dir, dest_dir, overwrite=overwrite), size)
                      for archive, out_dir, tmp, size in staged]
        finally:
            for _, _, tmp, _ in staged:
                shutil.rmtree(tmp, ignore_errors=True)
        for archive, out_dir, written, size in merged:
            total += size
            prefix = out_dir.relative_to(dest_dir).as_posix()
            for n in written:
                full = n if prefix == "." else f"{prefix}/{n}"
                if full not in seen:  # a later archive may replace a file an earlier one wrote
                    seen.add(full)
                    all_names.append(full)
            unzipped.append({
                "archive": str(archive),
                "dest_dir": str(out_dir),
                "files": written[:MAX_NAMES],
                "files_truncated": len(written) > MAX_NAMES,
                "password": password is not None,
            })
        outputs: dict[str, Any] = {
            "dest_dir": str(dest_dir),
            "dest": str(dest_dir),
            "unzipped": unzipped,
            "files": len(all_names),
            "bytes": total,
            "names": all_names[:MAX_NAMES],
            "names_truncated": len(all_names) > MAX_NAMES,
        }
        if missing:
            outputs["missing"] = missing[:MAX_NAMES]
        return StepResult(STEP_SUCCESS, outputs)


def _unzip_error(shown: str, exc: ConnectorError) -> StepError:
    if exc.code == "archive.unsafe_member":
        return StepError(f"archive '{shown}' refused, nothing extracted: {exc.message}", code=exc.code)
    return StepError(f"unzip: {exc.message}", code=exc.code, hint=exc.hint)


def _zip_read_error(shown: str, exc: BaseException, password: str | None) -> StepError:
    """zipfile raises RuntimeError for a missing or wrong password and NotImplementedError for
    methods it cannot read (AES encryption, some compressions)."""
    if isinstance(exc, NotImplementedError):
        return StepError(
            f"archive '{shown}' uses a compression or encryption method Python's zipfile cannot read "
            "(AES-encrypted zip files are not supported; ZipCrypto is)",
            code="archive.unsupported",
            hint="extract it with a tool in an external.process step (e.g. 7z x)",
        )
    text = str(exc)
    if "password required" in text or password is None:
        return StepError(f"archive '{shown}' is encrypted: set password", code="archive.password")
    return StepError(f"archive '{shown}': the password is wrong", code="archive.password")


def _extract_to_temp(archiver: Any, archive: Path, shown: str, where: Path, *, password: str | None,
                     members: Sequence[str] | None) -> tuple[Path, list[str], int]:
    """Check every member (with the archiver's limits), then extract the chosen ones into a
    fresh temporary directory in ``where``. Returns (temp dir, member paths, bytes)."""
    checker = archiver if callable(getattr(archiver, "check", None)) else ZipArchiver("unzip", {}, {})
    try:
        zf = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as exc:
        raise StepError(f"cannot open archive '{shown}': {type(exc).__name__}: {exc}", code="archive.read") from exc
    with zf:
        if password is not None:
            zf.setpassword(password.encode("utf-8"))
        try:
            checked = checker.check(zf)
        except ConnectorError as exc:
            raise _unzip_error(shown, exc) from exc
        if members is not None:
            wanted = {str(m) for m in members}
            picked = [(i, p) for i, p in checked if i.filename in wanted or i.filename.rstrip("/") in wanted]
            absent = sorted(wanted - {i.filename for i, _ in picked} - {i.filename.rstrip("/") for i, _ in picked})
            if absent:
                raise StepError(f"archive '{shown}' has no member {', '.join(repr(a) for a in absent[:10])}",
                                code="archive.no_member")
            checked = picked
        where.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".unzip-", suffix=".tmp", dir=where))
        try:
            names, size = _extract(zf, checked, tmp, shown, password)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return tmp, names, size


def _extract(zf: zipfile.ZipFile, members: Sequence[tuple[zipfile.ZipInfo, tuple[str, ...]]], tmp: Path,
             shown: str, password: str | None) -> tuple[list[str], int]:
    names: list[str] = []
    size = 0
    for info, parts in members:
        target = tmp.joinpath(*parts)  # parts were checked by the archiver (member_parts)
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
            raise StepError(f"archive '{shown}' refused: member {info.filename!r} collides with another member",
                            code=UnsafeArchiveError.default_code) from exc
        except (RuntimeError, NotImplementedError) as exc:
            raise _zip_read_error(shown, exc, password) from exc
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise StepError(f"cannot extract {info.filename!r} from '{shown}': {type(exc).__name__}: {exc}",
                            code="archive.read") from exc
        if (info.external_attr >> 16) & 0o100:
            target.chmod(target.stat().st_mode | 0o100)
        names.append("/".join(parts))
        size += info.file_size
    return names, size


def _check_no_links(base: Path, path: Path) -> None:
    """Refuse a symlink at ``path`` or between ``base`` and it (writing through one could leave
    the workspace)."""
    try:
        rel = path.relative_to(base)
    except ValueError:
        raise StepError(f"'{path}' is outside {base}", code="workspace.escape") from None
    cur = base
    for part in rel.parts:
        cur = cur / part
        if cur.is_symlink():
            raise StepError(f"'{cur.relative_to(base)}' is a symlink; unzip does not write through links",
                            code="workspace.symlink")


def _merge(tmp: Path, out_dir: Path, dest_dir: Path, *, overwrite: bool) -> list[str]:
    """Move the extracted tree ``tmp`` into ``out_dir`` file by file (each an atomic rename).
    Existing files are replaced, or kept with ``overwrite: false``. Returns the written paths."""
    _check_no_links(dest_dir, out_dir)
    written: list[str] = []
    for root, dirs, files in os.walk(tmp):
        dirs.sort()
        rel_root = Path(root).relative_to(tmp)
        for d in dirs:
            dst = out_dir / rel_root / d
            _check_no_links(dest_dir, dst)
            if dst.exists() and not dst.is_dir():
                raise StepError(f"'{dst.relative_to(dest_dir)}' exists in dest_dir and is not a directory",
                                code="archive.dest_exists")
            dst.mkdir(parents=True, exist_ok=True)
        for f in sorted(files):
            dst = out_dir / rel_root / f
            _check_no_links(dest_dir, dst.parent)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists() or dst.is_symlink():
                if dst.is_dir() and not dst.is_symlink():
                    raise StepError(f"'{dst.relative_to(dest_dir)}' is a directory in dest_dir; the archive has a file there",
                                    code="archive.dest_exists")
                if not overwrite:
                    continue
            os.replace(Path(root) / f, dst)  # a symlink at dst is replaced itself, never followed
            written.append((rel_root / f).as_posix())
    return written
