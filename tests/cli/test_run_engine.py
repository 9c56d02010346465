"""The run engine through the CLI (in-process): exit codes, stdout vs stderr, ``--json`` shapes,
job order, dependency rules, gating, templates, outputs, selection, workspaces and the
``runs`` / ``cancel`` commands. SPEC sections 1, 3, 4, 5 and 8.

Side effects are counted through a file: the ``TICK`` step appends ``JOB.STEP ATTEMPT`` to
``$COUNT_FILE``, so "ran once" is a line count, not an assumption.
"""

from __future__ import annotations

import json
import stat
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

#: inputs of an external.process step that records one execution of itself in $COUNT_FILE
TICK = """{command: [sh, -c, 'echo "$AETHERFLOW_JOB_ID.$AETHERFLOW_STEP_ID $AETHERFLOW_ATTEMPT" >> "$COUNT_FILE"']}"""
#: like TICK, then fails (exit 3)
TICK_FAIL = """{command: [sh, -c, 'echo "$AETHERFLOW_JOB_ID.$AETHERFLOW_STEP_ID $AETHERFLOW_ATTEMPT" >> "$COUNT_FILE"; echo broken pipe >&2; exit 3']}"""


@pytest.fixture
def count_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "count.log"
    monkeypatch.setenv("COUNT_FILE", str(p))
    return p


@pytest.fixture
def flow(write_flow: Callable[..., Path], count_file: Path) -> Callable[..., Path]:
    """Write a flow; ``@tick`` / ``@fail`` stand for the counting step inputs."""

    def write(text: str, name: str = "flow.yaml") -> Path:
        return write_flow(text.replace("@tick", TICK).replace("@fail", TICK_FAIL), name)

    return write


def counts(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    return Counter(line.split()[0] for line in path.read_text().splitlines() if line.strip())


def run_json(cli: Callable[..., Any], *args: Any) -> tuple[Any, dict[str, Any]]:
    res = cli("run", *args, "--json")
    assert res.stdout.strip(), f"no JSON on stdout; stderr: {res.stderr}"
    return res, json.loads(res.stdout)


def show(cli: Callable[..., Any], run_id: str) -> dict[str, Any]:
    res = cli("runs", "show", run_id, "--json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def jobs_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {j["job_id"]: j for j in doc["jobs"]}


def steps_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{j['job_id']}.{s['step_id']}": s for j in doc["jobs"] for s in j["steps"]}


def history(cli: Callable[..., Any], run_id: str) -> list[dict[str, Any]]:
    res = cli("runs", "show", run_id, "--history", "--json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)["history"]  # type: ignore[no-any-return]


def runs_list(cli: Callable[..., Any]) -> list[dict[str, Any]]:
    res = cli("runs", "list", "--json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)["runs"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# output and exit codes


SIMPLE = """
version: 1
flow: {id: simple}
jobs:
  - id: a
    steps:
      - {id: s1, type: external.process, inputs: @tick}
      - {id: s2, type: noop, inputs: {x: 1}}
"""


def test_success_exits_0_and_is_silent_without_verbose(cli, flow, count_file):
    f = flow(SIMPLE)
    res = cli("run", f)
    assert res.exit_code == 0, res.stderr
    assert res.stdout == ""
    assert res.stderr == ""  # cron mails any output: nothing on success
    assert counts(count_file) == {"a.s1": 1}


def test_verbose_reports_progress_on_stderr_only(cli, flow):
    res = cli("run", flow(SIMPLE), "-v")
    assert res.exit_code == 0, res.stderr
    assert res.stdout == ""
    assert "SUCCESS" in res.stderr
    assert "\x1b[" not in res.stderr  # no terminal: no control codes


def test_json_document_shape(cli, flow):
    res, doc = run_json(cli, flow(SIMPLE))
    assert res.exit_code == 0
    assert doc["schema_version"] == 1
    assert isinstance(doc["run_id"], str) and doc["run_id"]
    assert doc["status"] == "SUCCESS"
    assert doc["flow_id"] == "simple"
    assert doc["jobs"] == {"a": "SUCCESS"}
    assert res.stderr == ""
    # the run id printed is the one recorded
    assert show(cli, doc["run_id"])["run"]["status"] == "SUCCESS"


def test_failed_run_exit_1_one_clear_line_and_resume_command(cli, flow):
    f = flow("""
        version: 1
        flow: {id: failing}
        jobs:
          - id: load
            steps:
              - {id: fetch, type: external.process, inputs: @tick}
              - {id: copy, type: external.process, inputs: @fail}
              - {id: after, type: external.process, inputs: @tick}
        """)
    res = cli("run", f)
    assert res.exit_code == 1
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    run_id = runs_list(cli)[0]["run_id"]
    lines = res.stderr.splitlines()
    failed = [ln for ln in lines if "load.copy" in ln]
    assert len(failed) == 1, res.stderr
    assert "exit code 3" in failed[0]
    assert "broken pipe" in res.stderr  # the tail of the command's stderr
    assert f"aetherflow resume {run_id}" in res.stderr
    doc = show(cli, run_id)
    assert doc["run"]["status"] == "FAILED"
    st = steps_of(doc)
    assert st["load.copy"]["status"] == "FAILED"
    assert "exit code 3" in st["load.copy"]["error"]
    assert st["load.after"]["status"] == "PENDING"


# ---------------------------------------------------------------------------------------------
# job order and dependencies


def test_jobs_run_in_topological_order_file_order_breaks_ties(cli, flow, count_file):
    f = flow("""
        version: 1
        flow: {id: order}
        jobs:
          - id: load
            depends_on: [extract]
            steps: [{id: s, type: external.process, inputs: @tick}]
          - id: extract
            steps: [{id: s, type: external.process, inputs: @tick}]
          - id: report
            depends_on: [load]
            steps: [{id: s, type: external.process, inputs: @tick}]
          - id: audit
            steps: [{id: s, type: external.process, inputs: @tick}]
        """)
    res, doc = run_json(cli, f)
    assert res.exit_code == 0, res.stderr
    expected = ["extract", "load", "report", "audit"]
    assert list(doc["jobs"]) == expected
    assert [j["job_id"] for j in show(cli, doc["run_id"])["jobs"]] == expected
    executed = [line.split(".")[0] for line in count_file.read_text().splitlines()]
    assert executed == expected
    started = [e["job_id"] for e in history(cli, doc["run_id"]) if e["event"] == "job.started"]
    assert started == expected


UP_STEPS = {
    "success": "[{id: s, type: external.process, inputs: @tick}]",
    "failed": "[{id: s, type: external.process, inputs: @fail}]",
    "skipped": "[{id: probe, type: check_items, inputs: {items: []}, on_no_data: skip_job}, {id: s, type: external.process, inputs: @tick}]",
}


@pytest.mark.parametrize("parallel", [1, 3])
@pytest.mark.parametrize(
    ("upstream", "policy", "down_status", "down_reason", "exit_code"),
    [
        ("success", "all_success", "SUCCESS", None, 0),
        ("failed", "all_success", "BLOCKED", "upstream job 'up' FAILED", 1),
        ("skipped", "all_success", "SKIPPED", "upstream skipped", 0),
        ("failed", "all_done", "SUCCESS", None, 1),
        ("skipped", "all_done", "SUCCESS", None, 0),
    ],
)
def test_dependency_table(cli, flow, count_file, upstream, policy, down_status, down_reason, exit_code, parallel):
    f = flow(f"""
        version: 1
        flow: {{id: deps, max_parallel_jobs: {parallel}}}
        jobs:
          - id: up
            steps: {UP_STEPS[upstream]}
          - id: down
            depends_on: [up]
            depends_on_policy: {policy}
            steps: [{{id: s, type: external.process, inputs: @tick}}]
        """)
    res, doc = run_json(cli, f)
    assert res.exit_code == exit_code, res.stderr
    assert doc["jobs"]["down"] == down_status
    assert doc["reasons"].get("down") == down_reason
    job = jobs_of(show(cli, doc["run_id"]))["down"]
    assert job["status"] == down_status
    assert job["reason"] == down_reason
    assert counts(count_file)["down.s"] == (1 if down_status == "SUCCESS" else 0)


@pytest.mark.parametrize("parallel", [1, 3])
def test_blocked_propagates_and_names_its_upstream(cli, flow, count_file, parallel):
    f = flow("""
        version: 1
        flow: {id: chain, max_parallel_jobs: PARALLEL}
        jobs:
          - id: a
            steps: [{id: s, type: external.process, inputs: @fail}]
          - id: b
            depends_on: [a]
            steps: [{id: s, type: external.process, inputs: @tick}]
          - id: c
            depends_on: [b]
            steps: [{id: s, type: external.process, inputs: @tick}]
        """.replace("PARALLEL", str(parallel)))
    res, doc = run_json(cli, f)
    assert res.exit_code == 1
    assert doc["status"] == "FAILED"
    assert doc["jobs"] == {"a": "FAILED", "b": "BLOCKED", "c": "BLOCKED"}
    assert "'a'" in doc["reasons"]["b"]
    assert "'b'" in doc["reasons"]["c"] and "BLOCKED" in doc["reasons"]["c"]
    assert counts(count_file) == {"a.s": 1}
    assert "blocked: c" in res.stderr


def test_skipped_propagates_as_upstream_skipped(cli, flow):
    f = flow("""
        version: 1
        flow: {id: skipchain}
        jobs:
          - id: a
            when: "false"
            steps: [{id: s, type: noop}]
          - id: b
            depends_on: [a]
            steps: [{id: s, type: noop}]
          - id: c
            depends_on: [b]
            steps: [{id: s, type: noop}]
        """)
    res, doc = run_json(cli, f)
    assert res.exit_code == 0
    assert doc["jobs"] == {"a": "SKIPPED", "b": "SKIPPED", "c": "SKIPPED"}
    assert doc["reasons"] == {"a": "condition false", "b": "upstream skipped", "c": "upstream skipped"}


@pytest.mark.parametrize("parallel", [1, 2])
def test_failed_job_does_not_stop_independent_job(cli, flow, count_file, parallel):
    f = flow("""
        version: 1
        flow: {id: indep, max_parallel_jobs: PARALLEL}
        jobs:
          - id: broken
            steps: [{id: s, type: external.process, inputs: @fail}]
          - id: other
            steps:
              - {id: s1, type: external.process, inputs: @tick}
              - {id: s2, type: external.process, inputs: @tick}
        """.replace("PARALLEL", str(parallel)))
    res, doc = run_json(cli, f)
    assert res.exit_code == 1
    assert doc["status"] == "FAILED"
    assert doc["jobs"] == {"broken": "FAILED", "other": "SUCCESS"}
    assert counts(count_file) == {"broken.s": 1, "other.s1": 1, "other.s2": 1}


# ---------------------------------------------------------------------------------------------
# gating: skip_job, when


def test_on_no_data_skip_job_skips_the_rest_and_promotes_outputs(cli, flow, count_file):
    f = flow("""
        version: 1
        flow: {id: probe}
        jobs:
          - id: probe
            steps:
              - id: before
                type: noop
                inputs: {label: nightly}
                outputs: {label: "{{ result.label }}"}
              - id: list_new
                type: check_items
                inputs: {items: []}
                on_no_data: skip_job
                outputs: {count: "{{ result.count }}", has_data: "{{ result.has_data }}"}
              - {id: load, type: external.process, inputs: @tick}
              - {id: publish, type: external.process, inputs: @tick}
          - id: notify
            depends_on: [probe]
            depends_on_policy: all_done
            steps:
              - id: say
                type: debug
                inputs: {count: "{{ jobs.probe.outputs.count }}", label: "{{ jobs.probe.outputs.label }}",
                         status: "{{ jobs.probe.status }}", why: "{{ jobs.probe.skip_reason }}"}
        """)
    res, doc = run_json(cli, f)
    assert res.exit_code == 0, res.stderr
    assert doc["status"] == "SUCCESS"
    assert doc["jobs"]["probe"] == "SKIPPED"
    assert doc["reasons"]["probe"] == "0 item(s), fewer than 1"
    assert counts(count_file) == {}
    shown = show(cli, doc["run_id"])
    probe = jobs_of(shown)["probe"]
    assert probe["status"] == "SKIPPED"
    assert probe["reason"] == "0 item(s), fewer than 1"
    assert probe["outputs"] == {"label": "nightly", "count": 0, "has_data": False}
    st = steps_of(shown)
    assert st["probe.before"]["status"] == "SUCCESS"
    assert st["probe.list_new"]["status"] == "SKIPPED"
    for sid in ("load", "publish"):
        assert st[f"probe.{sid}"]["status"] == "SKIPPED"
        assert st[f"probe.{sid}"]["reason"] == "0 item(s), fewer than 1"
    assert st["notify.say"]["outputs"] == {"count": 0, "label": "nightly", "status": "SKIPPED",
                                          "why": "0 item(s), fewer than 1"}


def test_all_steps_skipped_without_skip_job_ends_success(cli, flow, count_file):
    f = flow("""
        version: 1
        flow: {id: allskip}
        jobs:
          - id: a
            steps:
              - {id: probe, type: check_items, inputs: {items: []}}
              - {id: never, when: "1 == 2", type: external.process, inputs: @tick}
        """)
    res, doc = run_json(cli, f)
    assert res.exit_code == 0, res.stderr
    assert doc["jobs"] == {"a": "SUCCESS"}
    st = steps_of(show(cli, doc["run_id"]))
    assert st["a.probe"]["status"] == "SKIPPED"
    assert st["a.never"]["status"] == "SKIPPED"
    assert st["a.never"]["reason"] == "condition false"
    assert counts(count_file) == {}


def test_when_false_on_job_and_on_step(cli, flow, count_file):
    f = flow("""
        version: 1
        flow:
          id: whens
          params:
            mode: {default: full}
        jobs:
          - id: off
            when: "params.mode == 'none'"
            steps: [{id: s, type: external.process, inputs: @tick}]
          - id: on
            when: "params.mode == 'full' and not (params.mode in ['x', 'y'])"
            steps:
              - {id: skipped, when: "params.mode != 'full'", type: external.process, inputs: @tick}
              - {id: ran, when: "true", type: external.process, inputs: @tick}
        """)
    res, doc = run_json(cli, f)
    assert res.exit_code == 0, res.stderr
    assert doc["jobs"] == {"off": "SKIPPED", "on": "SUCCESS"}
    assert doc["reasons"]["off"] == "condition false"
    shown = show(cli, doc["run_id"])
    assert jobs_of(shown)["off"]["reason"] == "condition false"
    st = steps_of(shown)
    assert st["off.s"]["status"] == "SKIPPED"
    assert st["on.skipped"]["status"] == "SKIPPED"
    assert st["on.skipped"]["reason"] == "condition false"
    assert st["on.ran"]["status"] == "SUCCESS"
    assert counts(count_file) == {"on.ran": 1}


def test_when_over_a_missing_path_is_null_not_a_crash(cli, flow, count_file):
    f = flow("""
        version: 1
        flow: {id: missing, params: {p: {type: object, default: "{}"}}}
        jobs:
          - id: a
            steps:
              - {id: s, type: noop, inputs: {x: 1}}
          - id: b
            depends_on: [a]
            when: "jobs.a.outputs.nothing_here > 0"
            steps: [{id: s, type: external.process, inputs: @tick}]
          - id: c
            depends_on: [a]
            when: "jobs.a.outputs.nothing_here == null and jobs.a.steps.nope.outputs.x == None and params.p.q == null"
            steps: [{id: s, type: external.process, inputs: @tick}]
        """)
    res, doc = run_json(cli, f)
    assert res.exit_code == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert doc["jobs"] == {"a": "SUCCESS", "b": "SKIPPED", "c": "SUCCESS"}
    assert doc["reasons"]["b"] == "condition false"
    assert counts(count_file) == {"c.s": 1}


# ---------------------------------------------------------------------------------------------
# templates and outputs


def test_outputs_promotion_is_typed_and_visible_downstream(cli, flow):
    f = flow("""
        version: 1
        flow: {id: outs}
        jobs:
          - id: probe
            steps:
              - id: list
                type: check_items
                inputs: {items: [a, b, c]}
                outputs: {n: "{{ result.count }}", items: "{{ result.items }}"}
              - id: echo
                type: debug
                inputs: {from_step: "{{ steps.list.count }}", first: "{{ steps.list.items }}", job_n: "{{ job.outputs.n }}"}
          - id: load
            depends_on: [probe]
            when: "jobs.probe.outputs.n > 2 and jobs.probe.outputs.n == 3"
            steps:
              - id: use
                type: debug
                inputs:
                  n: "{{ jobs.probe.outputs.n }}"
                  text: "n={{ jobs.probe.outputs.n }}"
                  items: "{{ jobs.probe.outputs.items }}"
                  via_steps: "{{ jobs.probe.steps.list.outputs.count }}"
                  outcome: "{{ jobs.probe.steps.list.outcome }}"
                  status: "{{ jobs.probe.status }}"
        """)
    res, doc = run_json(cli, f)
    assert res.exit_code == 0, res.stderr
    shown = show(cli, doc["run_id"])
    assert jobs_of(shown)["probe"]["outputs"] == {"n": 3, "items": ["a", "b", "c"]}
    st = steps_of(shown)
    assert st["probe.echo"]["outputs"] == {"from_step": 3, "first": ["a", "b", "c"], "job_n": 3}
    use = st["load.use"]["outputs"]
    assert use == {"n": 3, "text": "n=3", "items": ["a", "b", "c"], "via_steps": 3, "outcome": "success",
                   "status": "SUCCESS"}
    assert isinstance(use["n"], int) and not isinstance(use["n"], bool)


def test_missing_template_value_fails_the_step_naming_the_path(cli, flow):
    f = flow("""
        version: 1
        flow: {id: tmpl}
        jobs:
          - id: a
            steps:
              - {id: p, type: noop, inputs: {x: 1}}
              - {id: s, type: debug, inputs: {v: "{{ steps.p.surely_not_an_output }}"}}
        """)
    res, doc = run_json(cli, f)
    assert res.exit_code == 1
    assert doc["failed_steps"][0]["job"] == "a" and doc["failed_steps"][0]["step"] == "s"
    assert "steps.p.surely_not_an_output" in doc["failed_steps"][0]["error"]
    assert "Traceback" not in res.stderr


PARAMS = """
version: 1
flow:
  id: params
  params:
    n: {type: integer, default: 1}
    name: {default: world}
jobs:
  - id: a
    steps:
      - {id: s, type: debug, inputs: {n: "{{ params.n }}", hello: "hello {{ params.name }}"}}
"""


def test_param_is_typed(cli, flow):
    res, doc = run_json(cli, flow(PARAMS), "--param", "n=42", "--param", "name=ops")
    assert res.exit_code == 0, res.stderr
    shown = show(cli, doc["run_id"])
    assert shown["run"]["params"] == {"n": 42, "name": "ops"}
    assert steps_of(shown)["a.s"]["outputs"] == {"n": 42, "hello": "hello ops"}


def test_param_default_used(cli, flow):
    res, doc = run_json(cli, flow(PARAMS))
    assert res.exit_code == 0, res.stderr
    assert steps_of(show(cli, doc["run_id"]))["a.s"]["outputs"] == {"n": 1, "hello": "hello world"}


@pytest.mark.parametrize(("arg", "needle"), [("n=abc", "n"), ("nope=1", "nope"), ("n", "n")])
def test_bad_or_unknown_param_exits_2_and_runs_nothing(cli, flow, arg, needle):
    res = cli("run", flow(PARAMS), "--param", arg)
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert runs_list(cli) == []


# ---------------------------------------------------------------------------------------------
# selection


SELECT = """
version: 1
flow: {id: select}
jobs:
  - id: a
    steps: [{id: s, type: external.process, inputs: @tick}]
  - id: b
    depends_on: [a]
    steps: [{id: s, type: external.process, inputs: @tick}]
  - id: c
    steps: [{id: s, type: external.process, inputs: @tick}]
"""


def test_job_option_runs_only_that_job(cli, flow, count_file):
    res, doc = run_json(cli, flow(SELECT), "--job", "c")
    assert res.exit_code == 0, res.stderr
    assert doc["jobs"] == {"c": "SUCCESS"}
    assert counts(count_file) == {"c.s": 1}


def test_selected_job_with_unrun_upstream_is_blocked(cli, flow, count_file):
    res, doc = run_json(cli, flow(SELECT), "--job", "b")
    assert res.exit_code == 1
    assert doc["jobs"] == {"b": "BLOCKED"}
    assert "'a'" in doc["reasons"]["b"]
    assert counts(count_file) == {}


def test_with_upstream_adds_upstream_jobs(cli, flow, count_file):
    res, doc = run_json(cli, flow(SELECT), "--flow-job", "b", "--with-upstream")
    assert res.exit_code == 0, res.stderr
    assert doc["jobs"] == {"a": "SUCCESS", "b": "SUCCESS"}
    assert counts(count_file) == {"a.s": 1, "b.s": 1}


def test_unknown_job_exits_2(cli, flow):
    res = cli("run", flow(SELECT), "--job", "zzz")
    assert res.exit_code == 2
    assert "zzz" in res.stderr
    assert runs_list(cli) == []


def test_dry_run_prints_the_plan_and_creates_no_run(cli, flow, count_file, home):
    f = flow(SELECT)
    res = cli("run", f, "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "plan for run" in res.stdout
    for j in ("a", "b", "c"):
        assert f"job {j}" in res.stdout
    assert "step s (external.process): run" in res.stdout
    assert counts(count_file) == {}
    assert runs_list(cli) == []
    res, doc = run_json(cli, f, "--dry-run", "--job", "c")
    assert res.exit_code == 0
    assert [(row["job"], row["action"]) for row in doc["plan"]] == [("a", "not selected"), ("b", "not selected"), ("c", "run")]
    assert runs_list(cli) == []
    assert not (home / "work").exists()


def test_detailed_exitcode_4_when_every_job_skipped(cli, flow):
    f = flow("""
        version: 1
        flow: {id: allskipped}
        jobs:
          - id: a
            when: "false"
            steps: [{id: s, type: noop}]
          - id: b
            steps: [{id: p, type: check_items, inputs: {items: []}, on_no_data: skip_job}]
        """)
    assert cli("run", f).exit_code == 0
    res = cli("run", f, "--detailed-exitcode")
    assert res.exit_code == 4
    assert res.stderr == ""
    # one job not skipped: plain success
    g = flow(SIMPLE, "other.yaml")
    assert cli("run", g, "--detailed-exitcode").exit_code == 0


# ---------------------------------------------------------------------------------------------
# workspaces and cleanup


def test_workspace_directories_exist(cli, flow, home, tmp_path):
    res, doc = run_json(cli, flow(SELECT))
    assert res.exit_code == 0, res.stderr
    rid = doc["run_id"]
    for job in ("a", "b", "c"):
        base = home / "work" / "select" / job / rid
        for sub in ("artifacts", "scratch", "manifests"):
            assert (base / sub).is_dir(), base / sub
    # a relative workspace root is relative to the flow file's directory
    f = flow("""
        version: 1
        flow: {id: rel, workspace: {root: wsroot}}
        jobs:
          - id: j
            steps:
              - id: s
                type: external.process
                inputs: {command: [sh, -c, 'pwd > "$AETHERFLOW_WORKSPACE/artifacts/where"']}
        """, "sub/rel.yaml")
    res, doc = run_json(cli, f)
    assert res.exit_code == 0, res.stderr
    base = tmp_path / "sub" / "wsroot" / "rel" / "j" / doc["run_id"]
    assert {p.name for p in base.iterdir()} >= {"artifacts", "scratch", "manifests"}
    assert Path((base / "artifacts" / "where").read_text().strip()).resolve() == base.resolve()


CLEANUP = """
version: 1
flow: {id: clean, workspace: {root: ws, cleanup_policy: on_success}}
jobs:
  - id: produce
    steps:
      - id: write
        type: external.process
        inputs: {command: [sh, -c, 'echo payload-42 > "$AETHERFLOW_WORKSPACE/artifacts/out.txt"']}
  - id: consume
    depends_on: [produce]
    steps:
      - id: read
        type: external.process
        inputs:
          command: [sh, -c, 'cat "{{ workspace.root }}/clean/produce/{{ run_id }}/artifacts/out.txt"; exit ${CONSUME_EXIT:-0}']
        outputs: {seen: "{{ result.stdout }}"}
"""


def test_cleanup_on_success_runs_at_run_end_not_job_end(cli, flow, tmp_path):
    res, doc = run_json(cli, flow(CLEANUP))
    assert res.exit_code == 0, res.stderr
    rid = doc["run_id"]
    shown = show(cli, rid)
    assert jobs_of(shown)["consume"]["outputs"] == {"seen": "payload-42\n"}
    for job in ("produce", "consume"):
        assert not (tmp_path / "ws" / "clean" / job / rid).exists()


def test_cleanup_on_success_keeps_a_failed_run(cli, flow, tmp_path, monkeypatch):
    monkeypatch.setenv("CONSUME_EXIT", "1")
    res, doc = run_json(cli, flow(CLEANUP))
    assert res.exit_code == 1
    rid = doc["run_id"]
    assert (tmp_path / "ws" / "clean" / "produce" / rid / "artifacts" / "out.txt").read_text() == "payload-42\n"


# ---------------------------------------------------------------------------------------------
# the state store on disk


def test_state_file_0600_and_dir_0700(cli, flow, home):
    assert not home.exists()
    res = cli("run", flow(SIMPLE))
    assert res.exit_code == 0, res.stderr
    db = home / "state.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for side in home.glob("state.db*"):
        assert stat.S_IMODE(side.stat().st_mode) == 0o600, side
    stores = home / "stores"
    assert stores.read_text().splitlines() == [str(db.resolve())]
    assert stat.S_IMODE(stores.stat().st_mode) == 0o600


def test_explicit_state_path(cli, flow, tmp_path, home):
    state = tmp_path / "elsewhere" / "s.db"
    res, doc = run_json(cli, flow(SIMPLE), "--state", state)
    assert res.exit_code == 0, res.stderr
    assert doc["store"] == str(state)
    assert state.exists()
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    # id-only commands find it through $AETHERFLOW_HOME/stores
    assert show(cli, doc["run_id"])["run"]["store"] == str(state)


# ---------------------------------------------------------------------------------------------
# runs list / show / prune, cancel


def test_runs_list_and_show_text_and_json(cli, flow):
    f = flow(SIMPLE)
    _, first = run_json(cli, f)
    g = flow(SELECT, "select.yaml")
    _, second = run_json(cli, g, "--job", "b")  # FAILED (blocked)
    res = cli("runs", "list")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert first["run_id"] in res.stdout and second["run_id"] in res.stdout
    row1 = next(ln for ln in lines if first["run_id"] in ln)
    row2 = next(ln for ln in lines if second["run_id"] in ln)
    assert "SUCCESS" in row1 and "simple" in row1
    assert "FAILED" in row2 and "select" in row2
    assert lines.index(row2) < lines.index(row1)  # newest first

    rows = runs_list(cli)
    assert [r["run_id"] for r in rows] == [second["run_id"], first["run_id"]]
    assert rows[1]["status"] == "SUCCESS" and rows[1]["flow_id"] == "simple"
    res = cli("runs", "list", "--status", "failed", "--json")
    assert [r["run_id"] for r in json.loads(res.stdout)["runs"]] == [second["run_id"]]
    res = cli("runs", "list", "--flow", "simple", "--json")
    assert [r["run_id"] for r in json.loads(res.stdout)["runs"]] == [first["run_id"]]

    res = cli("runs", "show", first["run_id"])
    assert res.exit_code == 0, res.stderr
    assert first["run_id"] in res.stdout
    assert "SUCCESS" in res.stdout
    assert "job a" in res.stdout and "step s1" in res.stdout

    doc = show(cli, second["run_id"])
    assert doc["schema_version"] == 1
    assert doc["run"]["run_id"] == second["run_id"]
    assert doc["run"]["status"] == "FAILED"
    assert doc["run"]["flow_id"] == "select"
    assert {j["job_id"]: j["status"] for j in doc["jobs"]} == {"a": "PENDING", "b": "BLOCKED", "c": "PENDING"}

    hist = history(cli, first["run_id"])
    names = [e["event"] for e in hist]
    assert names[0] == "run.started" and names[-1] == "run.finished"
    assert "step.started" in names and "step.finished" in names
    res = cli("runs", "show", first["run_id"], "--history")
    assert res.exit_code == 0
    assert "run.started" in res.stdout and "step.finished" in res.stdout


def test_runs_show_unknown_id_exits_2(cli, flow):
    cli("run", flow(SIMPLE))
    res = cli("runs", "show", "20000101T000000-abcdef")
    assert res.exit_code == 2
    assert "20000101T000000-abcdef" in res.stderr
    assert "Traceback" not in res.stderr
    assert cli("resume", "20000101T000000-abcdef").exit_code == 2


def test_runs_prune_deletes_finished_runs(cli, flow, home):
    f = flow(SIMPLE)
    rids = [run_json(cli, f)[1]["run_id"] for _ in range(2)]
    ws = [home / "work" / "simple" / "a" / rid for rid in rids]
    assert all(p.is_dir() for p in ws)
    res = cli("runs", "prune", "--older-than", "0s")  # without --yes: only lists
    assert res.exit_code == 0, res.stderr
    assert all(rid in res.stdout for rid in rids)
    assert len(runs_list(cli)) == 2
    res = cli("runs", "prune", "--older-than", "0s", "--yes")
    assert res.exit_code == 0, res.stderr
    assert "deleted 2 run(s)" in res.stdout
    assert runs_list(cli) == []
    assert not any(p.exists() for p in ws)
    assert cli("runs", "show", rids[0]).exit_code == 2
    assert cli("runs", "prune", "--older-than", "yesterday").exit_code == 2


def test_runs_prune_keeps_recent_runs(cli, flow):
    rid = run_json(cli, flow(SIMPLE))[1]["run_id"]
    res = cli("runs", "prune", "--older-than", "1d", "--yes", "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["pruned"] == []
    assert [r["run_id"] for r in runs_list(cli)] == [rid]


def test_cancel_failed_run_then_resume_exits_2(cli, flow, count_file):
    f = flow("""
        version: 1
        flow: {id: cancelme}
        jobs:
          - id: a
            steps: [{id: s, type: external.process, inputs: @fail}]
        """)
    res, doc = run_json(cli, f)
    assert res.exit_code == 1
    rid = doc["run_id"]
    res = cli("cancel", rid, "--reason", "bad input file")
    assert res.exit_code == 0, res.stderr
    assert rid in res.stderr
    shown = show(cli, rid)
    assert shown["run"]["status"] == "CANCELLED"
    assert shown["run"]["cancel_reason"] == "bad input file"
    res = cli("resume", rid)
    assert res.exit_code == 2
    assert "cancel" in res.stderr
    assert counts(count_file) == {"a.s": 1}
    assert cli("cancel", rid).exit_code == 2  # nothing to cancel any more
