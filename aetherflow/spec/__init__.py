"""Flow specification: strict YAML (loader.py), JSON Schema (schema.py), semantic checks and the
``FlowSpec`` build (semantic.py). ``load_flow`` runs them in that order and raises one
``SpecError`` carrying every issue found."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aetherflow.errors import Issue, Location, SpecError
from aetherflow.model import FlowSpec

if TYPE_CHECKING:
    from aetherflow.spec.schema import SchemaValidator


@dataclass(frozen=True, slots=True)
class LoadedFlow:
    """A flow and what was needed to build it (positions, for registry-aware checks)."""

    flow: FlowSpec
    data: Any
    positions: Any


def shipped_schema_file(name: str) -> Any:
    """Where the shipped schema ``<name>.schema.json`` is: the package data (``aetherflow/schemas``
    in a wheel), else the repository's ``schemas/`` directory (editable installs); ``None``.
    A package on the filesystem is looked at directly; ``importlib.resources`` (about 5 ms to
    import) only when aetherflow is loaded from elsewhere, such as a zip file."""
    filename = f"{name}.schema.json"
    here = Path(__file__).resolve().parents[1]  # the aetherflow package directory
    candidates: list[Any] = [here / "schemas" / filename, here.parent / "schemas" / filename]
    if not here.is_dir():
        from importlib import resources

        candidates.insert(0, resources.files("aetherflow") / "schemas" / filename)
    for candidate in candidates:
        try:
            if candidate.is_file():
                return candidate
        except OSError:
            return None
    return None


def read_flow_bytes(path: str) -> bytes:
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError as exc:
        raise SpecError([Issue("flow.not_found", f"flow file {path} does not exist", Location(path, None, None))]) from exc
    except IsADirectoryError as exc:
        raise SpecError([Issue("flow.not_found", f"{path} is a directory, not a flow file", Location(path, None, None))]) from exc
    except OSError as exc:
        raise SpecError([Issue("flow.unreadable", f"cannot read {path}: {exc.strerror}", Location(path, None, None))]) from exc


def load_flow(
    path: str,
    *,
    raw: bytes | None = None,
    validator: SchemaValidator | None = None,
    parsed: tuple[Any, Any] | None = None,
) -> LoadedFlow:
    """Load, schema-check and build a flow. ``validator``: the flow schema's validator to reuse.
    ``parsed``: the ``(data, positions)`` ``load_yaml`` returned for these exact bytes, known to
    pass the shipped flow schema (the validation cache, ``spec/cache.py``): neither the YAML
    parse nor the schema check runs (nor are yaml and jsonschema imported); the flow is still
    built and semantically checked."""
    from aetherflow.spec.semantic import Builder, base_dir_of, sha256_text

    if raw is None:
        raw = read_flow_bytes(path)
    references: list[Issue] = []
    if parsed is not None:  # known valid: the reference checks found nothing in these bytes
        data, positions = parsed
    else:
        from aetherflow.spec.loader import load_yaml
        from aetherflow.spec.references import reference_issues

        data, positions = load_yaml(raw, path)
        if validator is None:
            from aetherflow.spec.schema import SchemaValidator, load_schema

            # our own shipped schema: its meta-validation (tests do it) would cost ~20 ms per run
            validator = SchemaValidator(load_schema("flow"), check=False)
        issues = validator.validate(data, file=path, positions=positions)
        references = reference_issues(data, positions, path)  # reported with schema problems too
        if issues:
            raise SpecError(sorted([*issues, *references], key=_issue_order), file=path)
    builder = Builder(data, positions, path)
    text = raw.decode("utf-8")
    flow = builder.build(text=text, base_dir=base_dir_of(path), sha256=sha256_text(raw))
    loaded = LoadedFlow(flow, data, positions)
    if builder.issues or references:
        exc = SpecError(sorted([*builder.issues, *references], key=_issue_order), file=path)
        exc.partial = loaded  # type: ignore[attr-defined]  # lets registry checks add their issues
        raise exc
    return loaded


def sort_issues(issues: list[Issue]) -> list[Issue]:
    return sorted(issues, key=_issue_order)


def _issue_order(i: Issue) -> tuple[int, int]:
    loc = i.location
    return (loc.line or 0, loc.column or 0) if loc else (0, 0)
