"""JSON Schema validation of flows, profiles and step inputs, mapped to stable issue codes.

Contract
--------
``load_schema(name) -> dict``
    The shipped schema ``<name>.schema.json`` (``flow``, ``profiles``): from the package data
    (``aetherflow/schemas`` in a wheel), else from the repository's ``schemas/`` directory
    (editable installs). Every call returns a fresh dict; nothing is cached at module level.

``SchemaValidator(schema, *, prefix="schema", templates=False, check=True)``
    Compiles a Draft 2020-12 jsonschema validator on first use (formats are not checked); the
    caller keeps the object for as long as it needs it. ``check=True`` validates the schema
    itself first.
    ``validate(data, *, file, positions, base_path=())``
    returns every problem as an :class:`~aetherflow.errors.Issue`: deduplicated by (code, path)
    and sorted by line and column. ``positions`` come from ``spec.loader.load_yaml``; without
    them issues carry only the file and the JSON path.

``validate_inputs(schema, inputs, *, file, positions, base_path)``
    Checks a step's ``inputs`` against its type's declared ``inputs_schema`` (a dict, or a
    ``SchemaValidator`` from :func:`inputs_validator` to avoid recompiling). Codes start with
    ``inputs.``; paths are ``base_path`` + the path inside the inputs. A string containing
    ``{{`` is a template rendered at run time, so no check that fails on it is reported.

Issue codes (``schema.`` for documents, ``inputs.`` for step inputs)
--------------------------------------------------------------------
``additional_property``  an unknown key, located at the key (with a did-you-mean hint)
``required``             a missing key (``required`` or ``dependentRequired``), at the object
``type``                 a value of the wrong JSON type
``enum`` / ``const``     a value outside the allowed values
``pattern``              a string (or a map key, e.g. a param name) not matching its pattern
``min_items``            too few items (``jobs: []``)
``minimum``              a number below ``minimum`` or not above ``exclusiveMinimum``
``unique_items``         an array with a repeated item
``one_of`` / ``any_of``  no alternative (or, for ``oneOf``, more than one) matches
``invalid``              anything else, with the validator's own message
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path as FsPath
from typing import Any

from aetherflow.errors import Issue, Location, PluginError, UsageError, format_path
from aetherflow.spec.loader import Path, Positions

__all__ = ["SchemaValidator", "inputs_validator", "load_schema", "validate_inputs"]

IDENTIFIER_PATTERN = "^[A-Za-z_][A-Za-z0-9_-]*$"

_SIMPLE_CODES = {
    "type": "type",
    "enum": "enum",
    "const": "const",
    "pattern": "pattern",
    "minItems": "min_items",
    "minimum": "minimum",
    "exclusiveMinimum": "minimum",
    "uniqueItems": "unique_items",
}
_MAX_SHOWN = 60


# ------------------------------------------------------------------------------ loading


def load_schema(name: str) -> dict[str, Any]:
    """Read the shipped schema ``name`` (``flow`` or ``profiles``); a fresh dict each call."""
    from aetherflow.spec import shipped_schema_file

    found = shipped_schema_file(name)
    if found is not None:
        # Parsed afresh on every call: callers may mutate the result (plugin merging).
        loaded: dict[str, Any] = json.loads(found.read_text(encoding="utf-8"))
        return loaded
    repo_dir = FsPath(__file__).resolve().parents[2] / "schemas"
    known = sorted(
        p.name.removesuffix(".schema.json")
        for p in (repo_dir.glob("*.schema.json") if repo_dir.is_dir() else ())
    )
    raise UsageError(
        f"no schema named {name!r}",
        hint=f"known schemas: {', '.join(known)}" if known else None,
    )


# ---------------------------------------------------------------------------- validator


class SchemaValidator:
    """A compiled Draft 2020-12 validator whose errors come out as located Issues.

    ``prefix`` is the first part of every issue code (``schema`` or ``inputs``). With
    ``templates=True`` failures on template strings (containing ``{{``) are not reported.
    ``check=True`` first checks that ``schema`` is itself a valid JSON Schema (a step type's
    ``inputs_schema`` comes from a plugin) and raises :class:`PluginError` if not.
    """

    __slots__ = ("_inlined", "_prefix", "_templates", "_validator", "schema")

    def __init__(
        self,
        schema: Mapping[str, Any],
        *,
        prefix: str = "schema",
        templates: bool = False,
        check: bool = True,
    ) -> None:
        self.schema: dict[str, Any] = copy.deepcopy(dict(schema))
        if check:
            from jsonschema import Draft202012Validator
            from jsonschema.exceptions import SchemaError

            try:
                Draft202012Validator.check_schema(self.schema)
            except SchemaError as exc:
                where = format_path(tuple(exc.absolute_path)) or "the top level"
                raise PluginError(
                    f"invalid JSON Schema at {where}: {exc.message}",
                    code="plugin.invalid_schema",
                ) from exc
        # validated against a copy whose local $refs are inlined: same keywords, no reference
        # resolution per instance (that lookup was most of the cost of a large flow)
        self._inlined = _inline_refs(self.schema)
        self._validator: Any = None
        self._prefix = prefix
        self._templates = templates

    def _errors(self, data: Any) -> list[Any]:
        if self._validator is None:
            from jsonschema import Draft202012Validator

            self._validator = Draft202012Validator(self._inlined, format_checker=None)
        return list(self._validator.iter_errors(data))

    def validate(
        self,
        data: Any,
        *,
        file: str | None,
        positions: Positions | None,
        base_path: Path = (),
    ) -> list[Issue]:
        """Every problem of ``data`` as Issues, deduplicated by (code, path), sorted by position."""
        errors = self._errors(data)
        if self._templates:
            errors = [e for e in errors if not _template_only(e)]
        if not errors:  # the usual case, once per step of a flow: nothing to map
            return []
        mapper = _Mapper(self._prefix, file, positions, base_path, errors)
        seen: set[tuple[str, str]] = set()
        issues: list[Issue] = []
        for error in errors:
            for issue in mapper.issues(error):
                key = (issue.code, issue.location.path if issue.location else "")
                if key not in seen:
                    seen.add(key)
                    issues.append(issue)
        issues.sort(key=_sort_key)
        return issues


_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "$comment", "deprecated"})
_SCOPED = frozenset({"$ref", "$id", "$anchor", "$dynamicAnchor", "$dynamicRef"})  # never merged
_NOT_SUBSCHEMAS = frozenset({"$defs", "enum", "const", "default", "examples", "required"})


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` where each ``{"$ref": "#/$defs/NAME", ...}`` is replaced by that
    definition, when the ref's other keys are annotations or keywords the definition lacks (so
    the merged object applies exactly the same keywords). Recursive refs stay refs."""
    defs = schema.get("$defs")
    if not isinstance(defs, dict) or not defs:
        return schema

    def walk(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(v, stack) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        name = ref[8:] if isinstance(ref, str) and ref.startswith("#/$defs/") else None
        if name is not None and "/" not in name and isinstance(defs.get(name), dict) and name not in stack:
            target = walk(defs[name], (*stack, name))
            rest = {k: v for k, v in node.items() if k != "$ref"}
            if all(k in _ANNOTATIONS or k not in target for k in rest) and not target.keys() & _SCOPED:
                merged = dict(target)
                for k, v in rest.items():
                    if k not in merged:
                        merged[k] = v if k in _NOT_SUBSCHEMAS else walk(v, stack)
                return merged
        return {k: (v if k in _NOT_SUBSCHEMAS else walk(v, stack)) for k, v in node.items()}

    return walk(schema, ())  # type: ignore[no-any-return]


def inputs_validator(schema: Mapping[str, Any], *, check: bool = True) -> SchemaValidator:
    """A validator for a step type's ``inputs_schema`` (``inputs.`` codes, templates allowed).
    ``check=False`` skips checking the schema itself (built-in step types: a test does it)."""
    return SchemaValidator(schema, prefix="inputs", templates=True, check=check)


def validate_inputs(
    schema: Mapping[str, Any] | SchemaValidator,
    inputs: Any,
    *,
    file: str | None,
    positions: Positions | None,
    base_path: Path,
) -> list[Issue]:
    """Check a step's ``inputs`` against its type's ``inputs_schema`` (see module docstring).

    Pass a validator from :func:`inputs_validator` to compile a step type's schema only once.
    """
    validator = schema if isinstance(schema, SchemaValidator) else inputs_validator(schema)
    return validator.validate(inputs, file=file, positions=positions, base_path=tuple(base_path))


def retry_problems(retry: Mapping[str, Any]) -> list[str]:
    """Why a step type's default retry policy (``register_step(retry=...)``) is not a valid
    ``retry:`` of a flow: checked against the flow schema's own definition."""
    from jsonschema import Draft202012Validator

    from aetherflow.model import thaw

    schema = load_schema("flow")["$defs"]["retry"]
    errors = Draft202012Validator(schema, format_checker=None).iter_errors(thaw(retry))
    return sorted(f"{format_path(tuple(e.absolute_path)) or 'retry'}: {e.message}" for e in errors)


def _sort_key(issue: Issue) -> tuple[int, int, str, str]:
    loc = issue.location
    line = loc.line if loc and loc.line is not None else 0
    column = loc.column if loc and loc.column is not None else 0
    return (line, column, loc.path if loc else "", issue.code)


# ------------------------------------------------------------------------------ mapping


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _template_only(error: Any) -> bool:
    """True if ``error`` is only about template strings (rendered at run time, not now)."""
    if _is_template(error.instance):
        return True
    if error.validator in ("anyOf", "oneOf") and error.context:
        # An alternative whose only failures are template strings may well match at run time.
        branches: dict[Any, list[Any]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        n_alternatives = len(error.validator_value)
        if len(branches) < n_alternatives:  # some alternative had no error at all
            return False
        return any(all(_template_only(sub) for sub in subs) for subs in branches.values())
    return False


def _type_hint(path: Path, expected: Any, instance: Any) -> str | None:
    """How to write a list where a mapping was written (``jobs:`` in the GitHub Actions shape)."""
    if "array" not in ([expected] if isinstance(expected, str) else list(expected)) or not isinstance(instance, dict):
        return None
    if path == ("jobs",):
        first = next(iter(instance), "build")
        return (f"jobs is a list, not a map of job names (as in GitHub Actions): write '- id: {first}' "
                "and indent that job's keys under it")
    if path and path[-1] == "steps":
        first = next(iter(instance), "load")
        return f"steps is a list: write '- id: {first}' for each step and indent its keys under it"
    return "this is a list: write each item on its own line starting with '- '"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _show(value: Any) -> str:
    """A short, YAML-friendly rendering of a value for messages."""
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, (bool, type(None), int, float, list, dict)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _either(values: Sequence[Any], word: str = "or") -> str:
    shown = [_show(v) for v in values]
    if len(shown) <= 1:
        return "".join(shown)
    return f"{', '.join(shown[:-1])} {word} {shown[-1]}"


def _in(path: Path) -> str:
    return f"in {format_path(path)}" if path else "at the top level"


class _Mapper:
    """Turns jsonschema errors of one validation into Issues."""

    def __init__(
        self,
        prefix: str,
        file: str | None,
        positions: Positions | None,
        base_path: Path,
        errors: Iterable[Any],
    ) -> None:
        self.prefix = prefix
        self.file = file
        self.positions = positions
        self.base_path = base_path
        # Objects with an unknown key: a misspelt key explains a missing alternative there.
        self.unknown_key_paths = {
            self.path(e) for e in errors if e.validator == "additionalProperties"
        }

    def path(self, error: Any) -> Path:
        return self.base_path + tuple(error.absolute_path)

    def location(self, path: Path, *, key: bool = False) -> Location:
        if self.positions is None:
            return Location(self.file, None, None, format_path(path))
        return self.positions.location(self.file, path, key=key)

    def issue(
        self, code: str, message: str, path: Path, *, key: bool = False, hint: str | None = None
    ) -> Issue:
        return Issue(f"{self.prefix}.{code}", message, self.location(path, key=key), hint)

    def issues(self, error: Any) -> list[Issue]:
        path = self.path(error)
        validator = error.validator
        if validator == "additionalProperties" and error.validator_value is False:
            return self.unknown_keys(error, path)
        if validator in ("required", "dependentRequired"):
            return [self.missing_keys(error, path)]
        if validator in ("oneOf", "anyOf"):
            return self.alternatives(error, path)
        if "propertyNames" in error.absolute_schema_path and isinstance(error.instance, str):
            # A map key (param, secret, resource name) that fails its schema.
            key_path = path + (error.instance,)
            code, message, hint = self.describe(error)
            return [self.issue(code, message, key_path, key=True, hint=hint)]
        code, message, hint = self.describe(error)
        if validator == "type" and hint is None:
            hint = _type_hint(path, error.validator_value, error.instance)
        return [self.issue(code, message, path, hint=hint)]

    # -- one error -> (code, message, hint)

    def describe(self, error: Any) -> tuple[str, str, str | None]:
        validator = error.validator
        value = error.validator_value
        instance = error.instance
        code = _SIMPLE_CODES.get(validator, "invalid")
        if validator == "type":
            expected = [value] if isinstance(value, str) else list(value)
            return code, f"expected {' or '.join(expected)}, got {_json_type(instance)}", None
        if validator == "enum":
            hint = None
            if isinstance(instance, str):
                close = difflib.get_close_matches(
                    instance, [v for v in value if isinstance(v, str)], n=1
                )
                hint = f"did you mean {close[0]!r}?" if close else None
            return code, f"{_show(instance)} is not one of {_either(value)}", hint
        if validator == "const":
            return code, f"expected {_show(value)}, got {_show(instance)}", None
        if validator == "pattern":
            if value == IDENTIFIER_PATTERN:
                return (
                    code,
                    f"{_show(instance)} is not a valid identifier",
                    "use a letter or '_' first, then letters, digits, '_' or '-'",
                )
            return code, f"{_show(instance)} does not match the pattern {value!r}", None
        if validator == "minItems":
            noun = "item" if value == 1 else "items"
            return code, f"expected at least {value} {noun}, got {len(instance)}", None
        if validator == "minimum":
            return code, f"expected a number >= {value}, got {_show(instance)}", None
        if validator == "exclusiveMinimum":
            return code, f"expected a number > {value}, got {_show(instance)}", None
        if validator == "uniqueItems":
            repeated = _first_repeat(instance)
            return code, f"items must be unique; {_show(repeated)} appears more than once", None
        return (
            code,
            error.message if len(error.message) <= 200 else error.message[:197] + "...",
            None,
        )

    # -- errors that need more than a message

    def unknown_keys(self, error: Any, path: Path) -> list[Issue]:
        instance = error.instance if isinstance(error.instance, dict) else {}
        allowed = list(error.schema.get("properties", {}))
        patterns = list(error.schema.get("patternProperties", {}))
        out = []
        for name in instance:
            if name in allowed or any(re.search(p, name) for p in patterns):
                continue
            close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            if close:
                hint = f"did you mean {close[0]!r}?"
            elif allowed:
                hint = f"allowed keys: {', '.join(allowed)}"
            else:
                hint = None
            out.append(
                self.issue(
                    "additional_property",
                    f"unknown key {name!r} {_in(path)}",
                    path + (name,),
                    key=True,
                    hint=hint,
                )
            )
        return out

    def missing_keys(self, error: Any, path: Path) -> Issue:
        # Computed from the whole object schema so every error at this path says the same thing.
        instance = error.instance if isinstance(error.instance, dict) else {}
        schema = error.schema
        missing = [name for name in schema.get("required", ()) if name not in instance]
        needed_by: list[str] = []
        for trigger, names in schema.get("dependentRequired", {}).items():
            if trigger in instance:
                for name in names:
                    if name not in instance and name not in missing:
                        missing.append(name)
                        needed_by.append(f"{name!r} is required with {trigger!r}")
        noun = "key" if len(missing) == 1 else "keys"
        message = f"missing required {noun} {_either(missing, 'and')} {_in(path)}"
        return self.issue("required", message, path, hint="; ".join(needed_by) or None)

    def alternatives(self, error: Any, path: Path) -> list[Issue]:
        code = "one_of" if error.validator == "oneOf" else "any_of"
        branches = error.validator_value
        instance = error.instance
        if all(isinstance(b, dict) and set(b) == {"required"} for b in branches):
            # "exactly one of these keys" (a secret's source).
            keys = [name for b in branches for name in b["required"]]
            present = [k for k in keys if isinstance(instance, dict) and k in instance]
            if not present:
                if path in self.unknown_key_paths:
                    return []  # the unknown key is the real problem, reported on its own
                message = f"expected one of the keys {_either(keys)} {_in(path)}"
            else:
                message = (
                    f"expected exactly one of the keys {_either(keys)} {_in(path)}, "
                    f"got {_either(present, 'and')}"
                )
            return [self.issue(code, message, path)]
        if not error.context:
            return [
                self.issue(code, f"the value {_in(path)} matches more than one allowed form", path)
            ]
        from jsonschema.exceptions import best_match

        # An alternative of another JSON type says little ("expected integer, got array");
        # prefer what went wrong inside an alternative of the right type.
        candidates = [
            sub
            for sub in error.context
            if not (sub.validator == "type" and len(sub.relative_path) == 0)
        ]
        best = best_match(candidates or error.context)
        sub = self.issues(best)
        detail = sub[0].message if sub else best.message
        sub_path = self.path(best)
        if sub_path != path:
            detail = f"{format_path(sub_path[len(path) :])}: {detail}"
        hint = sub[0].hint if sub else None
        return [self.issue(code, f"no allowed form matches; closest: {detail}", path, hint=hint)]


def _first_repeat(items: Any) -> Any:
    seen: list[Any] = []
    for item in items if isinstance(items, list) else ():
        if item in seen:
            return item
        seen.append(item)
    return None
