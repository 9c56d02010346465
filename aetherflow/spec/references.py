"""Checks of what a flow refers to by name, made on the parsed YAML whatever its shape, so that
they are reported together with schema problems (every problem at once).

* ``template.unknown_param`` / ``when.unknown_param`` — ``params.X`` where the flow declares no
  parameter ``X`` (in step inputs and outputs, resources, ``flow.workspace``, ``flow.state`` and
  ``when``; a template with a ``:DEFAULT`` renders its default and is not reported);
* ``template.unknown_secret`` / ``when.unknown_secret`` — ``secrets.X`` where ``secrets:``
  declares no ``X`` (in step inputs and outputs, resources and ``when``; likewise);
* ``flow.unknown_resource`` — a step's ``resource:`` input (and the aetherflow-core
  ``connector:`` of ``zip`` / ``unzip``), written as a plain name, that ``resources:`` does not
  declare; steps nested in ``with_lock`` included.

:func:`missing_env_issues` finds ``{{ env.X }}`` templates without a default whose variable is
not in an env snapshot (``template.missing_env``): ``run`` refuses such a flow before anything
runs, ``doctor`` reports it, ``validate`` prints it as a warning (CI validates without the
production environment).

Everything here reads plain parsed data (dicts, lists, strings) and skips what is not of the
expected shape: the schema check reports that.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping, Sequence
from typing import Any

from aetherflow import template
from aetherflow.errors import Issue, Location, format_path

__all__ = ["missing_env", "missing_env_issues", "reference_issues"]

Path_ = tuple[str | int, ...]

_LOCK_STEP = "with_lock"
_CONNECTOR_INPUT_TYPES = frozenset({"zip", "unzip"})  # their aetherflow-core name of `resource`


def reference_issues(data: Any, positions: Any, file: str) -> list[Issue]:
    """Undeclared ``params.X`` / ``secrets.X`` and unknown resource names in ``data``."""
    if not isinstance(data, Mapping):
        return []
    flow = data.get("flow")
    flow = flow if isinstance(flow, Mapping) else {}
    params = _names(flow.get("params"))
    secrets = _names(data.get("secrets"))
    resources = _names(data.get("resources"))
    checker = _Checker(positions, file, params, secrets)
    out = checker.issues
    raw_resources = data.get("resources")
    if isinstance(raw_resources, Mapping):
        for name, r in raw_resources.items():
            if isinstance(r, Mapping):
                for part in ("config", "options"):
                    checker.templates(r.get(part), ("resources", name, part), secrets=True)
    checker.templates(flow.get("workspace"), ("flow", "workspace"), secrets=False)
    checker.templates(flow.get("state"), ("flow", "state"), secrets=False)
    for jpath, job in _jobs(data):
        checker.when(job.get("when"), (*jpath, "when"))
        for spath, step in _steps(job, jpath):
            checker.when(step.get("when"), (*spath, "when"))
            checker.templates(step.get("inputs"), (*spath, "inputs"), secrets=True)
            checker.templates(step.get("outputs"), (*spath, "outputs"), secrets=True)
            for rpath, step_def in _with_nested(step, spath):
                _check_resource(step_def, rpath, resources, positions, file, out)
    return out


def missing_env(
    data: Any,
    positions: Any,
    file: str,
    env: Mapping[str, str],
    *,
    jobs: Container[str] | None = None,
    skip_params: Container[str] = (),
    settings: bool = True,
) -> list[tuple[str, Location]]:
    """``(VARIABLE, where)`` of every ``{{ env.VARIABLE }}`` template without a default whose
    variable is not in ``env``: in step inputs and outputs (of ``jobs`` only, when given),
    resources, the defaults of parameters (except ``skip_params``, given a value) and, with
    ``settings``, ``flow.workspace`` and ``flow.state``."""
    if not isinstance(data, Mapping):
        return []
    flow = data.get("flow")
    flow = flow if isinstance(flow, Mapping) else {}
    places: list[tuple[Any, Path_]] = []
    if isinstance(flow.get("params"), Mapping):
        for name, p in flow["params"].items():
            if isinstance(p, Mapping) and "default" in p and name not in skip_params:
                places.append((p["default"], ("flow", "params", name, "default")))
    if settings:
        places.append((flow.get("workspace"), ("flow", "workspace")))
        places.append((flow.get("state"), ("flow", "state")))
    raw_resources = data.get("resources")
    if isinstance(raw_resources, Mapping):
        for name, r in raw_resources.items():
            if isinstance(r, Mapping):
                places.append((r.get("config"), ("resources", name, "config")))
                places.append((r.get("options"), ("resources", name, "options")))
    for jpath, job in _jobs(data):
        if jobs is not None and job.get("id") not in jobs:
            continue
        for spath, step in _steps(job, jpath):
            places.append((step.get("inputs"), (*spath, "inputs")))
            places.append((step.get("outputs"), (*spath, "outputs")))
    out: list[tuple[str, Location]] = []
    for value, path in places:
        for sub, text in _strings(value, path, ("env.",)):
            for tok in _tokens(text):
                if tok.path[0] == "env" and len(tok.path) == 2 and tok.default is None and tok.path[1] not in env:
                    out.append((tok.path[1], _loc(positions, file, sub)))
    return out


def missing_env_issues(
    data: Any,
    positions: Any,
    file: str,
    env: Mapping[str, str],
    *,
    jobs: Container[str] | None = None,
    skip_params: Container[str] = (),
    settings: bool = True,
) -> list[Issue]:
    """:func:`missing_env` as ``template.missing_env`` issues, one per place."""
    return [
        Issue(
            "template.missing_env",
            f"environment variable '{var}' is not set, and '{{{{ env.{var} }}}}' has no default",
            loc,
            template.missing_env_hint(var),
        )
        for var, loc in missing_env(data, positions, file, env, jobs=jobs, skip_params=skip_params, settings=settings)
    ]


# ---------------------------------------------------------------------------------------------


class _Checker:
    def __init__(self, positions: Any, file: str, params: frozenset[str] | None, secrets: frozenset[str] | None) -> None:
        self.positions = positions
        self.file = file
        self.params = params
        self.secrets = secrets
        self.issues: list[Issue] = []

    def templates(self, value: Any, path: Path_, *, secrets: bool) -> None:
        for sub, text in _strings(value, path, ("params.", "secrets.")):
            for tok in _tokens(text):
                if tok.default is None:  # with a default it renders that: not an error
                    self.path(tok.path, sub, "template", secrets=secrets)

    def when(self, value: Any, path: Path_) -> None:
        if not isinstance(value, str) or ("params." not in value and "secrets." not in value):
            return
        from aetherflow import expressions

        try:
            expr = expressions.parse_when(value)
        except expressions.ExpressionError:
            return  # when.syntax, reported by the semantic checks
        for p in expressions.paths(expr):
            self.path(p, path, "when", secrets=True)

    def path(self, p: Sequence[str], where: Path_, kind: str, *, secrets: bool) -> None:
        if len(p) < 2:
            return
        root, name = p[0], p[1]
        if root == "params" and self.params is not None and name not in self.params:
            declared = self.params
            code = "template.unknown_param" if kind == "template" else "when.unknown_param"
            what, fix = "parameter", f"declare it under flow.params, e.g. '{name}: {{type: string}}', or use a declared one"
        elif root == "secrets" and secrets and self.secrets is not None and name not in self.secrets:
            declared = self.secrets
            code = "template.unknown_secret" if kind == "template" else "when.unknown_secret"
            what, fix = "secret", f"declare it under secrets:, e.g. '{name}: {{env: VARIABLE}}', or use a declared one"
        else:
            return
        listed = ", ".join(sorted(declared)) if declared else "none"
        self.issues.append(Issue(
            code,
            f"'{'.'.join(p)}' refers to {what} '{name}', which this flow does not declare (declared: {listed})",
            _loc(self.positions, self.file, where),
            _did_you_mean(name, declared) or fix,
        ))


def _check_resource(step: Mapping[str, Any], spath: Path_, resources: frozenset[str] | None, positions: Any, file: str,
                    out: list[Issue]) -> None:
    inputs = step.get("inputs")
    if resources is None or not isinstance(inputs, Mapping):
        return
    keys = ["resource"]
    if step.get("type") in _CONNECTOR_INPUT_TYPES:
        keys.append("connector")
    for key in keys:
        name = inputs.get(key)
        if not isinstance(name, str) or not name or "{{" in name or name in resources:
            continue
        listed = ", ".join(sorted(resources)) if resources else "none"
        out.append(Issue(
            "flow.unknown_resource",
            f"{key} '{name}': this flow declares no such resource (declared: {listed})",
            _loc(positions, file, (*spath, "inputs", key)),
            _did_you_mean(name, resources) or f"declare it: resources: {{{name}: {{kind: ..., driver: ..., config: {{...}}}}}}",
        ))


def _names(value: Any) -> frozenset[str] | None:
    """The declared names of a map section; ``None`` when it is not a map (the schema says so)."""
    if value is None:
        return frozenset()
    if isinstance(value, Mapping):
        return frozenset(k for k in value if isinstance(k, str))
    return None


def _jobs(data: Mapping[str, Any]) -> Iterator[tuple[Path_, Mapping[str, Any]]]:
    jobs = data.get("jobs")
    if isinstance(jobs, list):
        for i, job in enumerate(jobs):
            if isinstance(job, Mapping):
                yield ("jobs", i), job


def _steps(job: Mapping[str, Any], jpath: Path_) -> Iterator[tuple[Path_, Mapping[str, Any]]]:
    steps = job.get("steps")
    if isinstance(steps, list):
        for i, step in enumerate(steps):
            if isinstance(step, Mapping):
                yield (*jpath, "steps", i), step


def _with_nested(step: Mapping[str, Any], spath: Path_) -> Iterator[tuple[Path_, Mapping[str, Any]]]:
    """The step itself and, for ``with_lock``, the steps it nests (``step:`` / ``steps:``)."""
    yield spath, step
    inputs = step.get("inputs")
    if step.get("type") != _LOCK_STEP or not isinstance(inputs, Mapping):
        return
    one = inputs.get("step")
    if isinstance(one, Mapping):
        yield from _with_nested(one, (*spath, "inputs", "step"))
    many = inputs.get("steps")
    if isinstance(many, list):
        for i, s in enumerate(many):
            if isinstance(s, Mapping):
                yield from _with_nested(s, (*spath, "inputs", "steps", i))


def _strings(value: Any, path: Path_, needles: tuple[str, ...]) -> Iterator[tuple[Path_, str]]:
    """Strings under ``value`` holding ``{{`` and one of ``needles``, with their paths. The
    loader builds only plain dicts, lists and scalars, so exact type tests are enough; strings
    are filtered before their path is built (cheap on a 10,000-step flow)."""
    kind = type(value)
    if kind is str:
        if "{{" in value and any(n in value for n in needles):
            yield path, value
    elif kind is dict:
        for k, v in value.items():
            if type(v) is str and ("{{" not in v or not any(n in v for n in needles)):
                continue
            yield from _strings(v, (*path, k), needles)
    elif kind is list:
        for i, v in enumerate(value):
            if type(v) is str and ("{{" not in v or not any(n in v for n in needles)):
                continue
            yield from _strings(v, (*path, i), needles)


def _tokens(text: str) -> list[template.Token]:
    try:
        return list(template.tokens(text))
    except template.TemplateSyntaxError:
        return []  # template.syntax, reported by the semantic checks


def _loc(positions: Any, file: str, path: Path_) -> Location:
    if positions is None:
        return Location(file, None, None, format_path(path))
    loc: Location = positions.location(file, path)
    return loc


def _did_you_mean(name: str, known: frozenset[str]) -> str | None:
    import difflib  # only when there is something to report

    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"did you mean '{close[0]}'?" if close else None
