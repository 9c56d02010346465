"""Path rules shared by the file-writing built-in steps (db_extract, http_request, mail_send,
zip, unzip).

A relative path is relative to the job's ``artifacts/`` directory; an absolute one is taken as
is. Either way the resolved path (symlinks followed) must lie inside the flow's workspace
directory ``<root>/<flow_id>/`` — so a job can read an upstream job's artifacts of the same
flow, but never a file outside it (``..``, absolute paths elsewhere, symlinks pointing out).
"""

from __future__ import annotations

from pathlib import Path

from aetherflow.api import StepContext, StepError, confine


def flow_area(ctx: StepContext) -> Path:
    """``<root>/<flow_id>/``: the job directory is ``<root>/<flow_id>/<job_id>/<run_id>/``."""
    return ctx.workspace.parent.parent


def workspace_path(ctx: StepContext, candidate: str, *, what: str) -> Path:
    """Resolve ``candidate`` (see module docstring) or fail with ``workspace.escape``."""
    if not str(candidate).strip():
        raise StepError(f"{what} is empty", code="step.bad_inputs")
    area = flow_area(ctx)
    try:
        return confine(area, ctx.artifacts_dir() / str(candidate))
    except StepError as exc:
        raise StepError(
            f"{what} '{candidate}' is outside the flow workspace {area.resolve()}",
            code="workspace.escape",
            hint="use a path relative to the job's artifacts directory (or another job's artifacts of this flow)",
        ) from exc

