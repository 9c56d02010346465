"""The public API is a promise to plugin authors: its names and the signatures they call are
frozen here. Changing this file means changing docs/plugins.md and CHANGELOG.md too."""

from __future__ import annotations

import inspect
import json
import textwrap
from pathlib import Path

import aetherflow.api
import aetherflow.core.api

PUBLIC_NAMES = [
    "AetherflowError",
    "CancelToken",
    "Connector",
    "ConnectorError",
    "Event",
    "Observer",
    "STEP_SKIPPED",
    "STEP_SUCCESS",
    "STEP_WAITING",
    "Step",
    "StepContext",
    "StepError",
    "StepResult",
    "StepTimeoutError",
    "atomic_open",
    "atomic_write",
    "confine",
    "register_connector",
    "register_decoder",
    "register_observer",
    "register_step",
]

# aetherflow-core's public names that are not aetherflow.api's: exported by aetherflow.core.api only
CORE_ONLY_NAMES = [
    "CleanupPolicy",
    "ConnectorBase",
    "ConnectorInit",
    "FlowMetaSpec",
    "FlowSpec",
    "JobSpec",
    "LockScope",
    "LocksSpec",
    "RemoteFileMeta",
    "ResourceSpec",
    "RunContext",
    "Settings",
    "StateSpec",
    "StepSpec",
    "WorkspaceSpec",
    "get_connector",
    "get_step",
    "list_connectors",
    "list_steps",
    "new_run_id",
    "require",
    "require_attr",
]

# every name aetherflow-core 0.0.x exported from aetherflow.core.api
REFERENCE_NAMES = [
    "Step", "StepResult", "STEP_SUCCESS", "STEP_SKIPPED", "RunContext", "new_run_id", "Settings", "FlowSpec",
    "FlowMetaSpec", "JobSpec", "StepSpec", "ResourceSpec", "WorkspaceSpec", "StateSpec", "LocksSpec", "CleanupPolicy",
    "LockScope", "RemoteFileMeta", "ConnectorBase", "ConnectorInit", "ConnectorError", "register_step", "get_step",
    "list_steps", "register_connector", "get_connector", "list_connectors", "require", "require_attr",
]

CORE_SIGNATURES = {
    "ConnectorBase.__init__": "(self, init: 'ConnectorInit') -> 'None'",
    "require": "(spec: 'str') -> 'Any'",
    "require_attr": "(module_name: 'str', attr_name: 'str') -> 'Any'",
    "new_run_id": "() -> 'str'",
    "get_step": "(name: 'str', *, plugin_paths: 'Sequence[str]' = ()) -> 'type'",
    "list_steps": "(*, plugin_paths: 'Sequence[str]' = ()) -> 'list[str]'",
    "get_connector": "(kind: 'str', driver: 'str', *, plugin_paths: 'Sequence[str]' = ()) -> 'type'",
    "list_connectors": "(*, plugin_paths: 'Sequence[str]' = ()) -> 'list[str]'",
    "FlowSpec.model_validate": "(data: 'Mapping[str, Any]') -> 'FlowSpec'",
}

SIGNATURES = {
    "Step.__init__": "(self, step_id: 'str', inputs: 'Mapping[str, Any]', ctx: 'StepContext', job_id: 'str') -> 'None'",
    "Step.run": "(self, ctx: 'StepContext', inputs: 'Mapping[str, Any]') -> 'StepResult'",
    "StepResult.__init__": (
        "(self, status: 'str' = 'SUCCESS', outputs: 'Mapping[str, Any] | None' = None, reason: 'str | None' = None, *, "
        "outcome: 'str | None' = None, metadata: 'Mapping[str, Any] | None' = None, "
        "output: 'Mapping[str, Any] | None' = None, events: 'Sequence[str]' = (), due_at: 'Any' = None) -> 'None'"
    ),
    "register_step": (
        "(name: 'str', *, inputs_schema: 'Mapping[str, Any] | None' = None, outcomes: 'Sequence[str]' = (), "
        "waits: 'bool' = False, description: 'str | None' = None, outcomes_input: 'str | None' = None, "
        "inline: 'bool' = False, nested: 'Sequence[str]' = (), retry: 'Mapping[str, Any] | None' = None) "
        "-> 'Callable[[T], T]'"
    ),
    "register_connector": (
        "(kind: 'str', driver: 'str', *, aliases: 'Sequence[str]' = (), description: 'str | None' = None) "
        "-> 'Callable[[T], T]'"
    ),
    "Connector.__init__": "(self, name: 'str', config: 'Mapping[str, Any]', options: 'Mapping[str, Any]') -> 'None'",
    "register_observer": "(obj: 'T') -> 'T'",
    "register_decoder": "(name: 'str') -> 'Callable[[Callable[[str], str]], Callable[[str], str]]'",
    "atomic_write": "(target: 'str | os.PathLike[str]', data: 'str | bytes', *, encoding: 'str' = 'utf-8') -> 'Path'",
}


def _lookup(dotted: str) -> object:
    obj: object = aetherflow.api
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_public_names_are_frozen() -> None:
    assert sorted(aetherflow.api.__all__) == PUBLIC_NAMES


def test_every_public_name_exists() -> None:
    missing = [n for n in aetherflow.api.__all__ if not hasattr(aetherflow.api, n)]
    assert not missing


def test_core_api_exports_the_same_objects() -> None:
    assert sorted(aetherflow.core.api.__all__) == sorted(PUBLIC_NAMES + CORE_ONLY_NAMES)
    for name in PUBLIC_NAMES:
        assert getattr(aetherflow.core.api, name) is getattr(aetherflow.api, name), name
    assert not set(CORE_ONLY_NAMES) & set(aetherflow.api.__all__)  # not our own API


def test_core_api_has_every_reference_name() -> None:
    missing = [n for n in REFERENCE_NAMES if n not in aetherflow.core.api.__all__ or not hasattr(aetherflow.core.api, n)]
    assert not missing
    namespace: dict[str, object] = {}
    exec("from aetherflow.core.api import *", namespace)  # what a plugin written for aetherflow-core does
    assert set(REFERENCE_NAMES) <= set(namespace)


def test_core_signatures_are_frozen() -> None:
    def lookup(dotted: str) -> object:
        obj: object = aetherflow.core.api
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj

    actual = {name: str(inspect.signature(lookup(name))) for name in CORE_SIGNATURES}  # type: ignore[arg-type]
    assert actual == CORE_SIGNATURES
    from dataclasses import fields

    init = aetherflow.core.api.ConnectorInit("n", "k", "d", {"a": 1}, {})
    assert tuple(f.name for f in fields(init)) == ("name", "kind", "driver", "config", "options", "ctx")
    assert init.ctx is None


def test_core_only_names_behave() -> None:
    core = aetherflow.core.api
    assert core.RunContext is aetherflow.api.StepContext
    assert core.require("json") is json and core.require("json:dumps") is json.dumps
    for missing in ("aetherflow_no_such_module_xyz", "json:no_such_attr"):
        try:
            core.require(missing)
        except core.StepError as exc:
            assert "optional dependency missing" in str(exc) and exc.code == "plugin.missing_dependency"
        else:
            raise AssertionError(missing)
    assert "noop" in core.list_steps() and "rest:httpx" in core.list_connectors()
    assert core.get_step("noop").__name__ == "Noop"
    assert core.get_connector("rest", "httpx") is core.get_connector("rest", "http")
    try:
        core.get_step("no_such_step_type")
    except KeyError as exc:
        assert "unknown step type: no_such_step_type" in str(exc)
    else:
        raise AssertionError("get_step of an unknown type")
    import re

    from aetherflow.runner import check_run_id

    rid = core.new_run_id()
    check_run_id(rid)
    assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{6}", rid) and rid != core.new_run_id()
    flow = core.FlowSpec.model_validate({"version": 1, "flow": {"id": "f", "workspace": {"root": "w"}},
                                         "resources": {"db": {"kind": "db", "driver": "sqlite3", "config": {"path": "x.db"}}},
                                         "jobs": [{"id": "a", "when": "true", "steps": [{"id": "s", "type": "noop"}]}]})
    assert flow.flow.id == "f" and flow.flow.workspace.root == "w" and flow.flow.workspace.layout["artifacts"] == "artifacts"
    assert flow.jobs[0].steps[0].type == "noop" and flow.jobs[0].when == "true"
    assert flow.resources["db"].config == {"path": "x.db"}
    try:
        core.FlowSpec.model_validate({"version": 1, "flow": {"id": "f"}, "jobz": []})
    except aetherflow.api.AetherflowError as exc:
        assert "jobs" in str(exc)
    else:
        raise AssertionError("an invalid flow validated")
    s = core.Settings.from_env({"AETHERFLOW_PLUGIN_PATHS": "a,b:c", "AETHERFLOW_LOG_FORMAT": "JSON"}, work_root="/w")
    assert (s.work_root, s.plugin_paths, s.log_format, s.plugin_strict) == ("/w", ("a", "b", "c"), "json", False)


def test_status_constants_keep_their_values() -> None:
    api = aetherflow.api
    assert (api.STEP_SUCCESS, api.STEP_SKIPPED, api.STEP_WAITING) == ("SUCCESS", "SKIPPED", "WAITING")


def test_signatures_are_frozen() -> None:
    actual = {name: str(inspect.signature(_lookup(name))) for name in SIGNATURES}  # type: ignore[arg-type]
    assert actual == SIGNATURES


def test_step_result_compat_spellings() -> None:
    api = aetherflow.api
    r = api.StepResult(status=api.STEP_SKIPPED, output={"count": 0}, reason="no rows")
    assert r.outputs == {"count": 0} and r.output == {"count": 0} and r.reason == "no rows"
    assert r.outcome is None
    assert api.StepResult(api.STEP_SUCCESS, {"a": 1}, outcome="large").outcome == "large"
    # positional arguments in aetherflow-core's order: status, output, reason
    r = api.StepResult("SKIPPED", {"count": 0}, "count(0) < min_count(1)")
    assert (r.status, dict(r.outputs), r.reason, r.outcome) == ("SKIPPED", {"count": 0}, "count(0) < min_count(1)", None)


def test_error_classes_are_one_tree() -> None:
    api = aetherflow.api
    for cls in (api.ConnectorError, api.StepError, api.StepTimeoutError):
        assert issubclass(cls, api.AetherflowError)
    assert issubclass(api.StepTimeoutError, api.StepError)


SEED_PLUGIN = '''
from aetherflow.core.api import register_step, Step, StepResult, STEP_SUCCESS, STEP_SKIPPED

@register_step("my_step")
class MyStep(Step):
    def run(self, ctx, inputs):
        # read from ctx.env, use ctx.connectors, write artifacts atomically
        # return StepResult(status=..., outputs={...})
        if inputs.get("nothing_to_do"):
            return StepResult(status=STEP_SKIPPED, outputs={"reason": "nothing to do"})
        return StepResult(status=STEP_SUCCESS, outputs={"ok": True, "key": ctx.idempotency_key})
'''


def test_plugin_written_like_the_guide_skeleton_loads_and_runs(af, tmp_path: Path, write_flow) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "my_plugin.py").write_text(textwrap.dedent(SEED_PLUGIN), encoding="utf-8")
    flow = write_flow("""
        version: 1
        flow: {id: seed}
        jobs:
          - id: main
            steps:
              - {id: do_it, type: my_step}
              - {id: skip_it, type: my_step, inputs: {nothing_to_do: true}}
        """)
    res = af("validate", flow, "--plugin-path", plugins)
    assert res.exit_code == 0, res.stderr
    res = af("run", flow, "--plugin-path", plugins, "--json")
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    shown = json.loads(af("runs", "show", run_id, "--json").stdout)
    steps = {s["step_id"]: s for s in shown["jobs"][0]["steps"]}
    assert steps["do_it"]["status"] == "SUCCESS"
    assert steps["do_it"]["outputs"] == {"ok": True, "key": f"{run_id}/main/do_it"}
    assert steps["skip_it"]["status"] == "SKIPPED" and steps["skip_it"]["outputs"] == {"reason": "nothing to do"}
    assert shown["jobs"][0]["status"] == "SUCCESS"  # a skipped step without skip_job is no failure
