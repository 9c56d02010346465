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

SIGNATURES = {
    "Step.__init__": "(self, step_id: 'str', inputs: 'Mapping[str, Any]', ctx: 'StepContext', job_id: 'str') -> 'None'",
    "Step.run": "(self, ctx: 'StepContext', inputs: 'Mapping[str, Any]') -> 'StepResult'",
    "StepResult.__init__": (
        "(self, status: 'str' = 'SUCCESS', outputs: 'Mapping[str, Any] | None' = None, outcome: 'str | None' = None, "
        "reason: 'str | None' = None, metadata: 'Mapping[str, Any] | None' = None, *, "
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
    assert sorted(aetherflow.core.api.__all__) == PUBLIC_NAMES
    for name in PUBLIC_NAMES:
        assert getattr(aetherflow.core.api, name) is getattr(aetherflow.api, name), name


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
