"""Resolution: env snapshot, params, secrets, profiles → resources. Runs once per run.

* **Env snapshot** (``build_env``): the process environment the CLI passes in, under the
  ``flow.env_files`` and ``--env-file`` files read with python-dotenv *without* interpolation.
  Precedence, lowest first: ``flow.env_files`` (in order), ``--env-file`` (in order), the real
  process environment (an operator's explicit ``VAR=x aetherflow run`` always wins).
  ``os.environ`` is never read or changed here.
* **Params** (``resolve_params``): ``--param K=V`` strings coerced to the declared type;
  defaults rendered with the ``env`` root. A bad value is a ``ResolutionError`` (exit 2).
* **Secrets** (``resolve_secrets``): sources env, file, dotenv, command, optional base64
  decoding; values are ``Secret`` objects and every value is registered with the ``Redactor``.
* **Resources** (``resolve_resources``): the named profile is the base, the resource deep-merged
  over it, then config/options rendered, then ``decode`` fields base64-decoded and treated as
  secrets. Each leaf remembers where it came from, for ``aetherflow explain``.
"""

from __future__ import annotations

import binascii
import json
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aetherflow import template
from aetherflow.errors import Location, ResolutionError, TemplateError
from aetherflow.model import FlowSpec, ParamSpec, ResourceSpec, SecretSpec, empty_map, freeze, thaw

MASK = "***"
MIN_SECRET_LEN = 3
#: lines of a multi-line secret at least this long are masked on their own
MIN_LINE_LEN = 8


class Secret:
    """A secret value. ``repr``/``str`` show ``***``; ``reveal()`` is explicit."""

    __slots__ = ("name", "_value")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__


class Redactor:
    """Knows every secret value and its base64, URL-encoded and JSON-escaped forms, and
    replaces them with ``***`` in any text. With no secrets, ``mask`` is the identity."""

    def __init__(self) -> None:
        self._needles: list[str] = []

    def add(self, value: str) -> None:
        if not isinstance(value, str) or len(value) < MIN_SECRET_LEN:
            return
        lines = value.splitlines()
        if len(lines) > 1:  # a PEM key or similar: any excerpt (a tail of stderr) must be masked too
            for line in lines:
                if len(line.strip()) >= MIN_LINE_LEN:
                    self.add(line.strip())
        forms = {value}
        raw = value.encode("utf-8")
        import base64  # only when a run has secrets

        for enc in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            s = enc.decode("ascii")
            forms.add(s)
            forms.add(s.rstrip("="))
        forms.add(urllib.parse.quote(value, safe=""))
        forms.add(urllib.parse.quote_plus(value))
        forms.add(urllib.parse.quote(value))
        forms.add(json.dumps(value)[1:-1])
        forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
        for f in forms:
            if len(f) >= MIN_SECRET_LEN and f not in self._needles:
                self._needles.append(f)
        self._needles.sort(key=len, reverse=True)

    @property
    def active(self) -> bool:
        return bool(self._needles)

    def mask(self, text: str) -> str:
        if not self._needles or not text:
            return text
        for n in self._needles:
            if n in text:
                text = text.replace(n, MASK)
        return text

    def mask_value(self, value: Any) -> tuple[Any, bool]:
        """Mask strings inside a JSON-like value. Returns (masked, changed)."""
        if not self._needles:
            return value, False
        if isinstance(value, str):
            m = self.mask(value)
            return m, m != value
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            changed = False
            for k, v in value.items():
                out[k], c = self.mask_value(v)
                changed = changed or c
            return out, changed
        if isinstance(value, (list, tuple)):
            items = [self.mask_value(v) for v in value]
            return [i[0] for i in items], any(i[1] for i in items)
        return value, False

    def mask_outputs(self, outputs: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """Mask every output value; return the masked outputs and the keys that carried a secret."""
        if not self._needles:
            return dict(outputs), ()
        out: dict[str, Any] = {}
        keys: list[str] = []
        for k, v in outputs.items():
            out[k], changed = self.mask_value(v)
            if changed:
                keys.append(k)
        return out, tuple(keys)


# ---------------------------------------------------------------------------------------------
# env snapshot


def read_env_file(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    if not path.is_file():
        raise ResolutionError(f"env file {path} does not exist", code="resolve.env_file_missing")
    try:
        values = dotenv_values(path, interpolate=False)
    except (OSError, UnicodeDecodeError) as exc:
        raise ResolutionError(f"cannot read env file {path}: {exc}", code="resolve.env_file_unreadable") from exc
    return {k: (v if v is not None else "") for k, v in values.items()}


def build_env(
    process_env: Mapping[str, str], flow_env_files: Sequence[Path] = (), cli_env_files: Sequence[Path] = ()
) -> Mapping[str, str]:
    """The immutable env snapshot (see module docstring for precedence)."""
    merged: dict[str, str] = {}
    for p in (*flow_env_files, *cli_env_files):
        merged.update(read_env_file(p))
    merged.update(process_env)
    return MappingProxyType(merged)


# ---------------------------------------------------------------------------------------------
# params

_TRUE = {"true", "1", "yes", "on", "y"}
_FALSE = {"false", "0", "no", "off", "n"}


def coerce_param(spec: ParamSpec, raw: Any, origin: str) -> Any:
    t = spec.type
    where = f"param '{spec.name}' ({origin})"
    try:
        if t == "string":
            if isinstance(raw, (dict, list)):
                raise ValueError("expected a string")
            value: Any = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
        elif t == "integer":
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            value = raw if isinstance(raw, int) else int(str(raw).strip())
        elif t == "number":
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            value = raw if isinstance(raw, (int, float)) else float(str(raw).strip())
        elif t == "boolean":
            if isinstance(raw, bool):
                value = raw
            elif str(raw).strip().lower() in _TRUE:
                value = True
            elif str(raw).strip().lower() in _FALSE:
                value = False
            else:
                raise ValueError("expected true or false")
        elif t == "list":
            if isinstance(raw, (list, tuple)):
                value = list(raw)
            else:
                s = str(raw).strip()
                value = json.loads(s) if s.startswith("[") else [x.strip() for x in s.split(",") if x.strip()]
                if not isinstance(value, list):
                    raise ValueError("expected a list")
        elif t == "object":
            value = dict(raw) if isinstance(raw, Mapping) else json.loads(str(raw))
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
        else:  # pragma: no cover - schema forbids
            raise ValueError(f"unknown type {t}")
    except (ValueError, TypeError) as exc:
        raise ResolutionError(
            f"{where}: {raw!r} is not a valid {t}: {exc}", code="param.invalid", location=spec.location
        ) from exc
    if spec.choices is not None and value not in spec.choices:
        raise ResolutionError(
            f"{where}: {value!r} is not one of {list(spec.choices)}", code="param.invalid", location=spec.location
        )
    return value


def parse_param_args(args: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for a in args:
        if "=" not in a:
            raise ResolutionError(f"--param {a!r}: expected KEY=VALUE", code="usage.param")
        k, v = a.split("=", 1)
        k = k.strip()
        if not k:
            raise ResolutionError(f"--param {a!r}: empty name", code="usage.param")
        out[k] = v
    return out


def resolve_params(
    flow: FlowSpec,
    given: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    stored: Mapping[str, Any] | None = None,
    run: Mapping[str, Any] | None = None,
) -> Mapping[str, Any]:
    """Typed params: stored (resume) < defaults < given. Unknown names are an error. Defaults
    are rendered with the ``env`` root and, when given, the ``run`` root
    (:func:`aetherflow.template.run_scope`: ``{{ run.date }}`` is the run's start date)."""
    unknown = sorted(set(given) - set(flow.params))
    if unknown:
        known = ", ".join(sorted(flow.params)) or "none"
        raise ResolutionError(
            f"unknown param(s) {', '.join(unknown)}; this flow declares: {known}", code="param.unknown"
        )
    out: dict[str, Any] = {}
    for name, spec in flow.params.items():
        if name in given:
            out[name] = coerce_param(spec, given[name], "--param")
        elif stored is not None and name in stored:
            out[name] = stored[name]
        elif spec.has_default:
            try:
                default = template.render(spec.default, {"env": env} if run is None else {"env": env, "run": run})
            except TemplateError as exc:
                raise ResolutionError(
                    f"param '{name}' default: {exc}", code="param.default", location=spec.location, hint=exc.hint
                ) from exc
            out[name] = coerce_param(spec, default, "default")
        elif spec.required:
            raise ResolutionError(
                f"param '{name}' is required: pass --param {name}=VALUE", code="param.missing", location=spec.location
            )
        else:
            out[name] = None
    return freeze(out)


# ---------------------------------------------------------------------------------------------
# secrets


def _decode_b64(value: str, what: str, location: Location | None) -> str:
    import base64

    try:
        return base64.b64decode("".join(value.split()), validate=True).decode("utf-8")  # wrapped lines ok
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ResolutionError(f"{what}: value is not valid base64 text", code="secret.decode", location=location) from exc


def apply_decoder(
    name: str, value: str, what: str, location: Location | None, decoders: Mapping[str, Callable[[str], str]]
) -> str:
    """Decode a resource field: ``base64`` (built in, also spelled ``true``) or a decoder a
    plugin registered with ``register_decoder``. A decoder's error never quotes the value."""
    if name == "base64":
        return _decode_b64(value, what, location)
    fn = decoders.get(name)
    if fn is None:
        known = ", ".join(["base64", *sorted(decoders)])
        raise ResolutionError(f"{what}: unknown decoder '{name}' (known: {known})", code="resource.unknown_decoder",
                              location=location)
    try:
        out = fn(value)
    except Exception as exc:  # noqa: BLE001 - a plugin decoder's failure is a resolution error
        raise ResolutionError(f"{what}: decoder '{name}' failed ({type(exc).__name__})", code="resource.decode",
                              location=location) from None
    if not isinstance(out, str):
        raise ResolutionError(f"{what}: decoder '{name}' returned {type(out).__name__}, not text", code="resource.decode",
                              location=location)
    return out


def _relative(base_dir: str, p: str) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def resolve_secret(
    spec: SecretSpec, env: Mapping[str, str], base_dir: str, run_command: Callable[[Sequence[str]], str] | None
) -> Secret:
    src = spec.source
    where = f"secret '{spec.name}'"
    loc = spec.location
    if "env" in src:
        var = str(src["env"])
        if var not in env:
            raise ResolutionError(f"{where}: environment variable {var} is not set", code="secret.missing", location=loc)
        value = env[var]
    elif "file" in src:
        p = _relative(base_dir, str(src["file"]))
        try:
            value = p.read_bytes().decode("utf-8")  # bytes as they are: no newline translation
        except (OSError, UnicodeDecodeError) as exc:
            raise ResolutionError(f"{where}: cannot read {p}: {exc.__class__.__name__}", code="secret.missing", location=loc) from exc
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
    elif "dotenv" in src:
        p = _relative(base_dir, str(src["dotenv"]))
        values = read_env_file(p)
        key = str(src.get("key", spec.name))
        if key not in values:
            raise ResolutionError(f"{where}: key {key} not found in {p}", code="secret.missing", location=loc)
        value = values[key]
    elif "command" in src:
        if run_command is None:
            raise ResolutionError(f"{where}: command secrets are not available here", code="secret.missing", location=loc)
        cmd = src["command"]
        argv = [str(a) for a in cmd] if isinstance(cmd, (list, tuple)) else ["/bin/sh", "-c", str(cmd)]
        value = run_command(argv)
        if value.endswith("\n"):
            value = value[:-1]
    else:  # pragma: no cover - schema forbids
        raise ResolutionError(f"{where}: no source", code="secret.invalid", location=loc)
    if src.get("decode") == "base64":
        value = _decode_b64(value, where, loc)
    return Secret(spec.name, value)


def resolve_secrets(
    flow: FlowSpec,
    env: Mapping[str, str],
    redactor: Redactor,
    run_command: Callable[[Sequence[str]], str] | None = None,
) -> Mapping[str, Secret]:
    out: dict[str, Secret] = {}
    for name, spec in flow.secrets.items():
        s = resolve_secret(spec, env, flow.base_dir, run_command)
        redactor.add(s.reveal())
        out[name] = s
    return MappingProxyType(out)


# ---------------------------------------------------------------------------------------------
# profiles and resources


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedResource:
    name: str
    kind: str
    driver: str
    config: Mapping[str, Any]
    options: Mapping[str, Any]
    origins: Mapping[str, str] = field(default_factory=empty_map)  # "config.password" -> "profile prod"
    secret_fields: tuple[str, ...] = ()
    location: Location = field(default_factory=Location)


def _register_credentials(config: Mapping[str, Any], redactor: Redactor) -> None:
    """A secret password next to a user name also hides ``user:password`` (and so the base64 of
    an HTTP Basic ``Authorization`` header a connector builds from them)."""
    password = config.get("password")
    user = config.get("username", config.get("user"))
    if isinstance(password, str) and isinstance(user, str) and password and redactor.mask(password) != password:
        redactor.add(f"{user}:{password}")


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(thaw(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = thaw(v)
    return out


def _origins(value: Any, prefix: str, origin: str, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _origins(v, f"{prefix}.{k}", origin, out)
    else:
        out[prefix] = origin


def _template_origin(value: Any) -> str | None:
    if not isinstance(value, str) or "{{" not in value:
        return None
    roots = []
    for tok in template.tokens(value):
        roots.append(".".join(tok.path))
    return ", ".join(roots) if roots else None


def resolve_resources(
    flow: FlowSpec,
    profiles: Mapping[str, Mapping[str, Any]],
    scope: Mapping[str, Any],
    redactor: Redactor,
    *,
    profile_override: str | None = None,
    profiles_origin: str = "profiles file",
    decoders: Mapping[str, Callable[[str], str]] | None = None,
) -> Mapping[str, ResolvedResource]:
    out: dict[str, ResolvedResource] = {}
    for name, res in flow.resources.items():
        out[name] = resolve_resource(res, profiles, scope, redactor, profile_override, profiles_origin, decoders or {})
    return MappingProxyType(out)


def _decode_marked(marks: Mapping[str, Any], target: dict[str, Any], prefix: str, where: str, location: Location | None,
                   decoders: Mapping[str, Callable[[str], str]], redactor: Redactor, secret_fields: list[str],
                   origins: dict[str, str]) -> None:
    """Decode the fields ``marks`` names in ``target`` (a rendered config or options); a mapping
    of marks reaches into a nested mapping (``headers: {Authorization: true}``, as
    aetherflow-core's profiles write it)."""
    for fname, flag in marks.items():
        if not flag or fname not in target:
            continue
        key = f"{prefix}.{fname}"
        raw = target[fname]
        if isinstance(flag, Mapping):
            if isinstance(raw, dict):
                _decode_marked(flag, raw, key, where, location, decoders, redactor, secret_fields, origins)
            continue
        if not isinstance(raw, str):
            continue
        name = "base64" if flag is True else str(flag)
        target[fname] = apply_decoder(name, raw, f"{where} {key}", location, decoders)
        redactor.add(target[fname])
        secret_fields.append(key)
        origins[key] = origins.get(key, "flow resource") + f" ({name}-decoded, secret)"


def resolve_resource(
    res: ResourceSpec,
    profiles: Mapping[str, Mapping[str, Any]],
    scope: Mapping[str, Any],
    redactor: Redactor,
    profile_override: str | None,
    profiles_origin: str,
    decoders: Mapping[str, Callable[[str], str]] | None = None,
) -> ResolvedResource:
    profile_name = profile_override or res.profile
    origins: dict[str, str] = {}
    base: dict[str, Any] = {"config": {}, "options": {}, "decode": {}}
    if profile_name:
        if profile_name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ResolutionError(
                f"resource '{res.name}': profile '{profile_name}' not found (known: {known})",
                code="resource.profile_missing",
                location=res.location,
            )
        prof = profiles[profile_name]
        base = deep_merge(base, {k: prof.get(k, {}) for k in ("config", "options", "decode")})
        for part in ("config", "options"):
            _origins(prof.get(part, {}), part, f"profile {profile_name} ({profiles_origin})", origins)
    own = {"config": res.config, "options": res.options, "decode": res.decode}
    merged = deep_merge(base, own)
    for part in ("config", "options"):
        _origins(own[part], part, "flow resource", origins)
    for key, origin in list(origins.items()):
        part, _, rest = key.partition(".")
        value: Any = merged[part]
        for seg in rest.split("."):
            value = value.get(seg) if isinstance(value, Mapping) else None
        t = _template_origin(value)
        if t:
            origins[key] = f"{origin} via {t}"
    where = f"resource '{res.name}'"
    try:
        config = template.render(merged["config"], scope)
        options = template.render(merged["options"], scope)
    except TemplateError as exc:
        raise ResolutionError(f"{where}: {exc}", code="resource.template", location=res.location) from exc
    secret_fields: list[str] = []
    decode = merged.get("decode") or {}
    for part, target in (("config", config), ("options", options)):
        marks = decode.get(part) or {}
        if isinstance(marks, Mapping):
            _decode_marked(marks, target, part, where, res.location, decoders or {}, redactor, secret_fields, origins)
    for key, origin in origins.items():
        if "secrets." in origin:
            secret_fields.append(key)
    _register_credentials(config, redactor)
    return ResolvedResource(
        name=res.name,
        kind=res.kind,
        driver=res.driver,
        config=freeze(config),
        options=freeze(options),
        origins=MappingProxyType(origins),
        secret_fields=tuple(sorted(set(secret_fields))),
        location=res.location,
    )
