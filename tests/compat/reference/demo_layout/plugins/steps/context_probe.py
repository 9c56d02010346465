from __future__ import annotations

from typing import Any, Dict

from aetherflow.core.api import RunContext, Settings, Step, StepResult, STEP_SUCCESS, register_step


@register_step("context_probe")
class ContextProbe(Step):
    """Reads what aetherflow-core's RunContext offered: settings, resources, another job's
    artifacts, named locks; and what it does not give (state)."""

    def run(self) -> StepResult:
        ctx: RunContext = self.ctx
        settings: Settings = ctx.settings
        upstream = ctx.artifacts_dir(self.inputs["upstream_job"])
        mail = ctx.resources["mail_dummy"]
        first = ctx.acquire_lock("demo-probe", ttl_seconds=60)
        again = ctx.acquire_lock("demo-probe", ttl_seconds=60)
        ctx.release_lock("demo-probe")
        ctx.acquire_lock("left-held", ttl_seconds=60)  # released by the engine when the step ends
        try:
            ctx.state
            state = "given"
        except Exception as exc:
            state = f"{type(exc).__name__}: {exc}"
        sender = ctx.connectors.mail("mail_dummy")
        sender.send(["ops@example.com"], "probe", "body")
        return StepResult(STEP_SUCCESS, {
            "work_root": settings.work_root,
            "plugin_strict": settings.plugin_strict,
            "upstream_files": sorted(p.name for p in upstream.iterdir()),
            "mail_kind": mail["kind"],
            "mail_auth": mail["config"]["headers"]["Authorization"] == "Bearer demo-token",
            "locks": [first, again],
            "state": state,
            "sent": len(sender.sent),
        })
