"""How the SQL backends turn records into rows and back, so that every backend stores the same
text and reads back the same records: the run columns, JSON text of mappings and lists, frozen
mappings read back, LIKE patterns for id prefixes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aetherflow.errors import StateError
from aetherflow.model import KEY_SEPARATOR, freeze
from aetherflow.state.store import RunRecord

__all__ = [
    "FENCED_HINT",
    "LIGHT_RUN_COLUMNS",
    "RUN_COLUMNS",
    "RUN_JSON",
    "dumps",
    "fenced",
    "key_value",
    "like_prefix",
    "load_map",
    "run_from_row",
]

RUN_COLUMNS = (
    "run_id flow_id flow_file flow_sha256 flow_text flow_version params business_key key_scope status pid host "
    "created_at started_at updated_at finished_at attempt plugin_paths selected_jobs error "
    "workspace_root cancel_reason due_at profile tags flow_metadata meta runtime_metadata"
).split()
#: run columns stored as JSON text, and the type each is read back as
RUN_JSON: Mapping[str, type] = {"params": dict, "plugin_paths": tuple, "selected_jobs": tuple, "tags": tuple,
                                "flow_metadata": dict, "meta": dict, "runtime_metadata": dict}
#: every run column but the flow text (lists of runs do not need it)
LIGHT_RUN_COLUMNS = [c for c in RUN_COLUMNS if c != "flow_text"]

_EMPTY_MAP = freeze({})


def dumps(value: Any) -> str:
    """Compact, key-sorted JSON of plain or frozen data (read-only mappings are written as
    objects, tuples as arrays) without thawing it first; anything else JSON lacks as ``str``."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default, sort_keys=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (``ESCAPE '\\'``) matching what starts with ``prefix``."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def load_map(text: str | None) -> Any:
    """A stored JSON object, frozen; the common empty one without parsing (10,000 steps on resume)."""
    return _EMPTY_MAP if not text or text == "{}" else freeze(json.loads(text))


def run_from_row(row: Sequence[Any], cols: Sequence[str]) -> RunRecord:
    d: dict[str, Any] = {}
    for c, v in zip(cols, row, strict=True):
        conv = RUN_JSON.get(c)
        if conv is not None:
            v = json.loads(v) if v else conv()
            v = freeze(v) if conv is dict else tuple(v)
        d[c] = v
    return RunRecord(**d)


def key_value(business_key: str | None) -> str | None:
    """The VALUE of a ``NAME::VALUE`` business key (indexed, for lookups by value)."""
    if business_key is None or KEY_SEPARATOR not in business_key:
        return None
    return business_key.split(KEY_SEPARATOR, 1)[1]


#: what a process refused a write by fencing does (the engine stops the run's steps)
FENCED_HINT = "this process stops; the run continues where the other executor records it"


def fenced(run_id: str, current: int | None, mine: int) -> StateError:
    """The refusal of a write whose executor's generation of the run is no longer current."""
    return StateError(
        f"run {run_id} was taken over by another executor (generation {'none' if current is None else current}; "
        f"this process has {mine}): this write was refused",
        code="state.fenced",
        hint=FENCED_HINT,
    )
