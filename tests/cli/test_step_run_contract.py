"""The step and run contract (issue 24), through the command line and a plugin written with
``aetherflow.api``: metadata, telemetry labels, tags, business keys, outcomes and waits, retry
defaults, scheduled resumes, JSON-only results, read-only inputs, the debug step's history."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import show, step_doc

PLUGIN = '''
import copy

from aetherflow.api import STEP_SUCCESS, STEP_WAITING, Step, StepResult, register_step


@register_step("c24.tagged")
class Tagged(Step):
    """Report metadata about what it did."""

    def run(self, ctx, inputs):
        return StepResult(STEP_SUCCESS, {"n": 1}, metadata=dict(inputs.get("meta", {})))


@register_step("c24.sneaky")
class Sneaky(Step):
    """Not registered as waiting, yet returns WAITING."""

    def run(self, ctx, inputs):
        return StepResult(STEP_WAITING, events=["anything"])


@register_step("c24.waiter", waits=True, outcomes=["approved"])
class Waiter(Step):
    """A waiting step that declares 'approved' only."""

    def run(self, ctx, inputs):
        return StepResult(STEP_WAITING, events=list(inputs["events"]))


@register_step("c24.classify", outcomes=["small", "large"])
class Classify(Step):
    def run(self, ctx, inputs):
        return StepResult(STEP_SUCCESS, {}, outcome="small")


@register_step("c24.flaky", retry={"max_attempts": 3, "initial_delay_seconds": 0, "jitter": False})
class Flaky(Step):
    """Fails until its third attempt; retries by default."""

    def run(self, ctx, inputs):
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt} fails")
        return StepResult(STEP_SUCCESS, {"attempt": ctx.attempt})


@register_step("c24.object")
class ReturnsObject(Step):
    def run(self, ctx, inputs):
        return StepResult(STEP_SUCCESS, {"ok": 1, "deep": {"list": [1, {2, 3}]}} if inputs.get("deep") else {"when": object()})


@register_step("c24.bad_metadata")
class BadMetadata(Step):
    def run(self, ctx, inputs):
        return StepResult(STEP_SUCCESS, {}, metadata={"at": float("nan")})


@register_step("c24.mutate")
class Mutate(Step):
    def run(self, ctx, inputs):
        mine = copy.deepcopy(inputs)
        mine["items"].append(4)  # a copy is the step's own
        if inputs.get("in_place"):
            inputs["items"].append(4)
        return StepResult(STEP_SUCCESS, {"mine": mine["items"], "is_dict": isinstance(inputs, dict),
                                         "is_list": isinstance(inputs["items"], list)})
'''

BAD_RETRY = '''
from aetherflow.api import STEP_SUCCESS, Step, StepResult, register_step


@register_step("c24bad.retry", retry={"max_attempts": 0, "backof": "constant"})
class BadRetry(Step):
    def run(self, ctx, inputs):
        return StepResult(STEP_SUCCESS, {})
'''

Cli = Callable[..., Any]


def plugin(tmp_path: Path, text: str = PLUGIN, name: str = "c24") -> str:
    d = tmp_path / f"{name}_plugin"
    d.mkdir(exist_ok=True)
    (d / f"{name}.py").write_text(textwrap.dedent(text), encoding="utf-8")
    return str(d)


def run_json(cli: Cli, *args: object) -> tuple[int, dict[str, Any], str]:
    res = cli(*map(str, args), "--json")
    return res.exit_code, (json.loads(res.stdout) if res.stdout.strip() else {}), res.stderr


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# 1-3: metadata, telemetry labels, tags ----------------------------------------------------------


def test_step_metadata_is_recorded_merged_into_the_run_and_shown(cli: Cli, write_flow: Any, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: meta_flow}
        secrets: {token: {env: C24_TOKEN}}
        jobs:
          - id: j
            steps:
              - {id: a, type: c24.tagged, inputs: {meta: {order_id: 42, region: eu}}}
              - {id: b, type: c24.tagged, inputs: {meta: {region: us, auth: "{{ secrets.token }}"}}}
        """)
    log = tmp_path / "events.jsonl"
    res = cli("run", str(flow), "--plugin-path", plugin(tmp_path), "--events-log", str(log), "--json",
              env={"C24_TOKEN": "tok-s3cret-value"})
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    shown = show(cli, run_id, history=True)
    assert step_doc(shown, "j", "a")["metadata"] == {"order_id": 42, "region": "eu"}
    assert step_doc(shown, "j", "b")["metadata"] == {"region": "us", "auth": "***"}
    assert shown["run"]["runtime_metadata"] == {"order_id": 42, "region": "us", "auth": "***"}
    finished = [e for e in shown["history"] if e["event"] == "step.finished"]
    assert [e["data"].get("metadata") for e in finished] == [{"order_id": 42, "region": "eu"}, {"region": "us", "auth": "***"}]
    end = shown["history"][-1]
    assert end["event"] == "run.finished" and end["data"]["runtime_metadata"] == shown["run"]["runtime_metadata"]
    logged = events(log)
    assert [e["data"].get("metadata") for e in logged if e["event"] == "step.finished"] == [
        {"order_id": 42, "region": "eu"}, {"region": "us", "auth": "***"}]
    assert logged[-1]["data"]["runtime_metadata"] == {"order_id": 42, "region": "us", "auth": "***"}
    text = cli("runs", "show", run_id)
    assert 'runtime metadata {"auth": "***", "order_id": 42, "region": "us"}' in text.stdout
    assert 'metadata: {"order_id": 42, "region": "eu"}' in text.stdout
    assert "tok-s3cret-value" not in text.stdout + log.read_text() + json.dumps(shown)


def test_events_carry_the_runs_labels_and_run_started_matches_the_history(cli: Cli, write_flow: Any,
                                                                         tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow:
          id: labelled
          version: 7
          tags: [sales, eu]
          metadata: {team: payments, priority: high}
          unique: {key: orderid}
          params: {day: {type: string, default: "2026-12-01"}}
        jobs: [{id: j, steps: [{id: s, type: noop}]}]
        """)
    log = tmp_path / "events.jsonl"
    res = cli("run", str(flow), "--key", "42", "--meta", "ticket=T-9", "--meta", "priority=low",
              "--events-log", str(log), "--json")
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    logged = events(log)
    assert logged and all(
        (e["business_key"], e["flow_version"], e["tags"], e["meta"]) ==
        ("orderid::42", 7, ["sales", "eu"], {"team": "payments", "priority": "low", "ticket": "T-9"})
        for e in logged), logged
    shown = show(cli, run_id, history=True)
    started = [e for e in logged if e["event"] == "run.started"]
    assert len(started) == 1
    stored = shown["history"][0]
    assert stored["event"] == "run.started" and started[0]["data"] == stored["data"]
    assert stored["data"]["params"] == {"day": "2026-12-01"} and stored["data"]["business_key"] == "orderid::42"
    run = shown["run"]
    assert (run["tags"], run["flow_metadata"], run["meta"], run["flow_version"]) == (
        ["sales", "eu"], {"team": "payments", "priority": "high"}, {"ticket": "T-9", "priority": "low"}, 7)
    text = cli("runs", "show", run_id).stdout
    assert "tags sales, eu" in text and 'meta {"priority": "low", "ticket": "T-9"}' in text


def test_meta_arguments_are_checked(cli: Cli, write_flow: Any) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: m}
        jobs: [{id: j, steps: [{id: s, type: noop}]}]
        """)
    for bad in (["--meta", "novalue"], ["--meta", "9x=1"], ["--meta", "a=1", "--meta", "a=2"],
                ["--meta", "a=line\nbreak"], ["--meta", "a=" + "x" * 1001]):
        res = cli("run", str(flow), *bad)
        assert res.exit_code == 2 and "usage.meta" in res.stderr, (bad, res.stderr)
    assert cli("runs", "list", "--json").stdout.count('"run_id"') == 0  # nothing was recorded
    res = cli("run", str(flow), "--run-id", "r-meta", "--meta", "a=1")
    assert res.exit_code == 0, res.stderr
    res = cli("run", str(flow), "--run-id", "r-meta", "--meta", "a=2")
    assert res.exit_code == 2 and "usage.meta_of_existing_run" in res.stderr


def test_runs_list_filters_by_tag(cli: Cli, write_flow: Any) -> None:
    for fid, tags in (("t1", "[sales, daily]"), ("t2", "[sales]"), ("t3", "[]")):
        flow = write_flow(f"""
            version: 1
            flow: {{id: {fid}, tags: {tags}}}
            jobs: [{{id: j, steps: [{{id: s, type: noop}}]}}]
            """, name=f"{fid}.yaml")
        assert cli("run", str(flow)).exit_code == 0
    listed = json.loads(cli("runs", "list", "--tag", "sales", "--json").stdout)["runs"]
    assert sorted(r["flow_id"] for r in listed) == ["t1", "t2"]
    assert {r["flow_id"]: r["tags"] for r in listed} == {"t1": ["sales", "daily"], "t2": ["sales"]}
    listed = json.loads(cli("runs", "list", "--tag", "sales", "--tag", "daily", "--json").stdout)["runs"]
    assert [r["flow_id"] for r in listed] == ["t1"]
    assert "no runs" in cli("runs", "list", "--tag", "nope").stdout


# 4: business keys -------------------------------------------------------------------------------


def keyed_flow(write_flow: Any, fid: str, *, scope: str = "flow", key: str = "orderid") -> Path:
    return write_flow(f"""
        version: 1
        flow: {{id: {fid}, unique: {{key: {key}, scope: {scope}}}}}
        jobs:
          - id: j
            steps: [{{id: w, type: wait_for_event, inputs: {{events: [approved]}}}}]
        """, name=f"{fid}.yaml")


def start(cli: Cli, flow: Path, key: str) -> str:
    res = cli("run", str(flow), "--key", key, "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["status"] == "WAITING"
    return str(out["run_id"])


def test_the_same_key_in_two_flows_is_ambiguous_unless_flow_narrows_it(cli: Cli, write_flow: Any) -> None:
    run_a = start(cli, keyed_flow(write_flow, "flow_a"), "42")
    run_b = start(cli, keyed_flow(write_flow, "flow_b"), "42")
    for cmd in (["resume", "--key", "42", "--event", "approved"], ["cancel", "--key", "42"],
                ["runs", "show", "--key", "42"]):
        res = cli(*cmd)
        assert res.exit_code == 2 and "run.key_ambiguous" in res.stderr, (cmd, res.stderr)
        assert run_a in res.stderr and run_b in res.stderr
    assert show(cli, run_a)["run"]["status"] == "WAITING" and show(cli, run_b)["run"]["status"] == "WAITING"
    res = cli("resume", "--key", "42", "--flow", "flow_b", "--event", "approved")
    assert res.exit_code == 0, res.stderr
    assert show(cli, run_b)["run"]["status"] == "SUCCESS" and show(cli, run_a)["run"]["status"] == "WAITING"
    res = cli("runs", "show", "--key", "42", "--json")  # only one run holds it now
    assert res.exit_code == 0 and json.loads(res.stdout)["run"]["run_id"] == run_a
    res = cli("cancel", "--key", "orderid::42")
    assert res.exit_code == 0, res.stderr
    assert show(cli, run_a)["run"]["status"] == "CANCELLED"
    res = cli("resume", "--key", "42", "--event", "approved")
    assert res.exit_code == 2 and "run.key_not_found" in res.stderr
    # no active run: show finds the newest holder per flow, ambiguous across flows
    res = cli("runs", "show", "--key", "42")
    assert res.exit_code == 2 and "run.key_ambiguous" in res.stderr
    res = cli("runs", "show", "--key", "42", "--flow", "flow_b", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["run"]["run_id"] == run_b


def test_an_active_key_older_than_many_finished_runs_is_found(cli: Cli, write_flow: Any) -> None:
    run_a = start(cli, keyed_flow(write_flow, "old_one"), "7")
    busy = write_flow("""
        version: 1
        flow: {id: busy, unique: {key: orderid}}
        jobs: [{id: j, steps: [{id: s, type: noop}]}]
        """, name="busy.yaml")
    for _ in range(25):
        assert cli("run", str(busy), "--key", "7").exit_code == 0
    listed = json.loads(cli("runs", "list", "--key", "7", "--status", "waiting", "--json").stdout)["runs"]
    assert [r["run_id"] for r in listed] == [run_a]
    res = cli("resume", "--key", "7", "--event", "approved")
    assert res.exit_code == 0, res.stderr
    assert show(cli, run_a)["run"]["status"] == "SUCCESS"


def test_key_values_are_checked_and_name_value_must_name_the_flows_key(cli: Cli, write_flow: Any) -> None:
    flow = keyed_flow(write_flow, "kv")
    for bad in ("", "a\tb", "x" * 201, " padded", "a::b", "orderid::", "orderid::a::b", "bad name::x"):
        res = cli("run", str(flow), "--key", bad)
        assert res.exit_code == 2 and "usage.key" in res.stderr, (bad, res.stderr)
        res = cli("resume", "--key", bad, "--event", "approved")
        expected = "run.key_not_found" if bad == "a::b" else "usage.key"  # a lookup of key 'a', value 'b'
        assert res.exit_code == 2 and expected in res.stderr, (bad, res.stderr)
    assert json.loads(cli("runs", "list", "--json").stdout)["runs"] == []
    run_id = start(cli, flow, "orderid::abc-1")
    assert show(cli, run_id)["run"]["business_key"] == "orderid::abc-1"
    for lookup in ("abc-1", "orderid::abc-1"):
        listed = json.loads(cli("runs", "list", "--key", lookup, "--json").stdout)["runs"]
        assert [r["run_id"] for r in listed] == [run_id]
        res = cli("runs", "show", "--key", lookup, "--json")
        assert res.exit_code == 0 and json.loads(res.stdout)["run"]["run_id"] == run_id
    assert json.loads(cli("runs", "list", "--key", "other::abc-1", "--json").stdout)["runs"] == []
    res = cli("resume", run_id, "--flow", "kv", "--event", "approved")
    assert res.exit_code == 2 and "usage.flow_without_key" in res.stderr


def test_a_global_key_conflicts_with_any_holder_whatever_its_scope(cli: Cli, write_flow: Any) -> None:
    per_flow = keyed_flow(write_flow, "per_flow")
    global_flow = keyed_flow(write_flow, "global_flow", scope="global")
    other = keyed_flow(write_flow, "other_flow")
    holder = start(cli, per_flow, "9")
    res = cli("run", str(global_flow), "--key", "9")
    assert res.exit_code == 3 and holder in res.stderr
    assert cli("cancel", holder).exit_code == 0
    global_run = start(cli, global_flow, "9")
    res = cli("run", str(other), "--key", "9")
    assert res.exit_code == 3 and global_run in res.stderr
    start(cli, other, "10")  # another value is free


# 5: outcomes and waits --------------------------------------------------------------------------


def test_only_waiting_step_types_wait_and_only_for_declared_events(cli: Cli, write_flow: Any, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: sneaky}
        jobs:
          - {id: a, steps: [{id: s, type: c24.sneaky}]}
          - {id: b, steps: [{id: w, type: c24.waiter, inputs: {events: [approved, bogus]}}]}
          - id: c
            steps:
              - id: l
                type: with_lock
                inputs: {lock_key: "k", step: {type: c24.sneaky}}
        """)
    code, doc, err = run_json(cli, "run", flow, "--plugin-path", plugin(tmp_path))
    assert code == 1 and doc["jobs"] == {"a": "FAILED", "b": "FAILED", "c": "FAILED"}, err
    shown = show(cli, doc["run_id"])
    assert "not registered as a waiting step" in step_doc(shown, "a", "s")["error"]
    assert "bogus" in step_doc(shown, "b", "w")["error"] and "does not declare" in step_doc(shown, "b", "w")["error"]
    assert "not registered as a waiting step" in step_doc(shown, "c", "l")["error"]
    assert shown["waits"] == []
    res = cli("resume", doc["run_id"], "--event", "anything")
    assert res.exit_code == 2 and "not WAITING" in res.stderr


def test_validate_strict_lists_unrouted_outcomes(cli: Cli, write_flow: Any, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: strict}
        jobs:
          - id: j
            steps:
              - id: c
                type: c24.classify
                on_outcome: {small: complete_job}
              - id: w
                type: wait_for_event
                inputs: {events: [approved, rejected]}
                on_outcome: {approved: continue, rejected: fail, timeout: skip_job}
        """)
    plugins = plugin(tmp_path)
    assert cli("validate", str(flow), "--plugin-path", plugins).exit_code == 0
    res = cli("validate", str(flow), "--strict", "--plugin-path", plugins)
    assert res.exit_code == 2
    assert "flow.yaml:7:15:" in res.stderr and "flow.unrouted_outcome" in res.stderr and "'large'" in res.stderr
    assert res.stderr.count("flow.unrouted_outcome") == 1
    routed = flow.read_text().replace("{small: complete_job}", "{small: complete_job, large: continue}")
    flow.write_text(routed)
    res = cli("validate", str(flow), "--strict", "--plugin-path", plugins)
    assert res.exit_code == 0, res.stderr
    code, doc, err = run_json(cli, "run", flow, "--plugin-path", plugins)  # routing changes nothing at run time
    assert code == 0 and doc["jobs"] == {"j": "SUCCESS"}, err


# 6: retry defaults ------------------------------------------------------------------------------


def test_a_step_type_retries_by_default_and_the_flow_overrides_it(cli: Cli, write_flow: Any, tmp_path: Path) -> None:
    plugins = plugin(tmp_path)
    flow = write_flow("""
        version: 1
        flow: {id: flaky}
        jobs:
          - {id: default, steps: [{id: f, type: c24.flaky}]}
          - {id: once, steps: [{id: f, type: c24.flaky, retry: {max_attempts: 1}}]}
          - {id: more, steps: [{id: f, type: c24.flaky, retry: {max_attempts: 5, backoff: constant}}]}
        """)
    code, doc, err = run_json(cli, "run", flow, "--plugin-path", plugins)
    assert code == 1 and doc["jobs"] == {"default": "SUCCESS", "once": "FAILED", "more": "SUCCESS"}, err
    shown = show(cli, doc["run_id"])
    assert [a["status"] for a in step_doc(shown, "default", "f")["attempts"]] == ["FAILED", "FAILED", "SUCCESS"]
    assert [a["status"] for a in step_doc(shown, "once", "f")["attempts"]] == ["FAILED"]
    out = cli("steps", "show", "c24.flaky", "--plugin-path", plugins).stdout
    assert '"max_attempts": 3' in out and "retry default" in out


def test_an_invalid_retry_default_fails_validation(cli: Cli, write_flow: Any, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: badretry}
        jobs: [{id: j, steps: [{id: s, type: c24bad.retry}]}]
        """)
    res = cli("validate", str(flow), "--plugin-path", plugin(tmp_path, BAD_RETRY, "c24bad"))
    assert res.exit_code == 2
    assert "plugin.bad_retry" in res.stderr and "flow.yaml:3:" in res.stderr
    assert "max_attempts" in res.stderr and "backof" in res.stderr


# 7: resume --at / --in --------------------------------------------------------------------------


def test_resume_at_or_in_schedules_a_waiting_run(cli: Cli, write_flow: Any, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: sched}
        jobs:
          - id: j
            steps:
              - {id: w, type: wait_for_event, inputs: {events: [approved]}}
          - id: k
            steps:
              - {id: t, type: wait, inputs: {duration: 2d}}
        """)
    code, doc, err = run_json(cli, "run", flow)
    assert code == 0 and doc["status"] == "WAITING", err
    run_id = doc["run_id"]
    log = tmp_path / "events.jsonl"
    res = cli("resume", run_id, "--in", "1h", "--events-log", str(log))
    assert res.exit_code == 0 and "resume --due" in res.stderr, res.stderr
    shown = show(cli, run_id)
    due = shown["run"]["due_at"]
    assert all(w["due_at"] == due for w in shown["waits"]) and len(shown["waits"]) == 2
    assert [e["event"] for e in events(log)] == ["run.scheduled"]
    res = cli("resume", "--due", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["due"] == []  # an hour from now: not yet
    res = cli("resume", run_id, "--at", "2020-01-01T00:00:00Z", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["due_at"] == "2020-01-01T00:00:00+00:00"
    res = cli("resume", "--due", "--json")
    assert res.exit_code == 0
    assert [(r["run_id"], r["status"]) for r in json.loads(res.stdout)["due"]] == [(run_id, "SUCCESS")]
    shown = show(cli, run_id, history=True)
    assert step_doc(shown, "j", "w")["outcome"] == "timeout" and step_doc(shown, "k", "t")["outcome"] == "elapsed"
    assert [e["data"]["due_at"] for e in shown["history"] if e["event"] == "run.scheduled"][-1] == 1577836800.0
    res = cli("resume", run_id, "--in", "1h")
    assert res.exit_code == 2 and "resume.not_waiting" in res.stderr and "SUCCESS" in res.stderr


def test_resume_at_in_arguments(cli: Cli, write_flow: Any) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: failing}
        jobs: [{id: j, steps: [{id: s, type: external.process, inputs: {command: [sh, -c, "exit 3"]}}]}]
        """)
    code, doc, _ = run_json(cli, "run", flow)
    assert code == 1
    run_id = doc["run_id"]
    res = cli("resume", run_id, "--in", "10m")
    assert res.exit_code == 2 and "resume.not_waiting" in res.stderr and f"aetherflow resume {run_id}" in res.stderr
    for args, code_name in ((["--in", "soon"], "usage.due_time"), (["--at", "tomorrow"], "usage.due_time"),
                            (["--at", "2030-01-01", "--in", "1h"], "usage.due_time"),
                            (["--in", "1h", "--event", "go"], "usage.due_time")):
        res = cli("resume", run_id, *args)
        assert res.exit_code == 2 and code_name in res.stderr, (args, res.stderr)
    res = cli("resume", "--due", "--in", "1h")
    assert res.exit_code == 2
    assert show(cli, run_id)["run"]["status"] == "FAILED"


# 8: JSON results, read-only inputs --------------------------------------------------------------


def test_results_that_are_not_json_fail_the_step_naming_key_and_type(cli: Cli, write_flow: Any, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: notjson}
        jobs:
          - {id: a, steps: [{id: s, type: c24.object}]}
          - {id: b, steps: [{id: s, type: c24.object, inputs: {deep: true}}]}
          - {id: c, steps: [{id: s, type: c24.bad_metadata}]}
        """)
    code, doc, err = run_json(cli, "run", flow, "--plugin-path", plugin(tmp_path))
    assert code == 1 and doc["jobs"] == {"a": "FAILED", "b": "FAILED", "c": "FAILED"}, err
    shown = show(cli, doc["run_id"])
    assert "step output 'when' is of type 'object', not JSON" in step_doc(shown, "a", "s")["error"]
    assert "step output 'deep.list[1]' is of type 'set', not JSON" in step_doc(shown, "b", "s")["error"]
    assert "step metadata 'at' is the float nan, not JSON" in step_doc(shown, "c", "s")["error"]
    assert all(step_doc(shown, j, "s")["outputs"] == {} for j in "abc")


def test_inputs_are_read_only_yet_dicts_and_lists(cli: Cli, write_flow: Any, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: ro}
        jobs:
          - {id: copy, steps: [{id: s, type: c24.mutate, inputs: {items: [1, 2, 3]}}]}
          - {id: in_place, steps: [{id: s, type: c24.mutate, inputs: {items: [1, 2, 3], in_place: true}}]}
        """)
    code, doc, err = run_json(cli, "run", flow, "--plugin-path", plugin(tmp_path))
    assert code == 1 and doc["jobs"] == {"copy": "SUCCESS", "in_place": "FAILED"}, err
    shown = show(cli, doc["run_id"])
    assert step_doc(shown, "copy", "s")["outputs"] == {"mine": [1, 2, 3, 4], "is_dict": True, "is_list": True}
    assert "step inputs are read-only" in step_doc(shown, "in_place", "s")["error"]


# 9: the debug step's history --------------------------------------------------------------------


def test_debug_shows_the_runs_history_so_far(cli: Cli, write_flow: Any) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: dbg}
        jobs:
          - id: j
            steps:
              - {id: first, type: noop}
              - {id: look, type: debug, inputs: {message: here, show_history: true}}
        """)
    res = cli("run", str(flow), "-v", "--json")
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    outputs = step_doc(show(cli, run_id), "j", "look")["outputs"]
    history = outputs["history"]
    assert history[0].startswith("run.started") and "step.finished j.first #1" in history[3]
    assert history[-1] == 'step.started j.look #1 {"type": "debug"}' and outputs["history_events"] == len(history)
    assert outputs["message"] == "here" and "show_history" not in outputs
    assert "debug history: step.finished j.first #1" in res.stderr
