"""A yes/no JSON Schema check for the keywords aetherflow's own schemas use, without jsonschema.

Importing jsonschema costs 40-70 ms and its validator about 25 µs a step; both are paid by
every ``validate`` and by the first ``run`` of a new or edited flow, although nearly every
document checked is valid. ``compile_check(schema)`` turns a schema into a function that only
answers "valid?". ``spec.schema.SchemaValidator`` asks it first and uses jsonschema only when
the answer is no (to say what is wrong, with the messages and codes it always had) or when the
schema uses anything this module does not know.

Contract
--------
``compile_check(schema) -> Callable[[Any], bool] | None``
    ``None`` unless every keyword of ``schema`` (a Draft 2020-12 schema with its local
    ``$ref``\\ s already inlined) is one listed below; otherwise a function that returns
    exactly what ``not list(Draft202012Validator(schema).iter_errors(x))`` returns, for the
    plain JSON values the YAML loader builds (dict, list, str, int, float, bool, None).
    A test compares the two on every shipped schema and a corpus of good and bad documents.

Keywords: ``type`` (one or a list), ``enum``, ``const`` (JSON equality: ``true`` is not ``1``,
``1`` is ``1.0``), ``properties``, ``patternProperties``, ``additionalProperties``,
``required``, ``dependentRequired``, ``propertyNames``, ``minProperties``/``maxProperties``,
``items`` (one schema), ``minItems``/``maxItems``, ``uniqueItems``, ``minLength``/``maxLength``
(code points), ``pattern`` (``re.search``), ``minimum``/``maximum`` and their exclusive forms,
``allOf``/``anyOf``/``oneOf``/``not``, boolean schemas; annotations (``description``,
``title``, ``default``, ``examples``, ``$comment``, ``deprecated``, ``format`` — formats are
not asserted, as in ``SchemaValidator``) and ``$schema``/``$id``/``$defs``/``$anchor`` are
ignored. Anything else (a ``$ref`` left after inlining, ``if``, ``contains``,
``unevaluatedProperties``, …) makes the schema unsupported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["compile_check"]

Check = Callable[[Any], bool]

_IGNORED = frozenset({
    "description", "title", "default", "examples", "$comment", "deprecated", "format",
    "$schema", "$id", "$defs", "definitions", "$anchor", "readOnly", "writeOnly",
})


_OBJECT = frozenset({"properties", "patternProperties", "additionalProperties", "required", "dependentRequired",
                     "propertyNames", "minProperties", "maxProperties"})
_ARRAY = frozenset({"items", "minItems", "maxItems", "uniqueItems"})
_STRING = frozenset({"minLength", "maxLength", "pattern"})
_NUMBER = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_KNOWN = _OBJECT | _ARRAY | _STRING | _NUMBER | {"type", "enum", "const", "allOf", "anyOf", "oneOf", "not"}


class _Unsupported(Exception):
    pass


def compile_check(schema: Any) -> Check | None:
    """A yes/no validity check equivalent to jsonschema's for ``schema``, or ``None``."""
    try:
        return _compile(schema)
    except Exception:  # noqa: BLE001 - anything odd in the schema: jsonschema decides instead
        return None


# ------------------------------------------------------------------------------- types


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_integer(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return True
    return isinstance(x, float) and x.is_integer()


_TYPES: dict[str, Check] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
    "number": _is_number,
    "integer": _is_integer,
}


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: booleans are not numbers, 1 equals 1.0, containers compare deeply."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return False
    return bool(a == b)


# ----------------------------------------------------------------------------- compiler


def _compile(schema: Any) -> Check:
    if schema is True:
        return lambda x: True
    if schema is False:
        return lambda x: False
    if not isinstance(schema, dict):
        raise _Unsupported(type(schema).__name__)
    keys = schema.keys() - _IGNORED
    if keys - _KNOWN:
        raise _Unsupported(", ".join(sorted(keys - _KNOWN)))
    checks: list[Check] = []
    if "type" in keys:
        checks.append(_type(schema["type"]))
    if "enum" in keys:
        options = list(schema["enum"])
        checks.append(lambda x: any(_equal(x, o) for o in options))
    if "const" in keys:
        const = schema["const"]
        checks.append(lambda x: _equal(x, const))
    if keys & _OBJECT:
        checks.append(_object(schema))
    if keys & _ARRAY:
        checks.append(_array(schema))
    if keys & _STRING:
        checks.append(_string(schema))
    if keys & _NUMBER:
        checks.append(_number(schema))
    checks.extend(_combinators(schema))
    if not checks:
        return lambda x: True
    if len(checks) == 1:
        return checks[0]
    return lambda x: all(c(x) for c in checks)


def _type(spec: Any) -> Check:
    names = [spec] if isinstance(spec, str) else list(spec)
    tests = [_TYPES[n] for n in names]  # an unknown type name: KeyError → unsupported
    if len(tests) == 1:
        return tests[0]
    return lambda x: any(t(x) for t in tests)


def _object(schema: dict[str, Any]) -> Check:
    props = {name: _compile(sub) for name, sub in (schema.get("properties") or {}).items()}
    patterns = [(re.compile(p), _compile(sub)) for p, sub in (schema.get("patternProperties") or {}).items()]
    extra_schema = schema.get("additionalProperties", True)
    extra = None if extra_schema is True else _compile(extra_schema)
    required = list(schema.get("required") or ())
    dependent = {k: list(v) for k, v in (schema.get("dependentRequired") or {}).items()}
    names = _compile(schema["propertyNames"]) if "propertyNames" in schema else None
    low = schema.get("minProperties")
    high = schema.get("maxProperties")

    def check(x: Any) -> bool:
        if not isinstance(x, dict):
            return True
        for key in required:
            if key not in x:
                return False
        for key, needs in dependent.items():
            if key in x and any(n not in x for n in needs):
                return False
        if (low is not None and len(x) < low) or (high is not None and len(x) > high):
            return False
        for key, value in x.items():
            if names is not None and not names(key):
                return False
            sub = props.get(key)
            matched = sub is not None
            if matched and not sub(value):  # type: ignore[misc]
                return False
            for pattern, pcheck in patterns:
                if pattern.search(key):
                    matched = True
                    if not pcheck(value):
                        return False
            if not matched and extra is not None and not extra(value):
                return False
        return True

    return check


def _array(schema: dict[str, Any]) -> Check:
    if isinstance(schema.get("items"), list):
        raise _Unsupported("items as a list")
    item = _compile(schema["items"]) if "items" in schema else None
    low = schema.get("minItems")
    high = schema.get("maxItems")
    unique = bool(schema.get("uniqueItems", False))

    def check(x: Any) -> bool:
        if not isinstance(x, list):
            return True
        if (low is not None and len(x) < low) or (high is not None and len(x) > high):
            return False
        if item is not None and not all(item(v) for v in x):
            return False
        if unique:
            for i in range(1, len(x)):
                for j in range(i):
                    if _equal(x[i], x[j]):
                        return False
        return True

    return check


def _string(schema: dict[str, Any]) -> Check:
    low = schema.get("minLength")
    high = schema.get("maxLength")
    pattern = re.compile(schema["pattern"]) if "pattern" in schema else None

    def check(x: Any) -> bool:
        if not isinstance(x, str):
            return True
        if (low is not None and len(x) < low) or (high is not None and len(x) > high):
            return False
        return pattern is None or pattern.search(x) is not None

    return check


def _number(schema: dict[str, Any]) -> Check:
    lo, hi, xlo, xhi = (schema.get(k) for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"))
    if any(b is not None and not _is_number(b) for b in (lo, hi, xlo, xhi)):
        raise _Unsupported("a non-numeric bound")

    def check(x: Any) -> bool:
        if not _is_number(x):
            return True
        if lo is not None and x < lo:
            return False
        if hi is not None and x > hi:
            return False
        if xlo is not None and x <= xlo:
            return False
        return xhi is None or x < xhi

    return check


def _combinators(schema: dict[str, Any]) -> list[Check]:
    out: list[Check] = []
    if "allOf" in schema:
        every = [_compile(s) for s in schema["allOf"]]
        out.append(lambda x: all(c(x) for c in every))
    if "anyOf" in schema:
        some = [_compile(s) for s in schema["anyOf"]]
        out.append(lambda x: any(c(x) for c in some))
    if "oneOf" in schema:
        alternatives = [_compile(s) for s in schema["oneOf"]]
        out.append(lambda x: sum(1 for c in alternatives if c(x)) == 1)
    if "not" in schema:
        negated = _compile(schema["not"])
        out.append(lambda x: not negated(x))
    return out
