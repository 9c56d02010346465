"""The shared resolve stage: flow file, plugins, env, params, profiles, secrets and resources →
what a run needs before anything executes. ``run``, ``resume``, ``explain`` and ``doctor`` all
go through these functions, so they agree on every value and every error.

Order, and what each step may fail with (nothing has run yet, so every failure is exit 2):

1. plugins (:func:`load_plugins`): built-ins, entry points, plugin folders; a plugin that fails
   to import is a warning unless the flow needs one of its step types;
2. the flow (:func:`check_flow`): YAML, schema, semantic and registry checks, every issue at
   once; with the validation cache a known-good file is neither parsed nor schema-checked again;
3. env (:func:`flow_env`): the process environment over the flow's and the command's env files;
4. params, secrets (:func:`prepare`), then resources (:meth:`Prepared.resources`), which need
   the run id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aetherflow import template
from aetherflow.errors import Issue, ResolutionError, SpecError, UsageError
from aetherflow.model import FlowSpec, freeze
from aetherflow.settings import Settings, render_setting, switched_off

if TYPE_CHECKING:
    from aetherflow.plugins import LoadedPlugins
    from aetherflow.resolve import Redactor, ResolvedResource, Secret
    from aetherflow.spec import LoadedFlow
    from aetherflow.spec.cache import ValidationCache

__all__ = [
    "Prepared",
    "check_flow",
    "flow_env",
    "load_checked",
    "load_plugins",
    "load_profiles",
    "prepare",
    "refuse_missing_env",
    "secret_command_runner",
    "validation_cache",
    "workspace_root",
]

log = logging.getLogger("aetherflow")


# ---------------------------------------------------------------------------------------------
# plugins and the flow file


def load_plugins(settings: Settings, extra_paths: Sequence[str] = ()) -> LoadedPlugins:
    """Built-ins, entry points and plugin folders (the settings' and ``extra_paths``, a resumed
    run's recorded ones)."""
    from aetherflow import plugins

    cache_dir = None if switched_off(settings, "AETHERFLOW_PLUGIN_CACHE") else settings.home / "cache"
    return plugins.load(plugin_paths=(*settings.plugin_paths, *extra_paths), cache_dir=cache_dir)


def warn_plugin_errors(loaded: LoadedPlugins) -> None:
    """A plugin that failed to import is a warning (stderr even without -v), not a failure."""
    for err in loaded.errors:
        log.warning("plugin failed to import: %s", err)
    for text in loaded.warnings:  # what a plugin folder holds and was not loaded
        log.warning("%s", text)


def validation_cache(settings: Settings) -> ValidationCache | None:
    """The cache of known schema-valid flows (``<home>/cache/valid``), or ``None`` when
    ``AETHERFLOW_VALIDATION_CACHE=0``."""
    if switched_off(settings, "AETHERFLOW_VALIDATION_CACHE"):
        return None
    from aetherflow.spec.cache import ValidationCache

    return ValidationCache(settings.home / "cache" / "valid")


def check_flow(
    path: str, loaded: LoadedPlugins, *, raw: bytes | None = None, cache: ValidationCache | None = None,
    strict: bool = False,
) -> tuple[LoadedFlow, list[Issue]]:
    """Load and fully validate a flow: the flow and every semantic and registry issue; raises
    ``SpecError`` for YAML and schema problems (nothing to check further).

    With a ``cache``, a flow whose exact bytes, with the same flow schema and step input
    schemas, were fully valid before is not parsed again (the cache holds the parse) and skips
    the JSON Schema checks; everything else is checked as always. A flow with no issue is
    remembered, with its parse. ``strict`` adds the checks of ``validate --strict``."""
    from aetherflow.engine.preflight import Preflight, inputs_fingerprint
    from aetherflow.spec import load_flow, read_flow_bytes, sort_issues

    key: str | None = None
    parsed = None
    if cache is not None:
        fingerprint = inputs_fingerprint(loaded.registry)
        if fingerprint is not None:
            if raw is None:
                raw = read_flow_bytes(path)  # the bytes the key names are the bytes checked
            key = cache.key(raw, fingerprint)
            parsed = cache.lookup(key) if key is not None else None
    known = parsed is not None
    semantic: list[Issue] = []
    try:
        flow_file = load_flow(path, raw=raw, parsed=parsed)
    except SpecError as exc:
        partial = getattr(exc, "partial", None)
        if partial is None:
            raise
        flow_file, semantic = partial, list(exc.issues)
    pf = Preflight(loaded.registry, flow_file.positions, path, loaded.errors, check_inputs=not known, strict=strict)
    issues = sort_issues(semantic + pf.check(flow_file.flow, flow_file.data))
    if key is not None and cache is not None and not known and not issues:
        cache.remember(key, flow_file.data, flow_file.positions)
    return flow_file, issues


def load_checked(
    path: str, loaded: LoadedPlugins, *, raw: bytes | None = None, cache: ValidationCache | None = None
) -> LoadedFlow:
    """:func:`check_flow`, with any issue raised as one ``SpecError`` (exit 2)."""
    flow_file, issues = check_flow(path, loaded, raw=raw, cache=cache)
    if issues:
        raise SpecError(issues, file=path)
    return flow_file


# ---------------------------------------------------------------------------------------------
# env, profiles, workspace, secrets


def flow_env(settings: Settings, flow: FlowSpec, env_files: Sequence[str] = ()) -> Mapping[str, str]:
    """The run's env snapshot: the flow's env files (relative to the flow file), then the
    command's ``--env-file``\\s, under the process environment (resolve.build_env)."""
    from aetherflow import resolve

    base = Path(flow.base_dir)
    flow_files = [p if Path(p).is_absolute() else base / p for p in flow.env_files]
    return resolve.build_env(settings.env, [Path(p) for p in flow_files], [Path(p) for p in env_files])


def load_profiles(path: str, raw: bytes | None = None) -> Mapping[str, Mapping[str, Any]]:
    """A profiles file (or, with ``raw``, profiles given as text, such as the JSON of
    ``AETHERFLOW_PROFILES_JSON``: JSON is YAML), through the strict YAML loader and the profiles
    schema."""
    from aetherflow.spec.loader import load_yaml
    from aetherflow.spec.schema import SchemaValidator, load_schema

    try:
        raw = Path(path).read_bytes() if raw is None else raw
    except OSError as exc:
        raise ResolutionError(f"profiles file {path}: {exc.strerror}", code="resolve.profiles_unreadable") from exc
    data, positions = load_yaml(raw, path)
    issues = SchemaValidator(load_schema("profiles"), check=False).validate(data, file=path, positions=positions)
    if issues:
        raise SpecError(issues, file=path)
    profiles: Mapping[str, Mapping[str, Any]] = freeze(data or {})
    return profiles


def profiles_for(
    settings: Settings, flow: FlowSpec, *, profiles_file: str | None, profile: str | None
) -> Mapping[str, Mapping[str, Any]]:
    """The profiles a run uses: ``--profiles``, else aetherflow-core's ``AETHERFLOW_PROFILES_JSON``
    (the profiles as JSON text), else ``AETHERFLOW_PROFILES_FILE``, else the flow's
    ``profiles_file`` (relative to the flow file). Both variables set is a usage error."""
    inline = settings.env.get("AETHERFLOW_PROFILES_JSON", "").strip()
    if inline and not profiles_file:
        if settings.env.get("AETHERFLOW_PROFILES_FILE"):
            raise UsageError("set AETHERFLOW_PROFILES_JSON or AETHERFLOW_PROFILES_FILE, not both", code="usage.profiles_twice")
        return load_profiles("$AETHERFLOW_PROFILES_JSON", raw=inline.encode("utf-8"))
    path = profiles_file or settings.env.get("AETHERFLOW_PROFILES_FILE") or flow.profiles_file
    if not path:
        if profile:
            raise ResolutionError(
                f"--profile {profile}: no profiles file (flow.profiles_file, --profiles or AETHERFLOW_PROFILES_FILE)",
                code="resolve.no_profiles_file",
            )
        return {}
    p = Path(path)
    if not p.is_absolute() and not profiles_file:
        p = Path(flow.base_dir) / p
    return load_profiles(str(p))


def workspace_root(settings: Settings, flow: FlowSpec, env: Mapping[str, str]) -> Path:
    """``flow.workspace.root`` (templated with env; relative to the flow file), else ``<home>/work``."""
    if flow.workspace.root:
        rendered = render_setting(flow, "workspace.root", flow.workspace.root, template.base_scope(env=env, flow_id=flow.id))
        root = Path(str(rendered)).expanduser()
        return root if root.is_absolute() else Path(flow.base_dir) / root
    return settings.home / "work"


def refuse_missing_env(source: LoadedFlow, env: Mapping[str, str], jobs: Sequence[str] | None,
                       given: Mapping[str, Any]) -> None:
    """Exit 2 before a run starts when a template of its ``jobs``, resources or defaults of
    params not ``given`` reads an env variable that is not set and has no default
    (``template.missing_env``), every such place at once. ``flow.workspace`` and ``flow.state``
    are refused where they are rendered, naming the setting (:func:`render_setting`)."""
    from aetherflow.spec.references import missing_env_issues

    issues = missing_env_issues(source.data, source.positions, source.flow.file, env, jobs=jobs, skip_params=given,
                                settings=False)
    if issues:
        raise SpecError(issues, file=source.flow.file)


def secret_command_runner(env: Mapping[str, str]) -> Callable[[Sequence[str]], str]:
    """How ``{command: [...]}`` secrets are read: the command's stdout (60 s at most)."""

    def run(argv: Sequence[str]) -> str:
        from aetherflow.process import run_process

        try:
            res = run_process(list(argv), cwd=None, env=env, timeout=60.0, stdout_mode="capture", stderr_mode="capture")
        except OSError as exc:
            raise ResolutionError(f"secret command {argv[0]!r} could not start: {exc.strerror}", code="secret.command") from exc
        if res.returncode != 0:
            raise ResolutionError(f"secret command {argv[0]!r} exited {res.returncode}", code="secret.command")
        return str(res.stdout)

    return run


# ---------------------------------------------------------------------------------------------
# the prepared run


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """A validated flow with its env, params and secrets resolved: what a run needs besides the
    store. ``redactor`` masks every secret value (and its encodings)."""

    flow: FlowSpec
    plugins: LoadedPlugins
    env: Mapping[str, str]
    params: Mapping[str, Any]
    secrets: Mapping[str, Secret]
    redactor: Redactor
    profiles: Mapping[str, Mapping[str, Any]]
    #: the ``run`` template root (:func:`aetherflow.template.run_scope`) of the run being prepared:
    #: parameter defaults, resources and the flow's notifiers all read this one
    run: Mapping[str, Any]
    profile: str | None = None

    @property
    def secret_values(self) -> dict[str, str]:
        """The revealed values, for ``{{ secrets.NAME }}``."""
        return {k: v.reveal() for k, v in self.secrets.items()}

    def resources(self) -> Mapping[str, ResolvedResource]:
        """Every resource with its profile merged and templates rendered for the run (its
        ``run`` root)."""
        from aetherflow import resolve

        scope = template.base_scope(env=self.env, flow_id=self.flow.id, params=self.params, secrets=self.secret_values,
                                    run=self.run)
        return resolve.resolve_resources(self.flow, self.profiles, scope, self.redactor, profile_override=self.profile,
                                         decoders=self.plugins.registry.decoders)


def prepare(
    settings: Settings,
    flow: FlowSpec,
    loaded: LoadedPlugins,
    *,
    params: Mapping[str, str] | None = None,
    stored_params: Mapping[str, Any] | None = None,
    env_files: Sequence[str] = (),
    profile: str | None = None,
    profiles_file: str | None = None,
    run: Mapping[str, Any],
    source: LoadedFlow | None = None,
    jobs: Sequence[str] | None = None,
) -> Prepared:
    """Resolve env, params (``--param`` values, or a resumed run's ``stored_params``), profiles
    and secrets for ``flow``. ``run``: the run's ``run`` root (:func:`aetherflow.template.run_scope`),
    which parameter defaults, resources and the flow's notifiers read. With the ``source`` flow file, an env variable a
    template of ``jobs`` (or a resource, a setting, a default of a param not given) reads
    without a default must be set (:func:`refuse_missing_env`)."""
    from aetherflow import resolve

    redactor = resolve.Redactor()
    env = flow_env(settings, flow, env_files)
    if source is not None:
        refuse_missing_env(source, env, jobs, given=params or {})
    resolved_params = resolve.resolve_params(flow, params or {}, env, stored=stored_params, run=run)
    secrets = resolve.resolve_secrets(flow, env, redactor, secret_command_runner(env))
    profiles = profiles_for(settings, flow, profiles_file=profiles_file, profile=profile)
    return Prepared(flow=flow, plugins=loaded, env=env, params=resolved_params, secrets=secrets, redactor=redactor,
                    profiles=profiles, run=run, profile=profile)
