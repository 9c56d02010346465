"""`aetherflow explain` (where every resolved resource value comes from) and `aetherflow doctor`
(what a flow needs that is missing). Both run nothing and print no secret."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aetherflow import template
from aetherflow.errors import AetherflowError
from aetherflow.model import thaw
from aetherflow.settings import Settings


def explain(settings: Settings, flow_path: str, *, params: Mapping[str, str], env_files: Sequence[str] = (),
            profile: str | None = None, profiles_file: str | None = None) -> dict[str, Any]:
    """Where every resolved resource value comes from; secrets shown as ``***``."""
    from aetherflow.prepare import load_checked, load_plugins, prepare

    loaded_plugins = load_plugins(settings)
    flow = load_checked(flow_path, loaded_plugins).flow
    now = settings.clock()
    prepared = prepare(settings, flow, loaded_plugins, params=params, env_files=env_files, profile=profile,
                       profiles_file=profiles_file, run=template.run_scope("<run_id>", now, 1))
    redactor = prepared.redactor
    out_res = []
    for name, r in prepared.resources().items():
        values: dict[str, Any] = {}
        for part in ("config", "options"):
            for key, value in _leaves(thaw(getattr(r, part)), part):
                origin = r.origins.get(key, "flow resource")
                shown = "***" if key in r.secret_fields else redactor.mask(str(value))
                values[key] = {"value": shown, "origin": origin}
        out_res.append({"name": name, "kind": r.kind, "driver": r.driver, "values": values})
    return {
        "flow_id": flow.id,
        "params": {k: redactor.mask(str(v)) if isinstance(v, str) else v for k, v in thaw(prepared.params).items()},
        "secrets": [{"name": n, "source": ", ".join(f"{k}={v}" for k, v in s.source.items() if k != "command") or "command"}
                    for n, s in flow.secrets.items()],
        "resources": out_res,
    }


def _leaves(value: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out: list[tuple[str, Any]] = []
        for k, v in value.items():
            out.extend(_leaves(v, f"{prefix}.{k}"))
        return out
    return [(prefix, value)]


def _fs_type(path: Path) -> str | None:
    """Filesystem type of ``path`` from /proc/mounts (Linux), or None."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    best: tuple[str, str | None] = ("", None)
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt, fstype = parts[1], parts[2]
        if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
            best = (mnt, fstype)
    return best[1]


NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs", "glusterfs", "ceph"}


def doctor(settings: Settings, flow_path: str, env_files: Sequence[str], profile: str | None = None,
           profiles_file: str | None = None) -> list[dict[str, Any]]:
    from aetherflow import resolve
    from aetherflow.errors import SpecError
    from aetherflow.prepare import check_flow, flow_env, load_plugins
    from aetherflow.settings import state_location
    from aetherflow.state.backends import is_url

    checks: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "ok": ok, "detail": detail})

    from aetherflow.compat import ignored_env_warnings

    for text in ignored_env_warnings(settings.env):
        add("aetherflow-core setting", False, text)
    loaded_plugins = load_plugins(settings)
    for err in loaded_plugins.errors:
        add("plugin", False, f"failed to import: {err}")
    for text in loaded_plugins.warnings:
        add("plugin folder", False, text)
    try:
        loaded, issues = check_flow(flow_path, loaded_plugins)
    except SpecError as exc:
        add("flow", False, f"{len(exc.issues)} problem(s); run `aetherflow validate {flow_path}`")
        return checks
    flow = loaded.flow
    add("flow", not issues, "valid" if not issues else f"{len(issues)} problem(s); run `aetherflow validate {flow_path}`")
    try:
        env = flow_env(settings, flow, env_files)
        add("env files", True, ", ".join(flow.env_files) or "none declared")
    except AetherflowError as exc:
        add("env files", False, exc.message)
        env = dict(settings.env)
    from aetherflow.spec.references import missing_env

    missing = {var for var, _ in missing_env(loaded.data, loaded.positions, flow_path, env)}
    for tok in _profile_tokens(settings, flow, profile, profiles_file, add):  # the flow's resources' profiles
        if tok.path[0] == "env" and len(tok.path) > 1 and tok.default is None and tok.path[1] not in env:
            missing.add(tok.path[1])
    for spec in flow.secrets.values():
        if "env" in spec.source and str(spec.source["env"]) not in env:
            missing.add(str(spec.source["env"]))
    add("env vars", not missing, "all set" if not missing else "missing: " + ", ".join(sorted(missing)))
    redactor = resolve.Redactor()
    for name, spec in flow.secrets.items():
        if "env" in spec.source:
            continue
        try:
            resolve.resolve_secret(spec, env, flow.base_dir, None if "command" in spec.source else None)
            add(f"secret {name}", True, "readable")
        except AetherflowError as exc:
            if "command" in spec.source:
                add(f"secret {name}", True, "command source (not run by doctor)")
            else:
                add(f"secret {name}", False, redactor.mask(exc.message))
    location = state_location(settings, flow)
    if is_url(location):
        from aetherflow.state.backends import probe_store

        try:
            add("state store", True, probe_store(location))
        except AetherflowError as exc:
            add("state store", False, exc.message + (f" ({exc.hint})" if exc.hint else ""))
        return checks
    d = Path(location).parent
    probe = d
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    writable = os.access(probe, os.W_OK)
    add("state directory", writable, f"{d} {'writable' if writable else 'not writable'}")
    fstype = _fs_type(probe)
    add("state filesystem", fstype not in NETWORK_FS,
        f"{fstype or 'unknown'}" + (" is a network filesystem: SQLite locking is unsafe there" if fstype in NETWORK_FS else " (local)"))
    return checks


def _profile_tokens(settings: Settings, flow: Any, profile: str | None, profiles_file: str | None,
                    add: Any) -> list[Any]:
    """The template tokens of the profiles the flow's resources use (as ``run`` picks them), so
    an environment variable only a profile needs is reported too."""
    from aetherflow.prepare import profiles_for

    used = {profile or r.profile for r in flow.resources.values()} - {None}
    if not used:
        return []
    try:
        profiles = profiles_for(settings, flow, profiles_file=profiles_file, profile=profile)
    except AetherflowError as exc:
        add("profiles", False, exc.message)
        return []
    unknown = sorted(used - set(profiles))
    add("profiles", not unknown, f"profile(s) not found: {', '.join(unknown)}" if unknown else ", ".join(sorted(used)))
    out: list[Any] = []
    for name in sorted(used - set(unknown)):
        for part in ("config", "options"):
            try:
                out.extend(template.tokens(thaw(profiles[name].get(part) or {})))
            except AetherflowError:
                continue
    return out

