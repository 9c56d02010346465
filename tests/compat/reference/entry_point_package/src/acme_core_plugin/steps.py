from __future__ import annotations

from typing import Any, Dict

from aetherflow.core.api import STEP_SKIPPED, STEP_SUCCESS, Step, StepResult, register_step

__all__ = ["CountLetters", "Announce"]


@register_step("acme_count_letters")
class CountLetters(Step):
    required_inputs = {"text"}

    def run(self) -> Dict[str, Any]:
        self.validate()
        text = str(self.inputs["text"])
        if not text:
            return StepResult(STEP_SKIPPED, {"letters": 0}, "empty text")
        return StepResult(STEP_SUCCESS, {"letters": sum(c.isalpha() for c in text)})


@register_step("acme_announce")
class Announce(Step):
    def run(self, ctx, inputs):
        board = ctx.connectors[inputs["resource"]]
        board.post(inputs["message"])
        return StepResult(status=STEP_SUCCESS, outputs={"posted": board.count(), "channel": board.channel})
