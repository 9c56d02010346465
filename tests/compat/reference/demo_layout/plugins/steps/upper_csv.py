from __future__ import annotations

from typing import Any, Dict

from aetherflow.core.api import Step, register_step
from textutil import upper_header


@register_step("upper_csv")
class UpperCsv(Step):
    """Copy a folder, upper-casing the header line of every CSV (aetherflow-core demo shape)."""

    required_inputs = {"src_dir", "dst_dir"}

    def run(self) -> Dict[str, Any]:
        self.validate()
        base = self.ctx.artifacts_dir(self.job_id)
        src = (base / self.inputs["src_dir"]).resolve()
        dst = (base / self.inputs["dst_dir"]).resolve()
        count = 0
        for path in sorted(src.rglob("*.csv")):
            out = dst / path.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(upper_header(path.read_text(encoding="utf-8")), encoding="utf-8")
            count += 1
        return {"dst_dir": str(dst), "converted": count}
