# the shape of aetherflow-core's docs/18-plugins.md step template: SKIPPED with a reason in
# outputs when there is nothing to do, SUCCESS with outputs otherwise
from aetherflow.core.api import register_step, Step, StepResult, STEP_SUCCESS, STEP_SKIPPED

@register_step("repeat_value")
class RepeatValue(Step):
    def run(self, ctx, inputs):
        text = inputs.get("value")
        if not text:
            return StepResult(status=STEP_SKIPPED, outputs={"reason": "no value given"})
        return StepResult(status=STEP_SUCCESS, outputs={"echo": text * 2})
