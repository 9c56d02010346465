"""Semantic checks a schema cannot express, and the build of ``FlowSpec`` from validated data.

Checks (each an ``Issue`` with a stable code, all collected before raising once):
``flow.duplicate_job``, ``flow.duplicate_step``, ``flow.unknown_dependency``,
``flow.self_dependency``, ``flow.cycle`` (located at its first job in file order, the cycle
named), ``template.syntax``, ``template.unknown_root``, ``template.unknown_job``,
``template.unknown_step``, ``template.result_outside_outputs``, ``when.syntax``,
``when.unknown_root``. Registry-aware checks (step types, inputs, outcomes, waiting inside
``with_lock``) live in ``engine/preflight.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aetherflow import template
from aetherflow.errors import Issue, Location
from aetherflow.model import (
    FlowSpec,
    JobSpec,
    LocksSpec,
    NotifySpec,
    ParamSpec,
    ResourceSpec,
    RetrySpec,
    SecretSpec,
    StateSpec,
    StepSpec,
    UniqueSpec,
    WorkspaceSpec,
    freeze,
)

STEP_ROOTS = frozenset({"env", "params", "secrets", "steps", "jobs", "job", "run", "run_id", "flow_id", "workspace"})
OUTPUT_ROOTS = STEP_ROOTS | {"result"}
WHEN_ROOTS = frozenset({"env", "params", "secrets", "steps", "jobs", "job", "run", "run_id", "flow_id", "workspace"})
RESOURCE_ROOTS = frozenset({"env", "params", "secrets", "run", "run_id", "flow_id"})
PARAM_DEFAULT_ROOTS = frozenset({"env", "run"})
FLOW_SETTING_ROOTS = frozenset({"env", "params", "flow_id"})

Path_ = tuple[str | int, ...]


class _StepsBefore:
    """The ids of a job's steps before step ``index`` (plus ``also``), read from the live
    ``id -> first index`` map the builder fills: membership is O(1) and nothing is copied."""

    __slots__ = ("_also", "_first", "_index")

    def __init__(self, first: Mapping[str, int], index: int, also: str | None = None) -> None:
        self._first, self._index, self._also = first, index, also

    def __contains__(self, sid: object) -> bool:
        i = self._first.get(sid) if isinstance(sid, str) else None
        return (i is not None and i < self._index) or (sid is not None and sid == self._also)


class Builder:
    """Turns schema-valid data into a ``FlowSpec`` while collecting semantic issues."""

    def __init__(self, data: Mapping[str, Any], positions: Any, file: str) -> None:
        self.data = data
        self.pos = positions
        self.file = file
        self.text = ""  # the flow's source text, set by build(); used to place `when` errors
        self.issues: list[Issue] = []

    # helpers --------------------------------------------------------------------------------
    def loc(self, path: Path_) -> Location:
        loc: Location = self.pos.location(self.file, path)
        return loc

    def key_loc(self, path: Path_) -> Location:
        from aetherflow.errors import format_path

        line, col = self.pos.key(path)
        return Location(self.file, line, col, format_path(path))

    def issue(self, code: str, message: str, path: Path_, hint: str | None = None, *, key: bool = False) -> None:
        self.issues.append(Issue(code, message, self.key_loc(path) if key else self.loc(path), hint))

    # templates ------------------------------------------------------------------------------
    def check_templates(
        self,
        value: Any,
        path: Path_,
        roots: frozenset[str],
        *,
        earlier_steps: Container[str] | None = None,
        job_ids: frozenset[str] | None = None,
    ) -> None:
        for sub_path, text in _strings(value, path):
            if "{{" not in text:
                continue
            try:
                toks = list(template.tokens(text))
            except template.TemplateSyntaxError as exc:
                self.issue("template.syntax", f"{exc} in {text!r}", sub_path)
                continue
            for tok in toks:
                self._check_path(tok.path, sub_path, roots, earlier_steps, job_ids, "template")

    def _check_path(
        self,
        p: Sequence[str],
        where: Path_,
        roots: frozenset[str],
        earlier_steps: Container[str] | None,
        job_ids: frozenset[str] | None,
        kind: str,
    ) -> None:
        root = p[0]
        dotted = ".".join(p)
        if root not in roots:
            hint = None
            if root == "result":
                self.issue(f"{kind}.result_outside_outputs", f"'{dotted}': the 'result' root is only available in step outputs:", where)
                return
            import difflib

            close = difflib.get_close_matches(root, sorted(roots), n=1)
            if close:
                hint = f"did you mean '{close[0]}'?"
            self.issue(
                f"{kind}.unknown_root",
                f"unknown root '{root}' in '{dotted}' (allowed here: {', '.join(sorted(roots))})",
                where,
                hint,
            )
            return
        if root == "jobs" and job_ids is not None and len(p) > 1 and p[1] not in job_ids:
            self.issue(f"{kind}.unknown_job", f"'{dotted}' refers to job '{p[1]}', which this flow does not define", where)
        if root == "steps" and earlier_steps is not None and len(p) > 1 and p[1] not in earlier_steps:
            self.issue(
                f"{kind}.unknown_step",
                f"'{dotted}' refers to step '{p[1]}', which is not an earlier step of this job",
                where,
                "steps.<id> reads outputs of earlier steps of the same job; use jobs.<job>.outputs for other jobs",
            )

    def parse_when(
        self, value: Any, path: Path_, earlier_steps: Container[str] | None, job_ids: frozenset[str]
    ) -> Any:
        if value is None:
            return None
        from aetherflow import expressions  # only flows with `when` pay for the parser

        try:
            expr = expressions.parse_when(value)
        except expressions.ExpressionError as exc:
            line, col = self.pos.get(path)
            offset = getattr(exc, "offset", 0) or 0
            first = _char_at(self.text, line, col)
            if first in ("'", '"'):
                col += 1 + offset  # the expression starts after the opening quote
            elif first not in ("|", ">"):  # a block scalar's text starts on a later line
                col += offset
            loc = Location(self.file, line, col, self.loc(path).path)
            self.issues.append(Issue("when.syntax", f"invalid when expression {value!r}: {exc}", loc))
            return None
        for p in expressions.paths(expr):
            self._check_path(p, path, WHEN_ROOTS, earlier_steps, job_ids, "when")
        return expr

    # build ----------------------------------------------------------------------------------
    def build(self, *, text: str, base_dir: str, sha256: str) -> FlowSpec:
        self.text = text
        d = self.data
        f = d["flow"]
        jobs_data = d["jobs"]
        job_ids = frozenset(j["id"] for j in jobs_data)
        jobs = self.build_jobs(jobs_data, job_ids)
        self.check_graph(jobs_data)
        params = self.build_params(f.get("params") or {})
        secrets = {
            name: SecretSpec(name=name, source=freeze(src), location=self.loc(("secrets", name)))
            for name, src in (d.get("secrets") or {}).items()
        }
        resources = {}
        for name, r in (d.get("resources") or {}).items():
            path: Path_ = ("resources", name)
            self.check_templates(r.get("config") or {}, (*path, "config"), RESOURCE_ROOTS)
            self.check_templates(r.get("options") or {}, (*path, "options"), RESOURCE_ROOTS)
            resources[name] = ResourceSpec(
                name=name,
                kind=r["kind"],
                driver=r["driver"],
                profile=r.get("profile"),
                config=freeze(r.get("config") or {}),
                options=freeze(r.get("options") or {}),
                decode=freeze(r.get("decode") or {}),
                location=self.loc(path),
            )
        ws = f.get("workspace") or {}
        st = f.get("state") or {}
        self.check_templates(ws, ("flow", "workspace"), FLOW_SETTING_ROOTS)
        self.check_templates(st, ("flow", "state"), FLOW_SETTING_ROOTS)
        lk = f.get("locks") or {}
        un = f.get("unique")
        return FlowSpec(
            id=f["id"],
            jobs=jobs,
            file=self.file,
            base_dir=base_dir,
            sha256=sha256,
            text=text,
            description=f.get("description"),
            version=f.get("version"),
            tags=tuple(f.get("tags") or ()),
            metadata=freeze(f.get("metadata") or {}),
            params=freeze(params),
            env_files=tuple(f.get("env_files") or ()),
            profiles_file=f.get("profiles_file"),
            workspace=WorkspaceSpec(
                root=ws.get("root"), cleanup_policy=ws.get("cleanup_policy", "never"), layout=freeze(ws.get("layout") or {})
            ),
            state=StateSpec(backend=st.get("backend", "sqlite"), path=st.get("path")),
            locks=LocksSpec(
                scope=lk.get("scope", "none"), wait_seconds=float(lk.get("wait_seconds", 0)), ttl_seconds=lk.get("ttl_seconds")
            ),
            unique=UniqueSpec(key=un["key"], scope=un.get("scope", "flow")) if un else None,
            max_parallel_jobs=int(f.get("max_parallel_jobs", 1)),
            timeout_seconds=float(f["timeout_seconds"]) if f.get("timeout_seconds") is not None else None,
            notify=self.build_notify(f.get("notify") or (), resources),
            secrets=freeze(secrets),
            resources=freeze(resources),
            location=self.loc(("flow",)),
        )

    def build_notify(self, raw: Sequence[Mapping[str, Any]], resources: Mapping[str, ResourceSpec]) -> tuple[NotifySpec, ...]:
        """``flow.notify``: templates may read env, params and secrets; an email ``resource``
        names a ``mail`` resource of this flow."""
        out = []
        for i, item in enumerate(raw):
            path: Path_ = ("flow", "notify", i)
            self.check_templates(item, path, RESOURCE_ROOTS)
            res = (item.get("email") or {}).get("resource")
            if res is not None:
                found = resources.get(res)
                if found is None or found.kind != "mail":
                    mails = sorted(n for n, r in resources.items() if r.kind == "mail")
                    self.issue("flow.unknown_notify_resource",
                               f"notify email resource '{res}' is not a mail resource of this flow "
                               f"(mail resources: {', '.join(mails) or 'none'})", (*path, "email", "resource"))
            out.append(NotifySpec.from_data(item, f"{self.file}: flow.notify[{i}]"))
        return tuple(out)

    def build_params(self, raw: Mapping[str, Any]) -> dict[str, ParamSpec]:
        out: dict[str, ParamSpec] = {}
        for name, p in raw.items():
            path: Path_ = ("flow", "params", name)
            if "default" in p:
                self.check_templates(p["default"], (*path, "default"), PARAM_DEFAULT_ROOTS)
            choices = p.get("choices")
            out[name] = ParamSpec(
                name=name,
                type=p.get("type", "string"),
                default=freeze(p.get("default")),
                has_default="default" in p,
                required=bool(p.get("required", False)),
                description=p.get("description"),
                choices=tuple(choices) if choices is not None else None,
                location=self.loc(path),
            )
        return out

    def build_jobs(self, jobs_data: Sequence[Mapping[str, Any]], job_ids: frozenset[str]) -> tuple[JobSpec, ...]:
        seen_jobs: dict[str, int] = {}
        jobs: list[JobSpec] = []
        for ji, j in enumerate(jobs_data):
            jpath: Path_ = ("jobs", ji)
            jid = j["id"]
            if jid in seen_jobs:
                self.issue(
                    "flow.duplicate_job", f"job id '{jid}' is used twice (first at jobs[{seen_jobs[jid]}])", (*jpath, "id")
                )
            else:
                seen_jobs[jid] = ji
            for di, dep in enumerate(j.get("depends_on") or ()):
                if dep == jid:
                    self.issue("flow.self_dependency", f"job '{jid}' depends on itself", (*jpath, "depends_on", di))
                elif dep not in job_ids:
                    import difflib

                    close = difflib.get_close_matches(dep, sorted(job_ids), n=1)
                    self.issue(
                        "flow.unknown_dependency",
                        f"job '{jid}' depends on '{dep}', which this flow does not define",
                        (*jpath, "depends_on", di),
                        f"did you mean '{close[0]}'?" if close else None,
                    )
            steps = self.build_steps(j["steps"], jpath, job_ids)
            jobs.append(
                JobSpec(
                    id=jid,
                    steps=steps,
                    depends_on=tuple(j.get("depends_on") or ()),
                    depends_on_policy=j.get("depends_on_policy", "all_success"),
                    when=self.parse_when(j.get("when"), (*jpath, "when"), None, job_ids),
                    when_text=None if j.get("when") is None else str(j.get("when")),
                    description=j.get("description"),
                    location=self.loc(jpath),
                )
            )
        return tuple(jobs)

    def build_steps(self, steps_data: Sequence[Mapping[str, Any]], jpath: Path_, job_ids: frozenset[str]) -> tuple[StepSpec, ...]:
        seen: dict[str, int] = {}
        out: list[StepSpec] = []
        for si, s in enumerate(steps_data):
            spath: Path_ = (*jpath, "steps", si)
            sid = s["id"]
            if sid in seen:
                self.issue(
                    "flow.duplicate_step",
                    f"step id '{sid}' is used twice in this job (first at steps[{seen[sid]}])",
                    (*spath, "id"),
                )
            earlier = _StepsBefore(seen, si)  # O(1) membership, no copy per step (a job may have 10,000)
            seen.setdefault(sid, si)
            self.check_templates(s.get("inputs") or {}, (*spath, "inputs"), STEP_ROOTS, earlier_steps=earlier, job_ids=job_ids)
            self.check_templates(
                s.get("outputs") or {}, (*spath, "outputs"), OUTPUT_ROOTS, earlier_steps=_StepsBefore(seen, si, sid),
                job_ids=job_ids,
            )
            r = s.get("retry") or {}
            out.append(
                StepSpec(
                    id=sid,
                    type=s["type"],
                    inputs=freeze(s.get("inputs") or {}),
                    outputs=freeze(s.get("outputs") or {}),
                    when=self.parse_when(s.get("when"), (*spath, "when"), earlier, job_ids),
                    when_text=None if s.get("when") is None else str(s.get("when")),
                    on_no_data=s.get("on_no_data"),
                    on_outcome=freeze(s.get("on_outcome") or {}),
                    retry=RetrySpec.from_fields(r),
                    retry_fields=freeze(r),
                    timeout_seconds=s.get("timeout_seconds"),
                    description=s.get("description"),
                    location=self.loc(spath),
                )
            )
        return tuple(out)

    def check_graph(self, jobs_data: Sequence[Mapping[str, Any]]) -> None:
        """Report each dependency cycle once (``graphlib`` finds one; an edge of it is set aside
        and the search goes on), written from and located at its first job in file order."""
        from graphlib import CycleError, TopologicalSorter

        index = {j["id"]: i for i, j in enumerate(jobs_data)}
        deps = {j["id"]: {d for d in (j.get("depends_on") or ()) if d in index and d != j["id"]} for j in jobs_data}
        while True:
            try:
                TopologicalSorter(deps).prepare()
                return
            except CycleError as exc:
                # [a, b, ..., a], each node a dependency of the next; reversed, each depends on the next
                cycle: list[str] = list(reversed(exc.args[1][1:]))
            first = min(cycle, key=lambda n: index[n])
            k = cycle.index(first)
            ordered = cycle[k:] + cycle[:k] + [first]
            self.issue("flow.cycle", f"dependency cycle: {' -> '.join(ordered)}", ("jobs", index[first], "depends_on"))
            deps[ordered[0]].discard(ordered[1])


def _char_at(text: str, line: int, column: int) -> str:
    """The character at 1-based ``line``/``column`` of ``text``, or "" if there is none."""
    lines = text.split("\n", line)
    if line < 1 or column < 1 or len(lines) < line:
        return ""
    row = lines[line - 1]
    return row[column - 1] if column <= len(row) else ""


def _strings(value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def sha256_text(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def base_dir_of(path: str) -> str:
    return str(Path(path).resolve().parent)
