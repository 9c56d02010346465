"""The validation cache (``$AETHERFLOW_HOME/cache/valid``): a repeated ``run`` / ``resume`` of an
unchanged, fully valid flow skips the JSON Schema checks (aetherflow.spec.schema is not even imported; nor yaml:
the entry keeps the parse, tests in test_validation_cache_parsed.py); anything
that could change the verdict (the file's bytes, a step type's ``inputs_schema``) misses it; an
invalid flow is never remembered; ``validate`` never uses it; it can be switched off and it never
fails a run. docs/performance.md "Validation cache"."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import cache_entries as markers
from support import messages, probe_main, traced

from aetherflow.spec.cache import ValidationCache, flow_schema_bytes
from aetherflow.spec.loader import load_yaml

ONE_STEP = """
version: 1
flow: {id: cached}
jobs:
  - id: main
    steps:
      - id: s
        type: noop
"""


def test_repeat_run_uses_the_marker_and_skips_jsonschema(home: Path, write_flow: Callable[..., Path]) -> None:
    flow = write_flow(ONE_STEP)
    first, mods = traced("run", str(flow))
    assert first.returncode == 0, messages(first)
    assert "aetherflow.spec.schema" in mods  # a miss pays for the checks
    [marker] = markers(home)
    assert marker.read_bytes().startswith(b"aetherflow-valid ") and len(marker.name) == 64
    for d in (home / "cache", home / "cache" / "valid"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    second, mods = traced("run", str(flow))
    assert second.returncode == 0, messages(second)
    assert "jsonschema" not in mods and "aetherflow.spec.schema" not in mods
    assert markers(home) == [marker]


def test_hit_in_process_leaves_jsonschema_unimported(home: Path, write_flow: Callable[..., Path]) -> None:
    flow = write_flow(ONE_STEP)
    outs = [probe_main("run", str(flow), "-q") for _ in range(2)]
    assert [code for code, _, _, _ in outs] == [0, 0], [err for _, _, _, err in outs]
    assert ["aetherflow.spec.schema" in mods for _, mods, _, _ in outs] == [True, False]


def test_editing_the_flow_misses_the_cache(home: Path, write_flow: Callable[..., Path]) -> None:
    flow = write_flow(ONE_STEP)
    assert traced("run", str(flow))[0].returncode == 0
    flow.write_text(flow.read_text() + "# only a comment\n")
    proc, mods = traced("run", str(flow))
    assert proc.returncode == 0, messages(proc)
    assert "aetherflow.spec.schema" in mods
    assert len(markers(home)) == 2


INVALID = {
    "schema": ("""
        version: 1
        flow: {id: bad}
        jobs:
          - id: main
            steps:
              - id: s
                type: noop
                colour: red
        """, "8:9: schema.additional_property:"),
    "semantic": ("""
        version: 1
        flow: {id: bad}
        jobs:
          - id: main
            steps:
              - id: s
                type: noop
          - id: main
            steps:
              - id: t
                type: noop
        """, "8:9: flow.duplicate_job:"),
    "registry": ("""
        version: 1
        flow: {id: bad}
        jobs:
          - id: main
            steps:
              - id: s
                type: nooop
        """, "7:15: flow.unknown_step_type:"),
    "inputs": ("""
        version: 1
        flow: {id: bad}
        jobs:
          - id: main
            steps:
              - id: s
                type: check_items
                inputs: {itemz: [1]}
        """, "8:18: inputs.additional_property:"),
}


@pytest.mark.parametrize("kind", sorted(INVALID))
def test_invalid_flow_is_never_cached(home: Path, write_flow: Callable[..., Path], cli: Callable[..., Any], kind: str) -> None:
    text, where = INVALID[kind]
    flow = write_flow(text)
    for _ in range(2):
        res = cli("run", str(flow))
        assert res.exit_code == 2, res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith(f"{flow}:")]
        assert any(where in ln for ln in lines), res.stderr
        assert markers(home) == []


PLUGIN = '''
from aetherflow.api import STEP_SUCCESS, Step, StepResult, register_step


@register_step("acme.echo", inputs_schema={
    "type": "object",
    "properties": {"text": {"type": "string"}, "times": TIMES},
    "required": ["text"],
})
class Echo(Step):
    def run(self, ctx, inputs):
        return StepResult(STEP_SUCCESS, {"text": inputs["text"]})
'''


def test_changed_plugin_inputs_schema_revalidates(home: Path, tmp_path: Path, write_flow: Callable[..., Path]) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    module = plugins / "acme_cache.py"
    module.write_text(PLUGIN.replace("TIMES", '{"type": "integer"}'))
    flow = write_flow("""
        version: 1
        flow: {id: plug}
        jobs:
          - id: main
            steps:
              - id: a
                type: acme.echo
                inputs: {text: hi, times: 0}
        """)
    env = {"AETHERFLOW_PLUGIN_PATHS": str(plugins)}
    assert traced("run", str(flow), env=env)[0].returncode == 0
    assert len(markers(home)) == 1
    proc, mods = traced("run", str(flow), env=env)
    assert proc.returncode == 0 and "jsonschema" not in mods and "aetherflow.spec.schema" not in mods  # cached with this plugin
    module.write_text(PLUGIN.replace("TIMES", '{"type": "integer", "minimum": 1}'))
    proc, mods = traced("run", str(flow), env=env)
    assert proc.returncode == 2, messages(proc)
    assert any(ln.startswith(f"{flow}:8:35: inputs.minimum:") for ln in messages(proc)), messages(proc)
    assert len(markers(home)) == 1  # the invalid verdict is not remembered


def test_resume_uses_the_cache(home: Path, tmp_path: Path, write_flow: Callable[..., Path]) -> None:
    gate = tmp_path / "gate"
    flow = write_flow("""
        version: 1
        flow: {id: gated}
        jobs:
          - id: main
            steps:
              - id: wait_for_gate
                type: external.process
                inputs: {command: [sh, -c, 'test -f "$GATE"']}
        """)
    env = {"GATE": str(gate)}
    proc, _ = traced("run", str(flow), "--run-id", "r1", env=env)
    assert proc.returncode == 1, messages(proc)
    assert len(markers(home)) == 1
    gate.touch()
    proc, mods = traced("resume", "r1", env=env)
    assert proc.returncode == 0, messages(proc)
    assert "jsonschema" not in mods and "aetherflow.spec.schema" not in mods


def test_switched_off_writes_nothing(home: Path, write_flow: Callable[..., Path], cli: Callable[..., Any],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AETHERFLOW_VALIDATION_CACHE", "0")
    flow = write_flow(ONE_STEP)
    for _ in range(2):
        res = cli("run", str(flow))
        assert res.exit_code == 0, res.stderr
    assert not (home / "cache" / "valid").exists()  # (cache/ may hold other caches)


def test_switched_off_ignores_existing_markers(home: Path, write_flow: Callable[..., Path]) -> None:
    flow = write_flow(ONE_STEP)
    assert traced("run", str(flow))[0].returncode == 0
    proc, mods = traced("run", str(flow), env={"AETHERFLOW_VALIDATION_CACHE": "0"})
    assert proc.returncode == 0 and "aetherflow.spec.schema" in mods


def test_unwritable_cache_does_not_fail_the_run(home: Path, write_flow: Callable[..., Path],
                                                cli: Callable[..., Any]) -> None:
    home.mkdir(parents=True)
    (home / "cache").write_text("not a directory")  # no directory can be made there, even as root
    flow = write_flow(ONE_STEP)
    for _ in range(2):
        res = cli("run", str(flow))
        assert res.exit_code == 0, res.stderr
        assert res.stderr == ""
    assert (home / "cache").read_text() == "not a directory"


def test_validate_never_uses_or_writes_the_cache(home: Path, write_flow: Callable[..., Path]) -> None:
    flow = write_flow(ONE_STEP)
    proc, _ = traced("validate", str(flow))
    assert proc.returncode == 0, messages(proc)
    assert markers(home) == []
    assert traced("run", str(flow))[0].returncode == 0
    proc, mods = traced("validate", str(flow))
    assert proc.returncode == 0 and "aetherflow.spec.schema" in mods  # the full check, marker or not


# --------------------------------------------------------------------- the cache on its own


def test_key_hashes_the_schema_file_load_schema_reads() -> None:
    from aetherflow.spec.schema import load_schema

    raw = flow_schema_bytes()
    assert raw is not None and json.loads(raw) == load_schema("flow")


def test_key_depends_on_every_part(tmp_path: Path) -> None:
    cache = ValidationCache(tmp_path)
    k = cache.key(b"flow", b"schemas")
    assert k is not None and len(k) == 64
    assert cache.key(b"flow", b"schemas") == k
    assert len({k, cache.key(b"flow ", b"schemas"), cache.key(b"flow", b"schemas "), cache.key(b"flows", b"chemas")}) == 4


def test_markers_stay_bounded_least_recently_used_first(tmp_path: Path) -> None:
    cache = ValidationCache(tmp_path / "valid", max_entries=8)
    data, positions = load_yaml("a: 1\n", "f.yaml")
    keys = [f"{i:064x}" for i in range(9)]
    for i, k in enumerate(keys[:8]):
        cache.remember(k, data, positions)
        os.utime(tmp_path / "valid" / k, (1000 + i, 1000 + i))
    assert cache.lookup(keys[0]) is not None  # a hit makes the oldest the most recently used
    cache.remember(keys[8], data, positions)
    left = {p.name for p in (tmp_path / "valid").iterdir()}
    assert len(left) == 6  # pruned to three quarters, so pruning is rare
    assert {keys[0], keys[8]} <= left and keys[1] not in left
    assert cache.lookup(keys[1]) is None
