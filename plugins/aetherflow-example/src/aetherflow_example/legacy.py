"""An aetherflow-core style step, kept to prove that such plugins load unchanged.

It uses the older shape: ``required_inputs``, a ``run(self)`` without parameters reading
``self.inputs`` and ``self.ctx``, and a plain dict as its return value (SUCCESS with those
outputs). New steps should take ``run(self, ctx, inputs)`` and return a ``StepResult``.
"""

from __future__ import annotations

from typing import Any

from aetherflow.core.api import Step, register_step


@register_step("example.greet")
class Greet(Step):
    """aetherflow-core style: run(self) without parameters, returns a dict."""

    required_inputs = {"name"}

    def run(self) -> dict[str, Any]:  # type: ignore[override]
        name = str(self.inputs["name"])
        return {"greeting": f"hello, {name}", "run_id": self.ctx.run_id}
