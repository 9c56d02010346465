"""The public API for step and connector authors. Its names are frozen by a test.

```python
from aetherflow.api import Step, StepResult, STEP_SUCCESS, STEP_SKIPPED, register_step

@register_step("count_rows", inputs_schema={"type": "object", "required": ["table"]})
class CountRows(Step):
    def run(self, ctx, inputs):
        return StepResult(STEP_SUCCESS, {"rows": 42})
```

``aetherflow.core.api`` re-exports the same objects for plugins written against aetherflow-core.
Everything not listed in ``__all__`` is internal and may change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aetherflow.context import CancelToken, StepContext
from aetherflow.errors import AetherflowError, ConnectorError, StepError, StepTimeoutError
from aetherflow.events import Event, Observer, register_observer
from aetherflow.model import STEP_SKIPPED, STEP_SUCCESS, STEP_WAITING, StepResult
from aetherflow.registry import register_connector, register_decoder, register_step
from aetherflow.workspace import atomic_open, atomic_write, confine

__all__ = [
    "STEP_SKIPPED",
    "STEP_SUCCESS",
    "STEP_WAITING",
    "AetherflowError",
    "CancelToken",
    "Connector",
    "ConnectorError",
    "Event",
    "Observer",
    "Step",
    "StepContext",
    "StepError",
    "StepResult",
    "StepTimeoutError",
    "atomic_open",
    "atomic_write",
    "confine",
    "register_connector",
    "register_decoder",
    "register_observer",
    "register_step",
]


class Step:
    """Base class of every step type.

    Override ``run(self, ctx, inputs) -> StepResult``. For aetherflow-core compatibility a
    ``run(self)`` without parameters is supported too: ``self.ctx`` and ``self.inputs`` are set,
    and a plain dict return value means SUCCESS with that dict as outputs.
    """

    #: aetherflow-core compatibility: names that must be present in inputs
    required_inputs: frozenset[str] | set[str] = frozenset()

    def __init__(self, step_id: str, inputs: Mapping[str, Any], ctx: StepContext, job_id: str) -> None:
        self.id = step_id
        self.inputs = inputs
        self.ctx = ctx
        self.job_id = job_id

    def validate(self) -> None:
        """Check ``required_inputs`` (more checks belong in ``inputs_schema``)."""
        missing = sorted(k for k in self.required_inputs if k not in self.inputs)
        if missing:
            raise StepError(f"step '{self.id}' is missing inputs: {', '.join(missing)}", code="step.missing_inputs")

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:  # pragma: no cover
        raise NotImplementedError


class Connector:
    """Base class of connectors. Built lazily from a resolved resource on first use.

    ``name`` is the resource name, ``config`` and ``options`` its resolved (merged, templated,
    decoded) settings. Override ``close()`` to release what the connector opened.
    """

    def __init__(self, name: str, config: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        self.name = name
        self.config = config
        self.options = options

    def close(self) -> None:
        """Release resources. Called once at run end; an exception here is only a warning."""
