"""Small pure helpers of the executor: retry delays, step results, restored outputs, texts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aetherflow.errors import AetherflowError
from aetherflow.model import MASKED_KEYS_FIELD, Masked, RetrySpec, StepResult
from aetherflow.state.store import JobRecord, StepRecord, WaitRecord


def backoff_delay(retry: RetrySpec, attempt: int, rng: Callable[[], float] | None = None) -> float:
    """Delay before attempt ``attempt + 1``. Jitter keeps 50-100 % of the computed delay
    (``rng`` default ``random.random``, imported only when a step is retried)."""
    base = retry.initial_delay_seconds
    if retry.backoff == "exponential":
        delay = base * 2.0 ** (attempt - 1)
    elif retry.backoff == "linear":
        delay = base * attempt
    else:
        delay = base
    delay = min(delay, retry.max_delay_seconds)
    if retry.jitter and delay > 0:
        if rng is None:
            import random

            rng = random.random
        delay *= 0.5 + rng() / 2
    return delay


def reason_of(res: StepResult, outputs: Mapping[str, Any]) -> str | None:
    """``StepResult.reason``, else ``outputs["reason"]`` (the aetherflow-core convention)."""
    if res.reason:
        return res.reason
    r = outputs.get("reason")
    return r if isinstance(r, str) else None


def normalize_result(value: Any) -> Any:
    if isinstance(value, StepResult):
        return value
    if value is None:
        return StepResult("SUCCESS", {})
    if isinstance(value, Mapping):  # aetherflow-core: a plain dict means SUCCESS
        return StepResult("SUCCESS", dict(value))
    return value


def error_text(exc: BaseException) -> str:
    if isinstance(exc, AetherflowError):
        return exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def restore_job_outputs(rec: JobRecord) -> dict[str, Any]:
    """Stored job outputs; values that carried a secret become ``Masked``."""
    outs = dict(rec.outputs)
    for k in outs.pop(MASKED_KEYS_FIELD, ()):
        outs[k] = Masked(f"jobs.{rec.job_id}.outputs.{k}")
    return outs


def restore_outputs(rec: StepRecord) -> dict[str, Any]:
    outs = dict(rec.outputs)
    for k in rec.masked_keys:
        outs[k] = Masked(f"{rec.job_id}.{rec.step_id}.{k}")
    return outs


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def wait_text(w: WaitRecord) -> str:
    parts = []
    if w.events:
        parts.append("event " + " or ".join(w.events))
    if w.due_at is not None:
        parts.append(("retry at " if w.kind == "retry" else "timer due ") + iso(w.due_at))
    return ", ".join(parts) or "nothing"
