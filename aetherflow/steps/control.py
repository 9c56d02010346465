"""Control-flow built-ins: ``check_items``, ``debug``, ``noop``, ``wait``, ``wait_for_event``,
``with_lock``. They use only the public API (``aetherflow.api``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aetherflow import durations
from aetherflow.api import (
    STEP_SKIPPED,
    STEP_SUCCESS,
    STEP_WAITING,
    Event,
    Step,
    StepContext,
    StepError,
    StepResult,
    register_step,
)

_STEP_REF = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "inputs": {"type": "object"},
    },
    "required": ["type"],
    "additionalProperties": False,
}


@register_step(
    "check_items",
    inline=True,
    inputs_schema={
        "type": "object",
        "properties": {
            "items": {"description": "required: a list, or a comma-separated string (\"a, b,c\" is 3 items); "
                      "null means empty"},
            "min_count": {"type": "integer", "minimum": 0, "default": 1,
                          "description": "fewest items for SUCCESS; 0 lets an empty list succeed"},
        },
        "required": ["items"],
        "additionalProperties": False,
    },
)
class CheckItems(Step):
    """Probe: SUCCESS with count/items when there are at least min_count items, else SKIPPED.
    A string is split on commas like aetherflow-core does (blank parts dropped)."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        seq = _as_items(inputs.get("items"))
        min_count = int(inputs.get("min_count", 1))
        if len(seq) < min_count:
            reason = f"{len(seq)} item(s), fewer than {min_count}"
            outputs: dict[str, Any] = {"count": len(seq), "items": seq, "has_data": False, "reason": reason}
            return StepResult(STEP_SKIPPED, outputs, reason=reason)
        # as in aetherflow-core, has_data means "the probe passed" (also for 0 items with min_count: 0)
        return StepResult(STEP_SUCCESS, {"count": len(seq), "items": seq, "has_data": True})


def _as_items(items: Any) -> list[Any]:
    if items is None:
        return []
    if isinstance(items, str):
        return [part.strip() for part in items.split(",") if part.strip()]
    if isinstance(items, (Mapping, Sequence)):
        return list(items)
    return [items]


#: how many of the latest history lines `debug` with `show_history` puts in its outputs
HISTORY_OUTPUT_LINES = 200


@register_step(
    "debug",
    inputs_schema={"type": "object", "properties": {
        "message": {},
        "show_env": {"type": "boolean", "description": "also log the names of the environment variables"},
        "show_history": {"type": "boolean", "description": "also log the run's history so far, one line per event "
                                                          f"(the last {HISTORY_OUTPUT_LINES} lines in outputs.history)"},
    }},
)
class Debug(Step):
    """Log the inputs (and optionally env names, the run's history), with secrets masked; outputs echo the inputs."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        text = json.dumps(dict(inputs), default=str, ensure_ascii=False, sort_keys=True)
        ctx.log.info("debug: %s", text)
        if inputs.get("show_env"):
            ctx.log.info("debug env: %s", ", ".join(sorted(ctx.env)))
        outputs = {k: v for k, v in inputs.items() if k not in ("show_env", "show_history")}
        if inputs.get("show_history"):
            if ctx.history is None:
                raise StepError("the run's history is not available to this step", code="step.no_history")
            lines = [_history_line(ev) for ev in ctx.history()]
            for line in lines:
                ctx.log.info("debug history: %s", line)
            outputs["history"] = lines[-HISTORY_OUTPUT_LINES:]
            outputs["history_events"] = len(lines)
        return StepResult(STEP_SUCCESS, outputs)


def _history_line(ev: Event) -> str:
    """One event as ``runs show --history`` has it: name, job.step, #attempt, data."""
    where = ".".join(x for x in (ev.job_id, ev.step_id) if x)
    parts = [ev.name, where, f"#{ev.attempt}" if ev.attempt else ""]
    if ev.data:
        data = json.dumps(dict(ev.data), default=_plain, ensure_ascii=False, sort_keys=True)
        parts.append(data if len(data) <= 300 else data[:300] + "…")
    return " ".join(p for p in parts if p)


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else list(value) if isinstance(value, tuple) else str(value)


@register_step("noop", inputs_schema={"type": "object"}, inline=True)
class Noop(Step):
    """Do nothing, successfully; outputs are the inputs (benchmarks, placeholders)."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        return StepResult(STEP_SUCCESS, inputs)


def parse_duration(text: Any) -> float:
    """A ``wait``/``wait_for_event`` duration in seconds (the grammar of aetherflow.durations)."""
    seconds = durations.parse_duration(text)
    if seconds is None:
        raise StepError(f"invalid duration {text!r}: use {durations.EXAMPLES}", code="step.bad_duration")
    return seconds


def parse_until(text: Any) -> float:
    """A ``wait`` ``until:`` time in epoch seconds (aetherflow.durations.parse_time)."""
    due = durations.parse_time(text)
    if due is None:
        raise StepError(f"invalid until {text!r}: use ISO-8601, {durations.TIME_EXAMPLES}", code="step.bad_until")
    return due


def _sleep_inline(ctx: StepContext, seconds: float) -> None:
    if seconds > 0 and ctx.cancel.wait(seconds):
        raise StepError("wait interrupted", code="step.interrupted")


@register_step(
    "wait",
    outcomes=["elapsed"],
    waits=True,
    inputs_schema={
        "type": "object",
        "properties": {
            "seconds": {"type": "number", "minimum": 0},
            "duration": {"type": ["string", "number"]},
            "until": {"type": "string"},
        },
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
    },
)
class Wait(Step):
    """Wait for a duration or until a time. Short waits sleep in-process; longer ones park the
    run WAITING until `aetherflow resume --due` after the due time. Outcome `elapsed`."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        if ctx.wakeup and ctx.wakeup.get("kind") == "timer":
            return StepResult(STEP_SUCCESS, {"waited_until": ctx.wakeup.get("due_at")}, outcome="elapsed")
        now = ctx.clock()
        if "until" in inputs:
            due = parse_until(inputs["until"])
        else:
            due = now + parse_duration(inputs.get("seconds", inputs.get("duration", 0)))
        remaining = due - now
        if remaining <= ctx.inline_wait_max:
            _sleep_inline(ctx, remaining)
            return StepResult(STEP_SUCCESS, {"waited_until": due}, outcome="elapsed")
        return StepResult(STEP_WAITING, {"due_at": due}, due_at=due)


@register_step(
    "wait_for_event",
    outcomes=["timeout"],
    waits=True,
    outcomes_input="events",
    inputs_schema={
        "type": "object",
        "properties": {
            "events": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_.:-]*$"}, "minItems": 1},
            "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
            "timeout": {"type": ["string", "number"]},
        },
        "required": ["events"],
        "additionalProperties": False,
    },
)
class WaitForEvent(Step):
    """Pause the run until `aetherflow resume RUN --event NAME` delivers one of `events`
    (outcome NAME, the event data as outputs), or until the timeout fires (outcome `timeout`)."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        events = [str(e) for e in inputs["events"]]
        if ctx.wakeup and ctx.wakeup.get("kind") == "timer":
            return StepResult(STEP_SUCCESS, {"timed_out": True, "events": events}, outcome="timeout")
        timeout = inputs.get("timeout_seconds", inputs.get("timeout"))
        due = ctx.clock() + parse_duration(timeout) if timeout is not None else None
        return StepResult(STEP_WAITING, {"events": events}, events=events, due_at=due)


def _nested_specs(inputs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if "step" in inputs and "steps" in inputs:
        raise StepError("with_lock takes `step` or `steps`, not both", code="step.bad_inputs")
    if "step" in inputs:
        return [inputs["step"]]
    return list(inputs.get("steps") or [])


@register_step(
    "with_lock",
    inputs_schema={
        "type": "object",
        "properties": {
            "lock_key": {"type": "string", "minLength": 1},
            "step": _STEP_REF,
            "steps": {"type": "array", "items": _STEP_REF, "minItems": 1},
            "wait_seconds": {"type": "number", "minimum": 0},
            "ttl_seconds": {"type": "number", "description": "accepted for aetherflow-core compatibility; OS locks never expire under a live holder"},
        },
        "required": ["lock_key"],
        "additionalProperties": False,
        "oneOf": [{"required": ["step"]}, {"required": ["steps"]}],
    },
    nested=("step", "steps"),
)
class WithLock(Step):
    """Run one nested step (`step`) or several (`steps`) while holding the OS lock `lock_key`.
    Outputs are the (last) nested step's outputs plus `lock_key` and `lock_wait_seconds`."""

    @staticmethod
    def returns_at_once(inputs: Mapping[str, Any], in_job_thread: Callable[[str], bool]) -> bool:
        """The engine asks this (``engine/calls.py``): with these inputs nothing waits in a way
        a signal cannot stop, so the call may stay in the job's thread. True when the lock is
        not waited for (``wait_seconds`` 0, the default) and every nested step is of a type that
        may itself stay there (``in_job_thread(name)``: inline, or stopping by itself on a
        cancel, as ``external.process`` does)."""
        try:
            if float(inputs.get("wait_seconds") or 0) > 0:
                return False
            specs = _nested_specs(inputs)
        except (TypeError, ValueError, StepError):
            return False
        return bool(specs) and all(isinstance(s, Mapping) and in_job_thread(str(s.get("type"))) for s in specs)

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        if ctx.locks is None or ctx.invoke is None:
            raise StepError("with_lock needs the engine's lock service", code="step.no_lock_service")
        key = str(inputs["lock_key"])
        specs = _nested_specs(inputs)
        started = time.monotonic()
        lock = ctx.locks.acquire(key, float(inputs.get("wait_seconds", 0)))
        waited = time.monotonic() - started
        try:
            outputs: dict[str, Any] = {}
            status = STEP_SUCCESS
            per_step: dict[str, Any] = {}
            for i, spec in enumerate(specs):
                res = ctx.invoke(ctx, spec, i)
                if res.status == STEP_WAITING:
                    raise StepError("a step inside with_lock cannot wait", code="step.wait_in_lock")
                per_step[str(spec.get("id") or i)] = dict(res.outputs)
                outputs = dict(res.outputs)
                if res.status == STEP_SKIPPED:
                    status = STEP_SKIPPED
                    break
        finally:
            ctx.locks.release(lock)
        outputs.update({"lock_key": key, "lock_wait_seconds": round(waited, 3)})
        if len(specs) > 1:
            outputs["steps"] = per_step
        return StepResult(status, outputs)
