from __future__ import annotations

import zipfile
from typing import Any, Dict

from aetherflow.core.api import Step, register_step


@register_step("make_inbox")
class MakeInbox(Step):
    """Write one zip with a CSV in it under the job's artifacts (aetherflow-core demo shape)."""

    required_inputs = {"folder", "archive"}

    def run(self) -> Dict[str, Any]:
        self.validate()
        base = self.ctx.artifacts_dir(self.job_id)
        folder = (base / self.inputs["folder"]).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / self.inputs["archive"]
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("people.csv", "name,city\nada,london\nalan,wilmslow\n")
        return {"archive_path": str(target)}
