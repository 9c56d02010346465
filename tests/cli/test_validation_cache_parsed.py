"""The validation cache keeps the YAML parse of a valid flow: a hit neither imports yaml nor
parses, and runs exactly what a miss runs (same outputs, same errors at the same line:column);
an entry that is empty (format 0), of another format, truncated or corrupt is a miss that the
next clean check rewrites. docs/performance.md "Validation cache"."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import cache_entries as entries
from support import messages, probe_main, traced

from aetherflow.spec.cache import ValidationCache
from aetherflow.spec.loader import Positions, load_yaml

ONE_STEP = """
version: 1
flow: {id: cached}
jobs:
  - id: main
    steps:
      - id: s
        type: noop
"""


def shape(value: Any) -> Any:
    """``value`` with every type and every dict's key order made explicit (NaN comparable)."""
    if isinstance(value, dict):
        return ("dict", [(k, shape(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [shape(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def without_times(doc: Any) -> Any:
    """A ``runs show --json`` document without what differs between two runs of one flow."""
    if isinstance(doc, dict):
        return {k: without_times(v) for k, v in doc.items()
                if not k.endswith("_at") and k not in ("run_id", "pid", "duration_seconds", "workspace")}
    if isinstance(doc, list):
        return [without_times(v) for v in doc]
    return doc


# --------------------------------------------------------------------- whole runs, fresh processes


def test_hit_in_a_fresh_process_imports_no_yaml(home: Path, write_flow: Callable[..., Path]) -> None:
    flow = write_flow(ONE_STEP)
    outs = [probe_main("run", str(flow), "-q") for _ in range(2)]
    assert [code for code, _, _, _ in outs] == [0, 0], [err for _, _, _, err in outs]
    assert [("yaml" in mods, "aetherflow.spec.schema" in mods) for _, mods, _, _ in outs] == [(True, True), (False, False)]
    [entry] = entries(home)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert entry.read_bytes().startswith(b"aetherflow-valid 1 ")
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_pipeline_check_on_a_hit_imports_no_yaml(home: Path, write_flow: Callable[..., Path]) -> None:
    flow = write_flow(ONE_STEP)
    code = textwrap.dedent(f"""
        import os, sys
        from aetherflow import prepare, settings as s
        settings = s.settings_from_env(dict(os.environ))
        loaded, issues = prepare.check_flow({str(flow)!r}, prepare.load_plugins(settings),
                                            cache=prepare.validation_cache(settings))
        assert not issues, issues
        print(loaded.flow.id, loaded.flow.jobs[0].steps[0].location, "yaml" in sys.modules)
    """)
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
            for _ in range(2)]
    lines = [o.stdout.strip() for o in outs]
    assert lines[0].endswith(" True") and lines[1].endswith(" False"), [o.stderr for o in outs]
    assert lines[0][: -len("True")] == lines[1][: -len("False")]  # same flow, same step location


SAME = """
version: 1
flow:
  id: same
  metadata: {ratio: 1.0, count: 1, flag: true, code: "012", time: 12:30, none: null, big: 12345678901234567890}
jobs:
  - id: good
    steps:
      - id: values
        type: noop
        inputs: {z: 1, a: 1.0, m: true, f: false, s: "1", n: null, o: 0o17, e: 1e3, when: 12:30, list: [2, 1.5, "x", {b: 1, a: 2}]}
        outputs: {first: "{{ result.z }}", nested: "{{ result.list }}"}
      - id: after
        type: debug
        inputs: {message: "z={{ steps.values.z }} a={{ steps.values.a }} m={{ steps.values.m }}"}
  - id: bad
    steps:
      - id: a
        type: noop
      - id: b
        type: check_items
        inputs: {items: "{{ steps.a.missing.path }}"}
"""


def test_hit_runs_exactly_what_a_miss_runs(home: Path, write_flow: Callable[..., Path],
                                           af: Callable[..., Any]) -> None:
    flow = write_flow(SAME)
    miss, _ = traced("run", str(flow), "--run-id", "miss")
    hit, mods = traced("run", str(flow), "--run-id", "hit")
    assert "yaml" not in mods and "aetherflow.spec.schema" not in mods, messages(hit)
    assert miss.returncode == hit.returncode == 1, (messages(miss), messages(hit))
    assert miss.stdout.replace("miss", "RUN") == hit.stdout.replace("hit", "RUN")
    assert messages(miss) == [ln.replace("hit", "miss") for ln in messages(hit)]
    docs = []
    for run_id in ("miss", "hit"):
        res = af("runs", "show", run_id, "--json")
        assert res.exit_code == 0, res.stderr
        docs.append(without_times(json.loads(res.stdout)))
    assert docs[0] == docs[1]
    steps = {s["step_id"]: s for j in docs[1]["jobs"] for s in j["steps"]}
    good, bad = docs[1]["jobs"]
    assert (good["job_id"], good["status"], bad["job_id"], bad["status"]) == ("good", "SUCCESS", "bad", "FAILED")
    assert steps["after"]["outputs"] == {"message": "z=1 a=1.0 m=true"}  # int, float, bool kept
    assert good["outputs"] == {"first": 1, "nested": [2, 1.5, "x", {"b": 1, "a": 2}]}
    assert shape(steps["values"]["outputs"]) == shape(json.loads(json.dumps({
        "z": 1, "a": 1.0, "m": True, "f": False, "s": "1", "n": None, "o": 15, "e": 1000.0, "when": "12:30",
        "list": [2, 1.5, "x", {"b": 1, "a": 2}]}, sort_keys=True)))
    assert "steps.a.missing.path" in steps["b"]["error"]


RUN_TIME_ERRORS = {
    "resource": ("""
        version: 1
        flow: {id: res, params: {cfg: {type: object, default: "{}"}}}
        resources:
          warehouse:
            kind: db
            driver: sqlite
            config: {path: "{{ params.cfg.no_such_key }}"}
        jobs:
          - id: main
            steps:
              - id: a
                type: noop
        """, ":5:5: error[resource.template]"),
    "env": ("""
        version: 1
        flow: {id: res}
        resources:
          warehouse:
            kind: db
            driver: sqlite
            config: {path: "{{ env.AF_TEST_NO_SUCH_VARIABLE }}"}
        jobs:
          - id: main
            steps:
              - id: a
                type: noop
        """, ":7:20: template.missing_env"),
    "param": ("""
        version: 1
        flow:
          id: par
          params:
            date:
              type: string
              required: true
        jobs:
          - id: main
            steps:
              - id: a
                type: noop
                inputs: {d: "{{ params.date }}"}
        """, ":6:7: error[param.missing]"),
}


@pytest.mark.parametrize("kind", sorted(RUN_TIME_ERRORS))
def test_run_time_errors_keep_their_line_and_column_on_a_hit(home: Path, write_flow: Callable[..., Path],
                                                             kind: str) -> None:
    text, where = RUN_TIME_ERRORS[kind]
    flow = write_flow(text)
    miss, _ = traced("run", str(flow))
    assert len(entries(home)) == 1  # a valid flow, whatever fails when it is run
    hit, mods = traced("run", str(flow))
    assert "yaml" not in mods
    assert miss.returncode == hit.returncode == 2
    assert messages(miss) == messages(hit)
    assert any(f"{flow}{where}" in ln for ln in messages(hit)), messages(hit)


def test_resume_of_a_hit_imports_no_yaml(home: Path, tmp_path: Path, write_flow: Callable[..., Path]) -> None:
    gate = tmp_path / "gate"
    flow = write_flow("""
        version: 1
        flow: {id: gated}
        jobs:
          - id: main
            steps:
              - id: first
                type: noop
                inputs: {n: 1}
              - id: wait_for_gate
                type: external.process
                inputs: {command: [sh, -c, 'test -f "$GATE"']}
        """)
    env = {"GATE": str(gate)}
    proc, mods = traced("run", str(flow), "--run-id", "r1", env=env)
    assert proc.returncode == 1 and "yaml" in mods, messages(proc)
    gate.touch()
    proc, mods = traced("resume", "r1", env=env)
    assert proc.returncode == 0, messages(proc)
    assert "yaml" not in mods and "aetherflow.spec.schema" not in mods


# --------------------------------------------------------------------- unusable entries are misses


def spoil_empty(entry: Path) -> None:
    entry.write_bytes(b"")  # the marker of earlier releases


def spoil_truncated(entry: Path) -> None:
    entry.write_bytes(entry.read_bytes()[:-3])


def spoil_flipped(entry: Path) -> None:
    blob = bytearray(entry.read_bytes())
    blob[-2] ^= 0x01  # inside the payload: the digest no longer matches
    entry.write_bytes(bytes(blob))


def spoil_other_format(entry: Path) -> None:
    entry.write_bytes(entry.read_bytes().replace(b"aetherflow-valid 1 ", b"aetherflow-valid 9 ", 1))


def spoil_garbage(entry: Path) -> None:
    entry.write_bytes(os.urandom(200))


SPOILERS = {f.__name__.removeprefix("spoil_"): f
            for f in (spoil_empty, spoil_truncated, spoil_flipped, spoil_other_format, spoil_garbage)}


@pytest.mark.parametrize("how", sorted(SPOILERS))
def test_unusable_entry_is_a_miss_and_is_rewritten(home: Path, write_flow: Callable[..., Path], how: str) -> None:
    flow = write_flow(ONE_STEP)
    assert traced("run", str(flow))[0].returncode == 0
    [entry] = entries(home)
    good = entry.read_bytes()
    SPOILERS[how](entry)
    proc, mods = traced("run", str(flow))
    assert proc.returncode == 0 and messages(proc) == [], messages(proc)
    assert "yaml" in mods and "aetherflow.spec.schema" in mods  # parsed and checked again
    assert entries(home) == [entry] and entry.read_bytes() == good
    proc, mods = traced("run", str(flow))
    assert proc.returncode == 0 and "yaml" not in mods


def test_editing_the_flow_parses_it_again(home: Path, write_flow: Callable[..., Path]) -> None:
    flow = write_flow(ONE_STEP)
    assert traced("run", str(flow))[0].returncode == 0
    flow.write_text(flow.read_text().replace("id: s", "id: renamed"))
    proc, mods = traced("run", str(flow), "--run-id", "edited", "--json")
    assert proc.returncode == 0, messages(proc)
    assert "yaml" in mods
    assert len(entries(home)) == 2
    proc, mods = traced("runs", "show", "edited", "--json")
    assert [s["step_id"] for s in json.loads(proc.stdout)["jobs"][0]["steps"]] == ["renamed"]


def test_switched_off_neither_reads_nor_writes(home: Path, write_flow: Callable[..., Path]) -> None:
    flow = write_flow(ONE_STEP)
    off = {"AETHERFLOW_VALIDATION_CACHE": "0"}
    proc, mods = traced("run", str(flow), env=off)
    assert proc.returncode == 0 and "yaml" in mods
    assert not (home / "cache" / "valid").exists()  # (cache/ may hold other caches)
    assert traced("run", str(flow))[0].returncode == 0
    [entry] = entries(home)
    before = entry.stat().st_mtime_ns
    os.utime(entry, ns=(before - 10**9, before - 10**9))
    proc, mods = traced("run", str(flow), env=off)
    assert proc.returncode == 0 and "yaml" in mods
    assert entry.stat().st_mtime_ns == before - 10**9  # not even looked up


# --------------------------------------------------------------------- the cache on its own


ROUND_TRIP = """
zeta: 1
alpha: 1.0
"mid key": [true, false, null, ~, "true", yes, on, 012, "012", 0x1F, 0o17, 1e3, -0.0]
floats: [.inf, -.inf, .nan, 1.5, 3.0e-5]
big: 123456789012345678901234567890
time: 12:30
date: 2026-11-20
text: |
  line one
  line two
unicode: "caf\\u00e9 \\U0001F600"
nested: {b: {d: [], c: {}}, a: [[1, [2, [3]]]]}
"""


def test_remember_then_lookup_round_trips_exactly(tmp_path: Path) -> None:
    data, positions = load_yaml(ROUND_TRIP, "rt.yaml")
    cache = ValidationCache(tmp_path / "valid")
    key = "ab" * 32
    cache.remember(key, data, positions)
    got = cache.lookup(key)
    assert got is not None
    got_data, got_positions = got
    assert shape(got_data) == shape(data)
    assert got_data is not data
    assert math.copysign(1.0, got_data["mid key"][-1]) == -1.0
    assert got_data["unicode"] == "caf\u00e9 \U0001f600"
    assert got_positions.tables() == positions.tables()
    for table, orig in zip(got_positions.tables(), positions.tables(), strict=True):
        assert list(table) == list(orig) and all(type(p) is tuple for p in table)
    for path in [("nested", "b", "c"), ("mid key", 7), ("floats", 2), ("nope", 1)]:
        assert got_positions.get(path) == positions.get(path)
        assert got_positions.key(path) == positions.key(path)
        assert got_positions.location("rt.yaml", path) == positions.location("rt.yaml", path)


def test_lone_surrogates_round_trip(tmp_path: Path) -> None:
    # libyaml refuses "\ud800"; the pure-Python PyYAML parser (no libyaml) returns it
    cache = ValidationCache(tmp_path)
    cache.remember("9" * 64, {"s": "\ud800x"}, Positions({("s",): (1, 4)}, {("s",): (1, 1)}))
    got = cache.lookup("9" * 64)
    assert got is not None and got[0] == {"s": "\ud800x"} and got[1].get(("s",)) == (1, 4)


def test_entry_is_named_for_its_key(tmp_path: Path) -> None:
    data, positions = load_yaml("a: 1\n", "f.yaml")
    cache = ValidationCache(tmp_path)
    k1, k2 = "1" * 64, "2" * 64
    cache.remember(k1, data, positions)
    os.rename(tmp_path / k1, tmp_path / k2)  # an entry under another name is not that key's
    assert cache.lookup(k2) is None
    assert cache.lookup(k1) is None


def test_lookup_of_an_unreadable_entry_is_a_miss(tmp_path: Path) -> None:
    cache = ValidationCache(tmp_path)
    (tmp_path / ("c" * 64)).mkdir()  # a directory where the entry should be
    assert cache.lookup("c" * 64) is None
    assert cache.lookup("d" * 64) is None


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    data, positions = load_yaml("a: 1\n", "f.yaml")
    cache = ValidationCache(tmp_path)
    stale, fresh = tmp_path / f".{'e' * 64}.1.tmp", tmp_path / f".{'f' * 64}.2.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (1000, 1000))
    cache.remember("0" * 64, data, positions)
    assert not stale.exists() and fresh.exists()
