# the shape of aetherflow-core's docs/18-plugins.md "simple folder" example: run(self, ctx, inputs)
# returning StepResult(status=..., outputs=...)
from aetherflow.core.api import register_step, Step, StepResult, STEP_SUCCESS

@register_step("hello_step")
class HelloStep(Step):
    def run(self, ctx, inputs):
        return StepResult(status=STEP_SUCCESS, outputs={"greeting": "hello", "flow": ctx.flow_id})
