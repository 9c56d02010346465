# StepResult built positionally, in aetherflow-core's argument order (status, output, reason),
# as its own check_items builds it by keyword
from typing import Any, Dict

from aetherflow.core.api import Step, StepResult, STEP_SKIPPED, STEP_SUCCESS, register_step


@register_step("gate_positional")
class GatePositional(Step):
    required_inputs = {"items"}

    def run(self) -> Dict[str, Any]:
        self.validate()
        items = self.inputs["items"]
        if not items:
            return StepResult(STEP_SKIPPED, {"has_data": False, "count": 0}, "nothing to do")
        return StepResult(STEP_SUCCESS, {"has_data": True, "count": len(items)}, "found items")
