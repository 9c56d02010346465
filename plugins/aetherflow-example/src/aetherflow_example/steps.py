"""Steps of the example plugin, written the way any plugin author would: public API only.

* ``example.kv_put``  upsert a JSON value under a key (idempotent: a re-run writes the same row);
* ``example.kv_get``  read a key; a missing key is a failure unless ``default`` is given;
* ``example.kv_scan`` list the keys under a prefix and export them atomically to the job's
  artifacts; SKIPPED with a reason when there are none (the probe pattern, ``on_no_data``);
* ``example.classify`` compare a number with a threshold; outcome ``small`` or ``large``
  (route it with ``on_outcome``).

Every step reaches the store through ``ctx.connectors[inputs["resource"]]``: no step opens a
driver itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aetherflow.core.api import (
    STEP_SKIPPED,
    STEP_SUCCESS,
    Step,
    StepContext,
    StepError,
    StepResult,
    atomic_write,
    register_step,
)
from aetherflow_example.kv import MISSING

_RESOURCE = {"type": "string", "minLength": 1, "default": "kv", "description": "resource name of a kv:sqlite connector"}
_KEY = {"type": "string", "minLength": 1}


def _store(ctx: StepContext, inputs: Mapping[str, Any]) -> Any:
    return ctx.connectors[str(inputs.get("resource", "kv"))]


@register_step(
    "example.kv_put",
    inputs_schema={
        "type": "object",
        "properties": {"resource": _RESOURCE, "key": _KEY, "value": {"description": "any JSON value"}},
        "required": ["key", "value"],
        "additionalProperties": False,
    },
)
class KvPut(Step):
    """Store a JSON value under a key in a kv:sqlite resource (upsert, safe to re-run)."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        key = str(inputs["key"])
        changed = _store(ctx, inputs).put(key, inputs["value"], written_by=ctx.idempotency_key)
        ctx.log.info("kv_put %s (%s)", key, "written" if changed else "unchanged")
        return StepResult(STEP_SUCCESS, {"key": key, "changed": changed})


@register_step(
    "example.kv_get",
    inputs_schema={
        "type": "object",
        "properties": {"resource": _RESOURCE, "key": _KEY, "default": {"description": "value for a missing key"}},
        "required": ["key"],
        "additionalProperties": False,
    },
)
class KvGet(Step):
    """Read a key from a kv:sqlite resource; a missing key fails unless `default` is given."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        key = str(inputs["key"])
        value = _store(ctx, inputs).get(key)
        found = value is not MISSING
        if not found:
            if "default" not in inputs:
                raise StepError(f"key '{key}' is not in resource '{inputs.get('resource', 'kv')}'", code="example.key_missing")
            value = inputs["default"]
        return StepResult(STEP_SUCCESS, {"key": key, "value": value, "found": found})


@register_step(
    "example.kv_scan",
    inputs_schema={
        "type": "object",
        "properties": {"resource": _RESOURCE, "prefix": {"type": "string", "default": ""}},
        "additionalProperties": False,
    },
)
class KvScan(Step):
    """List the keys under a prefix and export them to artifacts/; SKIPPED when there are none."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        prefix = str(inputs.get("prefix", ""))
        items = _store(ctx, inputs).scan(prefix)
        if not items:
            reason = f"no keys under prefix '{prefix}'"
            return StepResult(STEP_SKIPPED, {"count": 0, "keys": [], "has_data": False, "path": None, "reason": reason}, reason=reason)
        # the export is written atomically: a reader (or a resumed run) never sees half a file
        path = ctx.workspace / "artifacts" / f"{ctx.step_id}.json"
        atomic_write(path, json.dumps(items, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return StepResult(STEP_SUCCESS, {"count": len(items), "keys": sorted(items), "has_data": True, "path": str(path)})


@register_step(
    "example.classify",
    inputs_schema={
        "type": "object",
        "properties": {"value": {"type": "number"}, "threshold": {"type": "number", "default": 100}},
        "required": ["value"],
        "additionalProperties": False,
    },
    outcomes=["small", "large"],
)
class Classify(Step):
    """Outcome `small` when value < threshold, else `large` (route it with on_outcome)."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        value = _number(inputs.get("value"), "value")
        threshold = _number(inputs.get("threshold", 100), "threshold")
        size = "small" if value < threshold else "large"
        return StepResult(STEP_SUCCESS, {"value": value, "threshold": threshold, "size": size}, outcome=size)


def _number(raw: Any, name: str) -> int | float:
    if isinstance(raw, bool):
        raise StepError(f"input '{name}' must be a number, got a boolean", code="example.not_a_number")
    if isinstance(raw, (int, float)):
        return raw
    try:
        return float(raw)
    except (TypeError, ValueError) as exc:
        raise StepError(f"input '{name}' must be a number, got {raw!r}", code="example.not_a_number") from exc
