from aetherflow.core.api import register_step, Step, StepResult, STEP_SUCCESS, STEP_SKIPPED

@register_step("my_step")
class MyStep(Step):
    def run(self, ctx, inputs):
        # ctx.env -> immutable environment snapshot
        # ctx.connectors -> resolved connectors

        value = inputs.get("value")

        if not value:
            return StepResult(status=STEP_SKIPPED, outputs={"reason": "empty"})

        # deterministic work here
        return StepResult(status=STEP_SUCCESS, outputs={"echo": value})
