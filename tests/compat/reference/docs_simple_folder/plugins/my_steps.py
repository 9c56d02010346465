from aetherflow.core.api import register_step, Step, StepResult, STEP_SUCCESS

@register_step("my_step")
class MyStep(Step):
    def run(self, ctx, inputs):
        return StepResult(status=STEP_SUCCESS, outputs={"ok": True})
