"""Plugin loading end to end: plugin folders (``--plugin-path`` / ``AETHERFLOW_PLUGIN_PATHS``),
entry points (the installed example plugin, and entry point objects handed to ``plugins.load``),
failure reporting, duplicate names, ``register(registry)`` plugins, input schemas, observers,
and the plugin paths a run records for ``resume``."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest
from support import example_installed

GOOD_PLUGIN = """
from aetherflow.api import STEP_SUCCESS, Step, StepError, StepResult, register_step


@register_step(
    "acme.echo",
    inputs_schema={
        "type": "object",
        "properties": {"text": {"type": "string"}, "times": {"type": "integer", "minimum": 1}},
        "required": ["text"],
        "additionalProperties": False,
    },
)
class Echo(Step):
    '''Repeat a text.'''

    def run(self, ctx, inputs):
        return StepResult(STEP_SUCCESS, {"text": inputs["text"] * int(inputs.get("times", 1))})


@register_step("acme.needs_file", inputs_schema={"type": "object", "required": ["path"]})
class NeedsFile(Step):
    '''Fail until the file `path` exists.'''

    def run(self, ctx, inputs):
        from pathlib import Path

        if not Path(inputs["path"]).exists():
            raise StepError(f"{inputs['path']} is not there yet")
        return StepResult(STEP_SUCCESS, {"attempt": ctx.attempt})
"""

BROKEN_PLUGIN = """
from aetherflow.api import Step, register_step

import aetherflow_no_such_dependency  # noqa: F401


@register_step("broken.thing")
class Thing(Step):
    def run(self, ctx, inputs):
        raise AssertionError("never imported")
"""


def jobs_flow(steps: str) -> str:
    return "version: 1\nflow: {id: plug}\njobs:\n  - id: main\n    steps:\n" + textwrap.indent(
        textwrap.dedent(steps).strip("\n"), "      "
    ) + "\n"


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Callable[..., Path]:
    """plugin_dir(name, code, folder="plugins") writes one plugin module into a folder."""

    def make(name: str, code: str, folder: str = "plugins") -> Path:
        d = tmp_path / folder
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.py").write_text(textwrap.dedent(code).lstrip("\n"), encoding="utf-8")
        return d

    return make


needs_example = pytest.mark.skipif(
    not example_installed(), reason="needs the example plugin installed: pip install ./plugins/aetherflow-example"
)


# --------------------------------------------------------------------------------------------
# a plugin that fails to import


def test_broken_plugin_warns_and_does_not_break_a_flow_that_does_not_need_it(af, plugin_dir, write_flow) -> None:
    d = plugin_dir("broken", BROKEN_PLUGIN)
    plugin_dir("acme", GOOD_PLUGIN)
    flow = write_flow(jobs_flow("- {id: hi, type: acme.echo, inputs: {text: hi}}"))
    res = af("run", flow, "--plugin-path", d)
    assert res.exit_code == 0, res.stderr
    line = next(ln for ln in res.stderr.splitlines() if "broken.py" in ln)
    assert "warning" in line.lower()
    assert "ModuleNotFoundError" in line and "aetherflow_no_such_dependency" in line
    res = af("validate", flow, "--plugin-path", d)
    assert res.exit_code == 0, res.stderr
    assert "warning: plugin failed to import:" in res.stderr and "broken.py" in res.stderr


def test_flow_needing_a_broken_plugin_fails_validation_naming_it(cli, plugin_dir, write_flow) -> None:
    d = plugin_dir("broken", BROKEN_PLUGIN)
    flow = write_flow(jobs_flow("- {id: t, type: broken.thing}"))
    res = cli("validate", flow, "--plugin-path", d)
    assert res.exit_code == 2
    err = next(ln for ln in res.stderr.splitlines() if "flow.unknown_step_type" in ln)
    assert err.startswith(f"{flow}:6:23:") and "broken.thing" in err
    assert "broken.py" in err and "No module named 'aetherflow_no_such_dependency'" in err
    res = cli("run", flow, "--plugin-path", d)
    assert res.exit_code == 2 and "broken.py" in res.stderr
    assert "run started" not in res.stderr


def test_broken_entry_point_is_recorded_with_its_error() -> None:
    from aetherflow import plugins

    ep = metadata.EntryPoint(name="ghost", value="aetherflow_ghost_plugin_xyz", group=plugins.GROUP)
    loaded = plugins.load(entry_points=[ep])
    info = next(p for p in loaded.plugins if p.name == "ghost")
    assert info.source == "entry point" and info.steps == ()
    assert info.error is not None and "ModuleNotFoundError" in info.error
    assert loaded.errors == [f"ghost: {info.error}"]
    assert "check_items" in loaded.registry.steps  # built-ins still loaded


# --------------------------------------------------------------------------------------------
# duplicate names


def test_duplicate_of_a_builtin_is_refused_naming_both_sources(cli, plugin_dir, write_flow) -> None:
    d = plugin_dir("copycat", """
        from aetherflow.api import STEP_SUCCESS, Step, StepResult, register_step

        @register_step("check_items")
        class MyCheck(Step):
            def run(self, ctx, inputs):
                return StepResult(STEP_SUCCESS, {})
        """)
    flow = write_flow(jobs_flow("- {id: n, type: noop}"))
    for args in (("validate", flow), ("steps", "list"), ("run", flow)):
        res = cli(*args, "--plugin-path", d)
        assert res.exit_code == 2, (args, res.stderr)
        assert "'check_items' is registered twice" in res.stderr
        assert "builtin (aetherflow.steps.control)" in res.stderr and str(d / "copycat.py") in res.stderr


def test_duplicate_between_two_plugins_names_both(cli, plugin_dir, tmp_path: Path) -> None:
    a = plugin_dir("acme", GOOD_PLUGIN, folder="a")
    b = plugin_dir("acme_again", GOOD_PLUGIN, folder="b")
    res = cli("steps", "list", "--plugin-path", a, "--plugin-path", b)
    assert res.exit_code == 2
    assert str(a / "acme.py") in res.stderr and str(b / "acme_again.py") in res.stderr


def test_same_folder_given_twice_is_loaded_once(cli, plugin_dir, tmp_path: Path) -> None:
    d = plugin_dir("acme", GOOD_PLUGIN)
    res = cli("steps", "list", "--plugin-path", d, "--plugin-path", f"{d}/../plugins",
              env={"AETHERFLOW_PLUGIN_PATHS": str(d)})
    assert res.exit_code == 0, res.stderr
    assert "acme.echo" in res.stdout


# --------------------------------------------------------------------------------------------
# register(registry) plugins


def test_register_callable_plugin_in_a_folder(af, plugin_dir, write_flow) -> None:
    d = plugin_dir("hooked", """
        from aetherflow.api import STEP_SUCCESS, Step, StepResult


        class Shout(Step):
            def run(self, ctx, inputs):
                return StepResult(STEP_SUCCESS, {"text": str(inputs["text"]).upper()})


        class Whisper(Step):
            def run(self):  # aetherflow-core style
                return {"text": str(self.inputs["text"]).lower()}


        def register(registry):
            registry.register_step(Shout, "hooked.shout", inputs_schema={"type": "object", "required": ["text"]})
            registry.register("hooked.whisper", Whisper)  # aetherflow-core spelling
        """)
    flow = write_flow(jobs_flow("""
        - {id: a, type: hooked.shout, inputs: {text: Hi}}
        - {id: b, type: hooked.whisper, inputs: {text: Hi}}
        """))
    res = af("run", flow, "--plugin-path", d, "--json")
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    shown = json.loads(af("runs", "show", run_id, "--json").stdout)
    steps = {s["step_id"]: s["outputs"] for s in shown["jobs"][0]["steps"]}
    assert steps == {"a": {"text": "HI"}, "b": {"text": "hi"}}
    res = af("validate", flow, "--plugin-path", d)
    assert res.exit_code == 0, res.stderr
    bad = write_flow(jobs_flow("- {id: a, type: hooked.shout, inputs: {}}"), name="bad.yaml")
    res = af("validate", bad, "--plugin-path", d)
    assert res.exit_code == 2 and f"{bad}:6:45:" in res.stderr and "inputs.required" in res.stderr, res.stderr


def test_register_callable_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aetherflow import plugins

    pkg = tmp_path / "site" / "acme_ep_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from aetherflow.api import STEP_SUCCESS, Step, StepResult


        class Ping(Step):
            def run(self, ctx, inputs):
                return StepResult(STEP_SUCCESS, {"pong": True})


        def register(registry):
            registry.register_step(Ping, "acme_ep.ping")
        """), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    ep = metadata.EntryPoint(name="acme_ep", value="acme_ep_plugin:register", group=plugins.GROUP)
    loaded = plugins.load(entry_points=[ep])
    info = next(p for p in loaded.plugins if p.name == "acme_ep")
    assert info.error is None and info.steps == ("acme_ep.ping",)
    assert loaded.registry.steps["acme_ep.ping"].source.startswith("plugin acme_ep (entry point acme_ep = acme_ep_plugin:register)")


def _site_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, files: dict[str, str]) -> None:
    pkg = tmp_path / "site" / name
    pkg.mkdir(parents=True)
    for rel, code in files.items():
        (pkg / rel).write_text(textwrap.dedent(code).lstrip("\n"), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def test_entry_point_register_without_argument_is_called_as_aetherflow_core_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aetherflow import plugins

    _site_package(tmp_path, monkeypatch, "acme_noarg_plugin", {"__init__.py": """
        from aetherflow.core.api import STEP_SUCCESS, Step, StepResult

        CALLS = []


        class Ping(Step):
            def run(self, ctx, inputs):
                return StepResult(STEP_SUCCESS, {"pong": True})


        def register():
            CALLS.append("called")
        """})
    ep = metadata.EntryPoint(name="noarg", value="acme_noarg_plugin:register", group=plugins.GROUP)
    loaded = plugins.load(entry_points=[ep])
    info = next(p for p in loaded.plugins if p.name == "noarg")
    assert info.error is None
    import acme_noarg_plugin  # type: ignore[import-not-found]

    assert acme_noarg_plugin.CALLS == ["called"]


def test_entry_point_naming_a_noop_register_collects_the_classes_registered_at_import(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """aetherflow-core plugins register with the decorator at import and point their entry point
    at a `register` that does nothing (or imports the modules that hold the steps)."""
    from aetherflow import plugins

    _site_package(tmp_path, monkeypatch, "acme_import_plugin", {
        "__init__.py": """
            def register():
                from acme_import_plugin import steps, connectors  # noqa: F401
            """,
        "steps.py": """
            from aetherflow.core.api import STEP_SUCCESS, Step, StepResult, register_step


            @register_step("acme_import.ping")
            class Ping(Step):
                def run(self):
                    return StepResult(STEP_SUCCESS, {"pong": True})
            """,
        "connectors.py": """
            from aetherflow.core.api import Connector, register_connector


            @register_connector(kind="kv", driver="acme_import")
            class Kv(Connector):
                pass
            """,
        "unused.py": """
            raise RuntimeError("not imported by register(): never collected")
            """,
    })
    _site_package(tmp_path, monkeypatch, "acme_noop_plugin", {
        "__init__.py": """
            from aetherflow.core.api import STEP_SUCCESS, Step, StepResult, register_step


            @register_step("acme_noop.ping")
            class Ping(Step):
                def run(self):
                    return StepResult(STEP_SUCCESS, {})


            def register():
                pass
            """,
    })
    eps = [metadata.EntryPoint(name="imp", value="acme_import_plugin:register", group=plugins.GROUP),
           metadata.EntryPoint(name="noop", value="acme_noop_plugin:register", group=plugins.GROUP)]
    loaded = plugins.load(entry_points=eps)
    infos = {p.name: p for p in loaded.plugins if p.source == "entry point"}
    assert infos["imp"].error is None and infos["imp"].steps == ("acme_import.ping",)
    assert infos["imp"].connectors == ("kv:acme_import",)
    assert infos["noop"].error is None and infos["noop"].steps == ("acme_noop.ping",)
    assert loaded.registry.steps["acme_noop.ping"].source == (
        "plugin noop (entry point noop = acme_noop_plugin:register)")


def test_entry_point_package_observer_reexported_is_collected_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aetherflow import plugins

    pkg = tmp_path / "site" / "acme_obs_plugin"
    pkg.mkdir(parents=True)
    (pkg / "watch.py").write_text(textwrap.dedent("""
        from aetherflow.api import register_observer

        SEEN = []


        @register_observer
        def watch(event):
            SEEN.append(event.name)
        """), encoding="utf-8")
    (pkg / "__init__.py").write_text("from acme_obs_plugin.watch import watch\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    ep = metadata.EntryPoint(name="acme_obs", value="acme_obs_plugin", group=plugins.GROUP)
    loaded = plugins.load(entry_points=[ep])
    assert len(loaded.observers) == 1


# --------------------------------------------------------------------------------------------
# inspection: validate, schema, steps list / show


def test_validate_checks_plugin_input_schemas_with_locations(cli, plugin_dir, write_flow) -> None:
    d = plugin_dir("acme", GOOD_PLUGIN)
    flow = write_flow(jobs_flow("""
        - id: a
          type: acme.echo
          inputs: {text: hi, times: 0, loud: true}
        - id: b
          type: acme.echo
          inputs: {text: "{{ env.GREETING }}", times: "{{ params.n:2 }}"}
        """))
    res = cli("validate", flow, "--plugin-path", d)
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith(str(flow))]
    assert len(lines) == 2, res.stderr  # templates in `b` are checked at run time, not here
    assert any(ln.startswith(f"{flow}:8:38:") and "inputs.additional_property" in ln and "loud" in ln for ln in lines), lines
    assert any(ln.startswith(f"{flow}:8:35:") and "inputs.minimum" in ln and "inputs.times" in ln for ln in lines), lines
    res = cli("validate", flow, "--plugin-path", d, "--json")
    doc = json.loads(res.stdout)
    assert doc["ok"] is False
    assert {(i["code"], i["line"]) for i in doc["issues"]} == {("inputs.additional_property", 8), ("inputs.minimum", 8)}


def test_schema_includes_plugin_step_inputs(cli, plugin_dir) -> None:
    d = plugin_dir("acme", GOOD_PLUGIN)
    res = cli("schema", "--plugin-path", d)
    assert res.exit_code == 0, res.stderr
    step = json.loads(res.stdout)["$defs"]["step"]
    branches = {b["if"]["properties"]["type"]["const"]: b["then"] for b in step["allOf"] if "if" in b}
    echo = branches["acme.echo"]["properties"]["inputs"]
    assert echo["required"] == ["text"] and echo["properties"]["times"] == {"type": "integer", "minimum": 1}
    assert "acme.echo" in step["properties"]["type"]["examples"]
    assert "check_items" in branches


def test_steps_list_and_show_plugin_steps_with_source(cli, plugin_dir) -> None:
    d = plugin_dir("acme", GOOD_PLUGIN)
    res = cli("steps", "list", "--plugin-path", d)
    assert res.exit_code == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("acme.echo "))
    assert "Repeat a text." in line and f"[plugin path {d / 'acme.py'}]" in line
    assert any(ln.startswith("check_items ") and "builtin (aetherflow.steps.control)" in ln for ln in res.stdout.splitlines())
    doc = json.loads(cli("steps", "list", "--plugin-path", d, "--json").stdout)
    info = next(p for p in doc["plugins"] if p["name"].endswith("acme.py"))
    assert info == {"name": str(d / "acme.py"), "source": "path", "error": None}
    res = cli("steps", "show", "acme.echo", "--plugin-path", d)
    assert res.exit_code == 0, res.stderr
    assert f"source: plugin path {d / 'acme.py'}" in res.stdout
    assert "outcomes: success, skipped" in res.stdout and '"minimum": 1' in res.stdout
    res = cli("steps", "show", "acme.ecko", "--plugin-path", d)
    assert res.exit_code == 2 and "did you mean 'acme.echo'" in res.stderr


@pytest.mark.parametrize("sep", [":", ",", ", "])
def test_plugin_paths_from_the_environment(cli, plugin_dir, tmp_path: Path, sep: str) -> None:
    a = plugin_dir("acme", GOOD_PLUGIN, folder="a")
    b = plugin_dir("other", """
        from aetherflow.api import STEP_SUCCESS, Step, StepResult, register_step

        @register_step("other.step")
        class Other(Step):
            def run(self, ctx, inputs):
                return StepResult(STEP_SUCCESS, {})
        """, folder="b")
    # ":" (os.pathsep) and "," (aetherflow-core's separator) both separate folders
    res = cli("steps", "list", env={"AETHERFLOW_PLUGIN_PATHS": f"{a}{sep}{b}"})
    assert res.exit_code == 0, res.stderr
    assert "acme.echo" in res.stdout and "other.step" in res.stdout
    assert "not a directory" not in res.stderr


def test_plugin_folder_with_sub_folders_and_sibling_imports(af, plugin_dir, write_flow, tmp_path: Path) -> None:
    """aetherflow-core's demo layout: `plugins/steps/*.py`, `plugins/connectors/*.py` (folders
    without __init__.py), a helper imported by name from the folder; private modules nobody
    imports are reported, not silently dropped."""
    root = tmp_path / "plugins"
    plugin_dir("__init__", "# plugins package\n", folder="plugins")
    plugin_dir("lf_text", """
        def shout(text):
            return str(text).upper()
        """, folder="plugins")
    plugin_dir("_lf_private", "SUFFIX = '!'\n", folder="plugins")
    plugin_dir("_lf_forgotten", "raise RuntimeError('never imported')\n", folder="plugins")
    plugin_dir("transform", """
        from aetherflow.api import STEP_SUCCESS, Step, StepResult, register_step

        import _lf_private
        from lf_text import shout


        @register_step("lf.shout")
        class Shout(Step):
            def run(self, ctx, inputs):
                return StepResult(STEP_SUCCESS, {"text": shout(inputs["text"]) + _lf_private.SUFFIX})
        """, folder="plugins/steps")
    plugin_dir("_draft", "raise RuntimeError('never imported')\n", folder="plugins/steps")
    plugin_dir("echo", """
        from aetherflow.api import Connector, register_connector


        @register_connector("echo", "lf")
        class Echo(Connector):
            pass
        """, folder="plugins/connectors")
    (root / "README.txt").write_text("not a plugin\n", encoding="utf-8")
    res = af("steps", "list", "--json", env={"AETHERFLOW_PLUGIN_PATHS": str(root)})
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    sources = {r["type"]: r["source"] for r in doc["steps"]}
    assert sources["lf.shout"] == f"plugin path {root / 'steps' / 'transform.py'}"
    assert "echo:lf" in doc["connectors"]
    assert not [p for p in doc["plugins"] if p["error"]], doc["plugins"]
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: plugin folder {root}: skipped _lf_forgotten.py: a name starting with '_' is private to the plugins "
        "that import it, and none did",
        f"warning: plugin folder {root}: skipped {Path('steps', '_draft.py')}: a name starting with '_' is private to "
        "the plugins that import it, and none did",
    ], res.stderr
    flow = write_flow(jobs_flow("- {id: s, type: lf.shout, inputs: {text: hi}}"))
    res = af("run", flow, "--json", env={"AETHERFLOW_PLUGIN_PATHS": str(root)})
    assert res.exit_code == 0, res.stderr
    shown = json.loads(af("runs", "show", json.loads(res.stdout)["run_id"], "--json").stdout)
    assert shown["jobs"][0]["steps"][0]["outputs"] == {"text": "HI!"}
    assert "WARNING" in res.stderr and "_lf_forgotten.py" in res.stderr  # run warns too (stderr, without -v)


@needs_example
def test_installed_example_plugin_loads_through_its_entry_point(cli) -> None:
    res = cli("steps", "list", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    rows = {r["type"]: r for r in doc["steps"]}
    assert rows["example.kv_put"]["source"] == "plugin aetherflow-example (entry point example = aetherflow_example)"
    assert "kv:sqlite" in doc["connectors"]
    info = next(p for p in doc["plugins"] if p["name"] == "example")
    assert info == {"name": "example", "source": "entry point", "error": None}
    res = cli("steps", "show", "example.classify")
    assert "outcomes: success, skipped, small, large" in res.stdout


# --------------------------------------------------------------------------------------------
# observers


def test_observer_that_raises_never_fails_the_run(af, plugin_dir, write_flow, tmp_path: Path) -> None:
    seen = tmp_path / "seen.txt"
    d = plugin_dir("observers", f"""
        from aetherflow.api import register_observer


        @register_observer
        def explode(event):
            raise RuntimeError("observer exploded on " + event.name)


        @register_observer
        class Count:
            def __call__(self, event):
                with open({str(seen)!r}, "a") as fh:
                    fh.write(event.name + "\\n")
        """)
    flow = write_flow(jobs_flow("- {id: n, type: noop}"))
    res = af("run", flow, "--plugin-path", d, "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["status"] == "SUCCESS"
    assert "observer" in res.stderr and "observer exploded on run.started" in res.stderr
    names = seen.read_text().split()
    assert names[0] == "run.started" and names[-1] == "run.finished" and "step.finished" in names


# --------------------------------------------------------------------------------------------
# plugin paths recorded by a run, reused by resume


def test_resume_reuses_the_plugin_paths_of_the_run(af, plugin_dir, write_flow, tmp_path: Path, store_of) -> None:
    plugin_dir("acme", GOOD_PLUGIN, folder="work/plugins")
    ready = tmp_path / "ready.flag"
    flow = write_flow(jobs_flow(f"""
        - {{id: first, type: acme.echo, inputs: {{text: a}}}}
        - {{id: gate, type: acme.needs_file, inputs: {{path: {str(ready)!r}}}}}
        """))
    work = tmp_path / "work"
    # a relative --plugin-path, from the directory the operator ran in
    res = af("run", flow, "--plugin-path", "plugins", "--json", cwd=work)
    assert res.exit_code == 1, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    rec = store_of().get_run(run_id)
    assert rec.plugin_paths == (str(work / "plugins"),)
    ready.write_text("ok")
    # resume from elsewhere (cron), without --plugin-path
    res = af("resume", run_id, "--json", cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["status"] == "SUCCESS"
    shown = json.loads(af("runs", "show", run_id, "--json").stdout)
    by_id = {s["step_id"]: s for s in shown["jobs"][0]["steps"]}
    assert [a["attempt"] for a in by_id["first"]["attempts"]] == [1]
    assert by_id["gate"]["status"] == "SUCCESS" and by_id["gate"]["outputs"] == {"attempt": 2}


def test_resume_with_the_same_plugin_path_in_the_environment(af, plugin_dir, write_flow, tmp_path: Path) -> None:
    d = plugin_dir("acme", GOOD_PLUGIN)
    ready = tmp_path / "ready.flag"
    flow = write_flow(jobs_flow(f"- {{id: gate, type: acme.needs_file, inputs: {{path: {str(ready)!r}}}}}"))
    env = {"AETHERFLOW_PLUGIN_PATHS": str(d)}
    res = af("run", flow, "--json", env=env)
    assert res.exit_code == 1, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    ready.write_text("ok")
    res = af("resume", run_id, env=env)
    assert res.exit_code == 0, res.stderr
