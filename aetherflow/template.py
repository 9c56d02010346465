"""The one ``{{ PATH }}`` renderer of aetherflow.

Grammar (inside any string value of a flow)::

    token    := "{{" WS* PATH WS* ( ":" DEFAULT )? "}}"
    PATH     := IDENT ( "." SEGMENT )*
    IDENT    := [A-Za-z_] [A-Za-z0-9_-]*
    SEGMENT  := [A-Za-z0-9_-]+          (all digits = list index: steps.probe.items.0)
    DEFAULT  := everything after the first ":" up to "}}", trimmed; always a string, may be empty
    escape   := "\\{{"                   a literal "{{" (the backslash is removed)

* ``${VAR}``, ``{}``, ``{x}`` and single braces are ordinary text. In a run of opening braces
  the last two open the token, so ``{"a":{{ x }}}`` is ``{"a":`` + token + ``}``.
* An unterminated ``{{`` or a malformed path (``{{ }}``, ``{{ a..b }}``, ``{{ 1abc }}``,
  ``{{ a b }}``) is a :class:`TemplateSyntaxError` carrying the 0-based ``offset`` of the ``{{``.
* A string that is exactly one token (nothing around it) renders to the looked-up value with its
  type (list, int, dict, bool, None; read-only mappings and tuples come back as dict and list).
  Mixed with text, values become strings: None -> "", booleans -> "true"/"false", mappings and
  lists -> compact JSON, anything else -> ``str()``.
* Rendering is one pass: a substituted value is never parsed again.
* A path that is not found renders its DEFAULT when it has one; otherwise it is a
  :class:`~aetherflow.errors.TemplateError` (``template.missing``) naming the dotted path. An
  environment variable set to the empty string renders its DEFAULT too (``{{ env.X:d }}`` with
  ``X=""`` is ``d``, like the shell's ``${X:-d}`` and aetherflow-core); without a DEFAULT it is "".
  A value masked in the run store (:class:`~aetherflow.model.Masked`) is refused
  (``template.masked_secret``): secrets are read with ``{{ secrets.NAME }}``.

The ``run`` root (:func:`run_scope`) is derived from the run's recorded start time, never from
the clock at render time, so it is the same in every attempt and every resume of a run:
``id``, ``attempt``, ``started_at`` (ISO-8601, UTC), ``date`` (``YYYY-MM-DD`` in UTC) and
``local_date`` (``YYYY-MM-DD`` in the local time zone of the process rendering it).

This module keeps no mutable module-level state; only compiled regular expressions and the
:data:`MISSING` sentinel live at module level.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aetherflow.errors import Location, TemplateError
from aetherflow.model import Masked, thaw

__all__ = [
    "MISSING",
    "Template",
    "TemplateSyntaxError",
    "Token",
    "base_scope",
    "lookup",
    "missing_env_hint",
    "parse",
    "render",
    "run_scope",
    "tokens",
]

_PATH_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")
_OPEN: Final = "{{"
_CLOSE: Final = "}}"
_ESCAPE: Final = "\\"
_SECRETS_HINT: Final = "read secrets with '{{ secrets.NAME }}' where they are needed"


class _Missing:
    """Type of :data:`MISSING`: falsy, immutable, one instance."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"

    def __copy__(self) -> _Missing:
        return self

    def __deepcopy__(self, memo: object) -> _Missing:
        return self


#: What :func:`lookup` returns for a path that is not there.
MISSING: Final = _Missing()


class TemplateSyntaxError(TemplateError):
    """A malformed ``{{ ... }}`` token; ``offset`` is where its ``{{`` starts (0-based)."""

    default_code = "template.syntax"

    def __init__(
        self,
        message: str,
        *,
        offset: int,
        hint: str | None = None,
        location: Location | None = None,
    ) -> None:
        super().__init__(message, hint=hint, location=location)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Token:
    """One ``{{ PATH[:DEFAULT] }}``: the split path, the default (or None) and the raw text."""

    path: tuple[str, ...]
    default: str | None
    raw: str

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled string: literal parts (escapes already applied) and tokens, in order."""

    text: str
    parts: tuple[str | Token, ...]

    @property
    def single(self) -> Token | None:
        """The token when the string is exactly one token, else None."""
        parts = self.parts
        if len(parts) == 1 and isinstance(parts[0], Token):
            return parts[0]
        return None

    @property
    def tokens(self) -> tuple[Token, ...]:
        return tuple(p for p in self.parts if isinstance(p, Token))


# ---------------------------------------------------------------------------------------------
# Parsing


def base_scope(
    *,
    env: Mapping[str, str],
    flow_id: str,
    params: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    run: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The roots every template of a run may read (the one place they are put together):
    ``env``, ``flow_id``, ``params`` (empty before they are resolved), ``secrets`` (when
    resolved), and with ``run`` (its ``id`` first) ``run`` and ``run_id``. The engine adds
    ``jobs``, ``job``, ``steps``, ``workspace`` and ``result`` where they exist."""
    scope: dict[str, Any] = {"env": env, "flow_id": flow_id, "params": {} if params is None else params}
    if secrets is not None:
        scope["secrets"] = secrets
    if run is not None:
        scope["run"] = run
        scope["run_id"] = run["id"]
    return scope


def parse(text: str) -> Template | str:
    """Compile ``text``; return it unchanged when it holds no ``{{`` at all."""
    if _OPEN not in text:
        return text
    parts: list[str | Token] = []
    literal: list[str] = []
    n = len(text)
    i = 0
    while True:
        j = text.find(_OPEN, i)
        if j < 0:
            literal.append(text[i:])
            break
        if j > i and text[j - 1] == _ESCAPE:
            literal.append(text[i : j - 1])
            literal.append(_OPEN)
            i = j + 2
            continue
        # In a run of "{" the last two open the token; the others are text.
        while j + 2 < n and text[j + 2] == "{":
            j += 1
        literal.append(text[i:j])
        end = text.find(_CLOSE, j + 2)
        inner = text[j + 2 : end] if end >= 0 else ""
        if end < 0 or _OPEN in inner:
            raise TemplateSyntaxError(
                f"unterminated '{{{{' at offset {j}: no closing '}}}}'",
                offset=j,
                hint="write '\\{{' for a literal '{{'",
            )
        token = _token(inner, text[j : end + 2], j)
        lit = "".join(literal)
        if lit:
            parts.append(lit)
        literal.clear()
        parts.append(token)
        i = end + 2
    lit = "".join(literal)
    if lit:
        parts.append(lit)
    return Template(text, tuple(parts))


def _token(inner: str, raw: str, offset: int) -> Token:
    path_text, colon, default = inner.partition(":")
    path_text = path_text.strip()
    if not path_text:
        raise TemplateSyntaxError(
            f"empty template {raw!r} at offset {offset}",
            offset=offset,
            hint="put a path inside the braces, e.g. '{{ params.date }}'",
        )
    if _PATH_RE.fullmatch(path_text) is None:
        raise TemplateSyntaxError(
            f"invalid template path {path_text!r} at offset {offset}",
            offset=offset,
            hint=(
                "a path is dotted names such as 'steps.probe.outputs.rows' or "
                "'steps.probe.outputs.items.0'; write '\\{{' for a literal '{{'"
            ),
        )
    return Token(tuple(path_text.split(".")), default.strip() if colon else None, raw)


def tokens(value: Any) -> Iterator[Token]:
    """Every token in a nested value (mapping values, list/tuple items, strings)."""
    if isinstance(value, str):
        if _OPEN in value:
            compiled = parse(value)
            if isinstance(compiled, Template):
                yield from compiled.tokens
    elif isinstance(value, Template):
        yield from value.tokens
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from tokens(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tokens(item)


# ---------------------------------------------------------------------------------------------
# The run root


def run_scope(run_id: str, started_at: float, attempt: int | None = None) -> dict[str, Any]:
    """The ``run`` template root of a run that started at ``started_at`` (epoch seconds, as
    recorded in the store): ``id``, ``attempt`` (when known), ``started_at``
    (``2026-11-20T02:15:00+00:00``), ``date`` (the UTC date, ``2026-11-20``) and
    ``local_date`` (the date in this process's local time zone)."""
    utc = time.gmtime(started_at)
    scope: dict[str, Any] = {
        "id": run_id,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", utc),
        "date": time.strftime("%Y-%m-%d", utc),
        "local_date": time.strftime("%Y-%m-%d", time.localtime(started_at)),
    }
    if attempt is not None:
        scope["attempt"] = attempt
    return scope


# ---------------------------------------------------------------------------------------------
# Lookup and rendering


def lookup(scope: Mapping[str, Any], path: Sequence[str]) -> Any:
    """Walk ``path`` through mappings (by key) and sequences (by digit index).

    Returns :data:`MISSING` when any step is absent; never raises for a missing path. Strings
    and other objects are not walked.
    """
    cur: Any = scope
    for seg in path:
        if isinstance(cur, Mapping):
            nxt = cur.get(seg, MISSING)
            if nxt is MISSING and seg.isascii() and seg.isdigit():
                nxt = cur.get(int(seg), MISSING)
            cur = nxt
        elif isinstance(cur, (list, tuple)) or (
            isinstance(cur, Sequence) and not isinstance(cur, (str, bytes, bytearray))
        ):
            if not (seg.isascii() and seg.isdigit()):
                return MISSING
            idx = int(seg)
            if idx >= len(cur):
                return MISSING
            cur = cur[idx]
        else:
            return MISSING
        if cur is MISSING:
            return MISSING
    return cur


def render(value: Any, scope: Mapping[str, Any]) -> Any:
    """Deep-render ``value``: mappings -> dict, lists/tuples -> list, strings rendered.

    ``value`` may also be a :class:`Template` from :func:`parse`. Other values are returned
    unchanged.
    """
    if isinstance(value, str):
        if _OPEN not in value:
            return value
        compiled = parse(value)
        if isinstance(compiled, str):  # pragma: no cover - parse only returns str without "{{"
            return compiled
        return _render_template(compiled, scope)
    if isinstance(value, Template):
        return _render_template(value, scope)
    if isinstance(value, Mapping):
        return {k: render(v, scope) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render(v, scope) for v in value]
    return value


def _render_template(template: Template, scope: Mapping[str, Any]) -> Any:
    parts = template.parts
    if len(parts) == 1:
        only = parts[0]
        if isinstance(only, Token):
            value = _resolve(only, scope)
            if isinstance(value, (Mapping, tuple, list)):
                return thaw(value)
            return value
        return only
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        else:
            out.append(_to_text(_resolve(part, scope)))
    return "".join(out)


def _resolve(token: Token, scope: Mapping[str, Any]) -> Any:
    value = lookup(scope, token.path)
    if value is MISSING:
        masked = _masked_prefix(scope, token.path)
        if masked is not None:
            raise _masked_error(token, masked)
        if token.default is not None:
            return token.default
        raise TemplateError(
            f"template path '{token.dotted}' not found",
            code="template.missing",
            hint=_missing_hint(scope, token.path),
        )
    if isinstance(value, Masked):
        raise _masked_error(token, value)
    if value == "" and token.default is not None and token.path[0] == "env":
        return token.default  # set but empty counts as unset when there is a default
    return value


def _masked_prefix(scope: Mapping[str, Any], path: tuple[str, ...]) -> Masked | None:
    for i in range(1, len(path)):
        value = lookup(scope, path[:i])
        if value is MISSING:
            return None
        if isinstance(value, Masked):
            return value
    return None


def _masked_error(token: Token, masked: Masked) -> TemplateError:
    what = f" ({masked.name})" if masked.name else ""
    return TemplateError(
        f"template path '{token.dotted}' refers to a value that carried a secret and was "
        f"masked in the run store{what}; it cannot be rendered",
        code="template.masked_secret",
        hint=_SECRETS_HINT,
    )


def _missing_hint(scope: Mapping[str, Any], path: tuple[str, ...]) -> str:
    if len(path) == 2 and path[0] == "env" and isinstance(scope.get("env"), Mapping):
        return missing_env_hint(path[1])  # not the dozens of unrelated names the environment has
    for i in range(len(path) - 1, 0, -1):
        value = lookup(scope, path[:i])
        if value is MISSING:
            continue
        prefix = ".".join(path[:i])
        if isinstance(value, Mapping):
            if not value:
                return f"'{prefix}' is empty"
            keys = sorted(str(k) for k in value)
            more = f" (and {len(keys) - 20} more)" if len(keys) > 20 else ""
            return f"'{prefix}' has: {', '.join(keys[:20])}{more}"
        if isinstance(value, (list, tuple)):
            return (
                f"'{prefix}' is a list of {len(value)} item(s); index it with 0..{len(value) - 1}"
            )
        return f"'{prefix}' is a {type(value).__name__}, which has no fields"
    roots = ", ".join(sorted(str(k) for k in scope))
    return f"known roots: {roots}" if roots else "nothing is in scope here"


def missing_env_hint(var: str) -> str:
    """What to do about ``{{ env.VAR }}`` when ``VAR`` is not set."""
    return (f"set {var} (in the environment, a flow.env_files file or --env-file), "
            f"or give the template a default: '{{{{ env.{var}:VALUE }}}}'")


def _json_default(obj: object) -> str:
    if isinstance(obj, Masked):
        return "***"
    return str(obj)


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(
            thaw(value), separators=(",", ":"), ensure_ascii=False, default=_json_default
        )
    return str(value)
