"""``aetherflow resume`` (and ``run --run-id``) in-process: what a resume executes again and what
it restores. SPEC sections 1, 4 and 5.

Every counting step appends ``JOB.STEP ATTEMPT`` to ``$COUNT_FILE`` (``@tick``); ``@gate`` does
the same and then fails until the file ``$OK_FILE`` exists, which is how a test "fixes the
cause" between the failed run and the resume.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# the same tests with the store selected by a PostgreSQL URL (tests/conftest.py)
pytestmark = pytest.mark.store_backends

TICK = """{command: [sh, -c, 'echo "$AETHERFLOW_JOB_ID.$AETHERFLOW_STEP_ID $AETHERFLOW_ATTEMPT" >> "$COUNT_FILE"']}"""
GATE = ("""{command: [sh, -c, 'echo "$AETHERFLOW_JOB_ID.$AETHERFLOW_STEP_ID $AETHERFLOW_ATTEMPT" >> "$COUNT_FILE"; """
        """test -f "$OK_FILE" || { echo "not ready: $OK_FILE" >&2; exit 7; }']}""")


@pytest.fixture
def count_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "count.log"
    monkeypatch.setenv("COUNT_FILE", str(p))
    return p


@pytest.fixture
def ok_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "ok.flag"
    monkeypatch.setenv("OK_FILE", str(p))
    return p


@pytest.fixture
def flow(write_flow: Callable[..., Path], count_file: Path, ok_file: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "flow.yaml") -> Path:
        return write_flow(text.replace("@tick", TICK).replace("@gate", GATE), name)

    return write


def lines(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        name, attempt = line.split()
        out.append((name, int(attempt)))
    return out


def counts(path: Path) -> Counter[str]:
    return Counter(name for name, _ in lines(path))


def run_json(cli: Callable[..., Any], *args: Any) -> tuple[Any, dict[str, Any]]:
    res = cli(*args, "--json")
    assert res.stdout.strip(), f"no JSON on stdout; stderr: {res.stderr}"
    return res, json.loads(res.stdout)


def show(cli: Callable[..., Any], run_id: str, *extra: str) -> dict[str, Any]:
    res = cli("runs", "show", run_id, "--json", *extra)
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def steps_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{j['job_id']}.{s['step_id']}": s for j in doc["jobs"] for s in j["steps"]}


def jobs_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {j["job_id"]: j for j in doc["jobs"]}


# ---------------------------------------------------------------------------------------------


RESUMABLE = """
version: 1
flow: {id: resumable}
jobs:
  - id: a
    steps:
      - {id: s1, type: external.process, inputs: @tick}
      - id: tok
        type: noop
        inputs: {token: "{{ env.TOKEN:first }}", n: 5}
        outputs: {token: "{{ result.token }}", n: "{{ result.n }}"}
      - {id: s2, type: external.process, inputs: @gate}
      - id: s3
        type: debug
        inputs: {seen: "{{ steps.tok.token }}", n: "{{ steps.tok.n }}"}
  - id: b
    depends_on: [a]
    steps:
      - {id: s1, type: external.process, inputs: @tick}
      - id: use
        type: debug
        inputs: {seen: "{{ jobs.a.outputs.token }}", n: "{{ jobs.a.outputs.n }}", step_out: "{{ jobs.a.steps.tok.outputs.token }}"}
  - id: side
    steps:
      - {id: s1, type: external.process, inputs: @tick}
"""


def test_resume_after_failed_step_runs_only_what_did_not_succeed(cli, flow, count_file, ok_file, monkeypatch):
    f = flow(RESUMABLE)
    monkeypatch.setenv("TOKEN", "first")
    res, doc = run_json(cli, "run", f)
    assert res.exit_code == 1
    rid = doc["run_id"]
    assert doc["jobs"] == {"a": "FAILED", "b": "BLOCKED", "side": "SUCCESS"}
    assert counts(count_file) == {"a.s1": 1, "a.s2": 1, "side.s1": 1}
    assert f"aetherflow resume {rid}" in res.stderr

    ok_file.touch()  # fix the cause
    monkeypatch.setenv("TOKEN", "second")  # a re-executed tok step would now produce "second"
    res, out = run_json(cli, "resume", rid)
    assert res.exit_code == 0, res.stderr
    assert out["run_id"] == rid
    assert out["status"] == "SUCCESS"
    assert counts(count_file) == {"a.s1": 1, "a.s2": 2, "side.s1": 1, "b.s1": 1}
    assert [a for name, a in lines(count_file) if name == "a.s2"] == [1, 2]

    shown = show(cli, rid)
    assert shown["run"]["status"] == "SUCCESS"
    assert shown["run"]["attempt"] == 2
    st = steps_of(shown)
    # outputs restored from the store, not recomputed
    assert st["a.tok"]["attempt"] == 1
    assert st["a.s3"]["outputs"] == {"seen": "first", "n": 5}
    assert st["b.use"]["outputs"] == {"seen": "first", "n": 5, "step_out": "first"}
    assert jobs_of(shown)["a"]["outputs"] == {"token": "first", "n": 5}
    assert st["a.s1"]["attempt"] == 1 and st["side.s1"]["attempt"] == 1
    assert [(a["attempt"], a["status"]) for a in st["a.s2"]["attempts"]] == [(1, "FAILED"), (2, "SUCCESS")]
    assert "exit code 7" in st["a.s2"]["attempts"][0]["error"]

    names = [e["event"] for e in show(cli, rid, "--history")["history"]]
    assert names.count("run.resumed") == 1
    assert names.index("run.resumed") > names.index("run.finished")


def test_resume_success_run_says_so_and_exits_0(cli, flow, count_file):
    f = flow(RESUMABLE.replace("@gate", "@tick"))
    res, doc = run_json(cli, "run", f)
    assert res.exit_code == 0, res.stderr
    before = counts(count_file)
    res = cli("resume", doc["run_id"])
    assert res.exit_code == 0
    assert "already succeeded" in (res.stdout + res.stderr)
    assert counts(count_file) == before
    assert show(cli, doc["run_id"])["run"]["attempt"] == 1


def test_skipped_jobs_stay_skipped_on_resume(cli, flow, count_file, ok_file, monkeypatch):
    f = flow("""
        version: 1
        flow: {id: staysskipped}
        jobs:
          - id: probe
            steps:
              - {id: s0, type: external.process, inputs: @tick}
              - {id: list, type: check_items, inputs: {items: "{{ env.ITEMS: }}"}, on_no_data: skip_job}
              - {id: load, type: external.process, inputs: @tick}
          - id: gated
            when: "env.FLIP == 'yes'"
            steps: [{id: s, type: external.process, inputs: @tick}]
          - id: after_probe
            depends_on: [probe]
            steps: [{id: s, type: external.process, inputs: @tick}]
          - id: broken
            steps: [{id: s, type: external.process, inputs: @gate}]
        """)
    monkeypatch.delenv("ITEMS", raising=False)
    monkeypatch.setenv("FLIP", "no")
    res, doc = run_json(cli, "run", f)
    assert res.exit_code == 1
    rid = doc["run_id"]
    assert doc["jobs"] == {"probe": "SKIPPED", "gated": "SKIPPED", "after_probe": "SKIPPED", "broken": "FAILED"}

    # now every condition would go the other way; resume must not flip a skipped job
    ok_file.touch()
    monkeypatch.setenv("ITEMS", "file1")
    monkeypatch.setenv("FLIP", "yes")
    res, out = run_json(cli, "resume", rid)
    assert res.exit_code == 0, res.stderr
    assert out["status"] == "SUCCESS"
    assert counts(count_file) == {"probe.s0": 1, "broken.s": 2}
    jobs = jobs_of(show(cli, rid))
    assert {j: v["status"] for j, v in jobs.items()} == {
        "probe": "SKIPPED", "gated": "SKIPPED", "after_probe": "SKIPPED", "broken": "SUCCESS"}
    assert jobs["probe"]["reason"] == "0 item(s), fewer than 1"
    assert jobs["gated"]["reason"] == "condition false"
    assert jobs["after_probe"]["reason"] == "upstream skipped"


def test_changed_flow_refuses_resume_unless_accepted(cli, flow, count_file, ok_file):
    f = flow(RESUMABLE)
    res, doc = run_json(cli, "run", f)
    assert res.exit_code == 1
    rid = doc["run_id"]
    before = counts(count_file)
    ok_file.touch()
    f.write_text(f.read_text().replace("n: 5}", "n: 6}"))

    res = cli("resume", rid)
    assert res.exit_code == 2
    assert "changed" in res.stderr
    assert "n: 6" in res.stderr or "n: 5" in res.stderr  # a short diff summary
    assert "--accept-changes" in res.stderr
    assert "Traceback" not in res.stderr
    assert counts(count_file) == before
    assert show(cli, rid)["run"]["status"] == "FAILED"

    res = cli("resume", rid, "--accept-changes")
    assert res.exit_code == 0, res.stderr
    assert counts(count_file) == before + Counter({"a.s2": 1, "b.s1": 1})
    shown = show(cli, rid, "--history")
    assert shown["run"]["status"] == "SUCCESS"
    names = [e["event"] for e in shown["history"]]
    assert "flow.changed_accepted" in names
    assert names.index("flow.changed_accepted") < names.index("run.resumed")
    # the accepted file is now the recorded one: no second refusal
    assert cli("resume", rid).exit_code == 0


RERUN = """
version: 1
flow: {id: rerun}
jobs:
  - id: up
    steps: [{id: s, type: external.process, inputs: @tick}]
  - id: a
    depends_on: [up]
    steps:
      - {id: s1, type: external.process, inputs: @tick}
      - {id: s2, type: external.process, inputs: @tick}
      - {id: s3, type: external.process, inputs: @tick}
  - id: down
    depends_on: [a]
    steps: [{id: s, type: external.process, inputs: @tick}]
  - id: down2
    depends_on: [down]
    steps: [{id: s, type: external.process, inputs: @tick}]
  - id: other
    steps: [{id: s, type: external.process, inputs: @tick}]
"""


def test_rerun_reexecutes_step_later_steps_and_downstream_only(cli, flow, count_file):
    f = flow(RERUN)
    res, doc = run_json(cli, "run", f)
    assert res.exit_code == 0, res.stderr
    rid = doc["run_id"]
    once = Counter({"up.s": 1, "a.s1": 1, "a.s2": 1, "a.s3": 1, "down.s": 1, "down2.s": 1, "other.s": 1})
    assert counts(count_file) == once

    res = cli("resume", rid, "--rerun", "a.s2")
    assert res.exit_code == 0, res.stderr
    assert counts(count_file) == once + Counter({"a.s2": 1, "a.s3": 1, "down.s": 1, "down2.s": 1})
    st = steps_of(show(cli, rid))
    assert st["a.s2"]["attempt"] == 2 and st["a.s3"]["attempt"] == 2 and st["down2.s"]["attempt"] == 2
    assert st["a.s1"]["attempt"] == 1 and st["up.s"]["attempt"] == 1 and st["other.s"]["attempt"] == 1
    assert [a for name, a in lines(count_file) if name == "a.s2"] == [1, 2]


@pytest.mark.parametrize("bad", ["a", "a.zz", "zz.s1"])
def test_rerun_of_unknown_step_exits_2(cli, flow, count_file, bad):
    f = flow(RERUN)
    rid = run_json(cli, "run", f)[1]["run_id"]
    before = counts(count_file)
    res = cli("resume", rid, "--rerun", bad)
    assert res.exit_code == 2
    assert bad in res.stderr
    assert counts(count_file) == before


def test_run_with_existing_run_id_behaves_as_resume(cli, flow, count_file, ok_file):
    f = flow(RESUMABLE)
    res, doc = run_json(cli, "run", f, "--run-id", "nightly-0001")
    assert res.exit_code == 1
    assert doc["run_id"] == "nightly-0001"
    ok_file.touch()
    res, out = run_json(cli, "run", f, "--run-id", "nightly-0001")
    assert res.exit_code == 0, res.stderr
    assert out["run_id"] == "nightly-0001" and out["status"] == "SUCCESS"
    assert counts(count_file) == {"a.s1": 1, "a.s2": 2, "side.s1": 1, "b.s1": 1}
    assert [r["run_id"] for r in json.loads(cli("runs", "list", "--json").stdout)["runs"]] == ["nightly-0001"]
    shown = show(cli, "nightly-0001", "--history")
    assert shown["run"]["attempt"] == 2
    assert [e["event"] for e in shown["history"]].count("run.started") == 1
    # and once it succeeded, the same command says so and runs nothing
    before = counts(count_file)
    res = cli("run", f, "--run-id", "nightly-0001")
    assert res.exit_code == 0
    assert "already succeeded" in res.stderr
    assert counts(count_file) == before


def test_dry_run_of_an_existing_run_shows_the_resume_plan_and_runs_nothing(cli, flow, count_file, ok_file):
    f = flow(RESUMABLE)
    res, _ = run_json(cli, "run", f, "--run-id", "dry-1")
    assert res.exit_code == 1
    before = counts(count_file)
    ok_file.touch()
    res, doc = run_json(cli, "run", f, "--run-id", "dry-1", "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert doc["status"] == "DRY_RUN"
    plan = {row["job"]: (row["action"], {s["id"]: s["action"] for s in row["steps"]}) for row in doc["plan"]}
    assert plan["a"] == ("run", {"s1": "restore (SUCCESS)", "tok": "restore (SUCCESS)", "s2": "run", "s3": "run"})
    assert plan["b"][0] == "run"
    assert plan["side"][0] == "restore (SUCCESS)"
    res = cli("run", f, "--run-id", "dry-1", "--dry-run")
    assert res.exit_code == 0
    assert "plan for run dry-1" in res.stdout and "restore (SUCCESS)" in res.stdout
    assert counts(count_file) == before  # nothing executed
    shown = show(cli, "dry-1")
    assert (shown["run"]["status"], shown["run"]["attempt"]) == ("FAILED", 1)


RETRY = """
version: 1
flow: {id: retry}
jobs:
  - id: a
    steps:
      - id: flaky
        type: external.process
        inputs:
          command: [sh, -c, 'echo "a.flaky $AETHERFLOW_ATTEMPT" >> "$COUNT_FILE"; n=$(wc -l < "$COUNT_FILE"); test "$n" -ge 3 || { echo "try $n failed" >&2; exit 9; }']
        retry: {max_attempts: 3, initial_delay_seconds: 0, jitter: false}
      - {id: after, type: external.process, inputs: @tick}
"""


def test_retry_records_every_attempt_with_its_error(cli, flow, count_file):
    res, doc = run_json(cli, "run", flow(RETRY))
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    assert lines(count_file) == [("a.flaky", 1), ("a.flaky", 2), ("a.flaky", 3), ("a.after", 1)]
    flaky = steps_of(show(cli, doc["run_id"]))["a.flaky"]
    assert flaky["status"] == "SUCCESS"
    assert flaky["attempt"] == 3
    att = flaky["attempts"]
    assert [(a["attempt"], a["status"]) for a in att] == [(1, "FAILED"), (2, "FAILED"), (3, "SUCCESS")]
    assert "exit code 9" in att[0]["error"] and "exit code 9" in att[1]["error"]
    assert att[2]["error"] is None
    hist = show(cli, doc["run_id"], "--history")["history"]
    assert [e["attempt"] for e in hist if e["event"] == "step.retry"] == [1, 2]


def test_retry_exhausted_then_attempts_continue_after_resume(cli, flow, count_file, ok_file):
    f = flow("""
        version: 1
        flow: {id: retry2}
        jobs:
          - id: a
            steps:
              - id: g
                type: external.process
                inputs: @gate
                retry: {max_attempts: 2, initial_delay_seconds: 0, jitter: false}
        """)
    res, doc = run_json(cli, "run", f)
    assert res.exit_code == 1
    rid = doc["run_id"]
    assert lines(count_file) == [("a.g", 1), ("a.g", 2)]
    g = steps_of(show(cli, rid))["a.g"]
    assert g["status"] == "FAILED" and g["attempt"] == 2
    ok_file.touch()
    res = cli("resume", rid)
    assert res.exit_code == 0, res.stderr
    assert lines(count_file) == [("a.g", 1), ("a.g", 2), ("a.g", 3)]
    g = steps_of(show(cli, rid))["a.g"]
    assert g["status"] == "SUCCESS" and g["attempt"] == 3
    assert [(a["attempt"], a["status"]) for a in g["attempts"]] == [(1, "FAILED"), (2, "FAILED"), (3, "SUCCESS")]


def test_resume_unknown_and_cancelled(cli, flow):
    assert cli("resume", "no-such-run").exit_code == 2
    f = flow(RESUMABLE)
    rid = run_json(cli, "run", f)[1]["run_id"]
    assert cli("cancel", rid).exit_code == 0
    res = cli("resume", rid)
    assert res.exit_code == 2
    assert "cancelled" in res.stderr
