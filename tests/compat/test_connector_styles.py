"""Connectors in every constructor shape aetherflow-core plugins use: its ConnectorBase with
``__init__(self, init: ConnectorInit)`` (the demo's mail_dummy), the older
``__init__(self, config, options)``, the ``__init__(self, *, config, options)`` of its docs'
template, and a ConnectorBase subclass without an ``__init__``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from support import step_doc


def test_every_reference_constructor_shape_builds(af, reference, shown) -> None:
    d = reference("connector_styles")
    flow = d / "flow.yaml"
    env = {"AETHERFLOW_PLUGIN_PATHS": str(d)}
    res = af("validate", flow, env=env)
    assert res.exit_code == 0, res.stderr
    res = af("run", flow, "--json", env=env)
    assert res.exit_code == 0, res.stderr
    doc = shown(json.loads(res.stdout)["run_id"])
    outputs = step_doc(doc, "probe", "connectors")["outputs"]
    assert outputs == {
        "mail": {"name": "mail_dummy", "kind": "mail", "driver": "mail-dummy", "sent": 1, "from": "robot@example.com",
                 "retry": 1},
        "db": {"path": "legacy.db", "timeout": 5},
        "api": {"base_url": "https://example.com", "timeout": 30},
        "kv": {"name": "kv", "kind": "kv", "driver": "inherited", "key": "k1", "prefix": "p_"},
    }


def test_a_constructor_of_no_known_shape_fails_the_step_naming_it(af, write_flow, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "odd.py").write_text(textwrap.dedent("""
        from aetherflow.core.api import STEP_SUCCESS, Step, StepResult, register_connector, register_step


        @register_connector("odd", "shape")
        class Odd:
            def __init__(self, host, port):
                pass


        @register_step("use_odd")
        class UseOdd(Step):
            def run(self, ctx, inputs):
                ctx.connectors["odd"]
                return StepResult(STEP_SUCCESS, {})
        """), encoding="utf-8")
    flow = write_flow("""
        version: 1
        flow: {id: odd}
        resources:
          odd: {kind: odd, driver: shape}
        jobs:
          - id: a
            steps:
              - {id: s, type: use_odd}
        """)
    res = af("run", flow, "--plugin-path", plugins, "--json")
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["status"] == "FAILED"
    assert ("resource 'odd': connector Odd(host, port) takes none of the supported constructor shapes: "
            "(name, config, options), (init: ConnectorInit), (config, options) or (*, config, options)") in res.stderr
