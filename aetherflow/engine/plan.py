"""Planning: job order, selection, and what a resume restores instead of running.

Resume is planning from stored state: a step recorded SUCCESS or SKIPPED becomes a *restored*
node whose outputs re-enter the template scope; it is not executed again. A job recorded SUCCESS
or SKIPPED is restored whole. ``--rerun job.step`` un-restores that step, every later step of its
job and every job downstream of it. Nothing in the step loop asks "are we resuming?".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aetherflow.errors import UsageError
from aetherflow.model import DONE_STEP_STATUSES, FlowSpec, JobStatus
from aetherflow.state.store import JobRecord, StepRecord


def topo_order(flow: FlowSpec) -> tuple[str, ...]:
    """Topological order of jobs (``graphlib``); among the jobs ready at once, file order first."""
    import heapq
    from graphlib import TopologicalSorter

    index = {j.id: i for i, j in enumerate(flow.jobs)}
    sorter: TopologicalSorter[str] = TopologicalSorter({j.id: j.depends_on for j in flow.jobs})
    sorter.prepare()  # the flow was validated: no cycle
    ready: list[tuple[int, str]] = []
    out: list[str] = []
    while sorter.is_active():
        for job_id in sorter.get_ready():
            heapq.heappush(ready, (index[job_id], job_id))
        _, job_id = heapq.heappop(ready)
        out.append(job_id)
        sorter.done(job_id)
    return tuple(out)


def downstream(flow: FlowSpec, roots: Iterable[str]) -> set[str]:
    children: dict[str, list[str]] = {j.id: [] for j in flow.jobs}
    for j in flow.jobs:
        for d in j.depends_on:
            children[d].append(j.id)
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        cur = stack.pop()
        for c in children.get(cur, ()):
            if c not in seen:
                seen.add(c)
                stack.append(c)
    return seen


def upstream(flow: FlowSpec, roots: Iterable[str]) -> set[str]:
    deps = {j.id: j.depends_on for j in flow.jobs}
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        cur = stack.pop()
        for d in deps.get(cur, ()):
            if d not in seen:
                seen.add(d)
                stack.append(d)
    return seen


def select_jobs(flow: FlowSpec, jobs: Sequence[str], with_upstream: bool) -> tuple[str, ...]:
    """The selected job ids (empty selection = every job)."""
    ids = [j.id for j in flow.jobs]
    if not jobs:
        return tuple(ids)
    unknown = [j for j in jobs if j not in ids]
    if unknown:
        raise UsageError(
            f"--job {', '.join(unknown)}: no such job in flow '{flow.id}' (jobs: {', '.join(ids)})", code="usage.unknown_job"
        )
    chosen = set(jobs)
    if with_upstream:
        chosen |= upstream(flow, jobs)
    return tuple(j for j in ids if j in chosen)


def parse_reruns(flow: FlowSpec, reruns: Sequence[str]) -> dict[str, str]:
    """``job.step`` strings → {job_id: step_id} (earliest step per job wins)."""
    out: dict[str, str] = {}
    for r in reruns:
        job_id, sep, step_id = r.partition(".")
        if not sep or not step_id:
            raise UsageError(f"--rerun {r!r}: expected JOB.STEP", code="usage.rerun")
        try:
            job = flow.job(job_id)
        except KeyError as exc:
            raise UsageError(f"--rerun {r!r}: no job '{job_id}' in flow '{flow.id}'", code="usage.rerun") from exc
        ids = [s.id for s in job.steps]
        if step_id not in ids:
            raise UsageError(f"--rerun {r!r}: job '{job_id}' has no step '{step_id}' (steps: {', '.join(ids)})", code="usage.rerun")
        prev = out.get(job_id)
        if prev is None or ids.index(step_id) < ids.index(prev):
            out[job_id] = step_id
    return out


@dataclass(slots=True)
class Plan:
    order: tuple[str, ...]
    selected: frozenset[str]
    #: jobs restored whole (stored SUCCESS/SKIPPED and not rerun)
    restored_jobs: dict[str, JobRecord] = field(default_factory=dict)
    #: steps restored (stored SUCCESS/SKIPPED and not rerun), by (job, step)
    restored_steps: dict[tuple[str, str], StepRecord] = field(default_factory=dict)
    #: every stored step (attempt numbers continue from here)
    stored_steps: dict[tuple[str, str], StepRecord] = field(default_factory=dict)
    #: stored job records (for --job: an unselected upstream recorded SUCCESS counts as met)
    stored_jobs: dict[str, JobRecord] = field(default_factory=dict)
    reset_steps: frozenset[tuple[str, str]] = frozenset()


def make_plan(
    flow: FlowSpec,
    *,
    selected: Sequence[str],
    stored_jobs: Mapping[str, JobRecord],
    stored_steps: Mapping[tuple[str, str], StepRecord],
    reruns: Mapping[str, str],
) -> Plan:
    order = topo_order(flow)
    reset: set[tuple[str, str]] = set()
    reset_jobs = downstream(flow, reruns)
    for job_id, step_id in reruns.items():
        job = flow.job(job_id)
        ids = [s.id for s in job.steps]
        for sid in ids[ids.index(step_id):]:
            reset.add((job_id, sid))
    for job_id in reset_jobs:
        for s in flow.job(job_id).steps:
            reset.add((job_id, s.id))
    touched_jobs = {j for j, _ in reset}
    plan = Plan(
        order=order,
        selected=frozenset(selected),
        stored_steps=dict(stored_steps),
        stored_jobs=dict(stored_jobs),
        reset_steps=frozenset(reset),
    )
    for job_id, rec in stored_jobs.items():
        if job_id in touched_jobs:
            continue
        if rec.status in (JobStatus.SUCCESS, JobStatus.SKIPPED):
            plan.restored_jobs[job_id] = rec
    for key, srec in stored_steps.items():
        if key in reset:
            continue
        if srec.status in DONE_STEP_STATUSES:
            plan.restored_steps[key] = srec
    return plan


def describe(plan: Plan, flow: FlowSpec) -> list[dict[str, object]]:
    """The plan as rows for ``--dry-run``: every job and step with what would happen."""
    rows: list[dict[str, object]] = []
    for job_id in plan.order:
        job = flow.job(job_id)
        unmet = [d for d in job.depends_on if d not in plan.selected
                 and not (d in plan.stored_jobs and plan.stored_jobs[d].status == JobStatus.SUCCESS)]
        if job_id not in plan.selected:
            action = "not selected"
        elif job_id in plan.restored_jobs:
            action = f"restore ({plan.restored_jobs[job_id].status})"
        elif unmet:
            action = f"blocked (upstream {', '.join(unmet)} not selected and not succeeded in this run)"
        else:
            action = "run"
        steps = []
        for s in job.steps:
            rec = plan.restored_steps.get((job_id, s.id))
            if action != "run":
                sa = action
            elif rec is not None:
                sa = f"restore ({rec.status})"
            else:
                sa = "run"
            steps.append({"id": s.id, "type": s.type, "action": sa})
        rows.append({"job": job_id, "depends_on": list(job.depends_on), "action": action, "steps": steps})
    return rows
