"""Edge cases of the run contract found in review: each asserts what an operator relies on."""

from __future__ import annotations

import base64
import json
import os
import stat
import textwrap
from pathlib import Path

import pytest
from support import job_doc, show, step_doc

PLUGIN = '''
import sys
from aetherflow.api import Step, StepResult, register_step


@register_step("edge.exit")
class Exit(Step):
    def run(self, ctx, inputs):
        raise SystemExit(3)


@register_step("edge.types", outcomes=["small"])
class Types(Step):
    def run(self):  # aetherflow-core style: self.inputs
        return {"list": isinstance(self.inputs["items"], list), "dict": isinstance(self.inputs["cfg"], dict)}


@register_step("edge.big")
class Big(Step):
    def run(self, ctx, inputs):
        return StepResult("SUCCESS", {"text": "\\u20ac" * 400_000})


@register_step("edge.small", outcomes=["small"])
class Small(Step):
    def run(self, ctx, inputs):
        return StepResult("SUCCESS", {}, outcome="small")
'''


def plugin_dir(tmp_path: Path) -> str:
    d = tmp_path / "edgeplug"
    d.mkdir(exist_ok=True)
    (d / "edge.py").write_text(textwrap.dedent(PLUGIN))
    return str(d)


def run_json(cli, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    res = cli(*args, "--json", env=env)
    return res.exit_code, json.loads(res.stdout) if res.stdout.strip() else {}, res.stderr


def test_run_id_cannot_escape_the_workspace(cli, write_flow, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: trav, workspace: {root: ws, cleanup_policy: always}}
        jobs: [{id: j, steps: [{id: s, type: noop}]}]
        """)
    victim = tmp_path / "ws" / "other" / "j" / "r1" / "data.txt"
    victim.parent.mkdir(parents=True)
    victim.write_text("keep")
    for bad in ("../..", "a/b", "x" * 200, ".hidden"):
        res = cli("run", str(flow), "--run-id", bad)
        assert res.exit_code == 2 and "usage.run_id" in res.stderr, (bad, res.stderr)
    assert victim.read_text() == "keep"


def test_a_step_raising_systemexit_is_a_failed_step(cli, write_flow, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: sysexit}
        jobs:
          - {id: a, steps: [{id: boom, type: edge.exit}]}
          - {id: b, steps: [{id: fine, type: noop}]}
        """)
    code, doc, err = run_json(cli, "run", str(flow), "--plugin-path", plugin_dir(tmp_path))
    assert code == 1 and doc["jobs"] == {"a": "FAILED", "b": "SUCCESS"}
    assert "SystemExit" in err


def test_legacy_steps_get_plain_lists_and_dicts(cli, write_flow, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: types}
        jobs: [{id: a, steps: [{id: t, type: edge.types, inputs: {items: [1, 2], cfg: {k: v}}}]}]
        """)
    code, doc, err = run_json(cli, "run", str(flow), "--plugin-path", plugin_dir(tmp_path))
    assert code == 0, err
    assert step_doc(show(cli, doc["run_id"]), "a", "t")["outputs"] == {"list": True, "dict": True}


def test_outputs_limit_counts_utf8_bytes(cli, write_flow, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: big}
        jobs: [{id: a, steps: [{id: b, type: edge.big}]}]
        """)
    code, doc, err = run_json(cli, "run", str(flow), "--plugin-path", plugin_dir(tmp_path))
    assert code == 1 and "byte limit" in err  # 400,000 characters are 1.2 MB of UTF-8


def test_when_false_step_keeps_the_job_outcome_and_complete_job_steps_are_visible(cli, write_flow, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: outc}
        jobs:
          - id: a
            steps:
              - {id: c, type: edge.small}
              - {id: later, type: noop, when: "false"}
          - id: sc
            steps:
              - {id: c, type: edge.small, on_outcome: {small: complete_job}}
              - {id: after, type: noop}
          - id: read
            depends_on: [a, sc]
            steps:
              - id: r
                type: noop
                inputs: {outcome: "{{ jobs.a.outcome }}", after: "{{ jobs.sc.steps.after.status }}"}
        """)
    code, doc, err = run_json(cli, "run", str(flow), "--plugin-path", plugin_dir(tmp_path))
    assert code == 0, err
    shown = show(cli, doc["run_id"])
    assert step_doc(shown, "read", "r")["outputs"] == {"outcome": "small", "after": "SKIPPED"}


@pytest.mark.store_backends  # also with the store selected by a PostgreSQL URL
def test_run_id_of_another_flow_or_with_params_is_refused(cli, write_flow) -> None:
    one = write_flow("version: 1\nflow: {id: one, params: {p: {default: x}}}\njobs: [{id: a, steps: [{id: s, type: noop}]}]\n",
                     "one.yaml")
    two = write_flow("version: 1\nflow: {id: two}\njobs: [{id: a, steps: [{id: s, type: noop}]}]\n", "two.yaml")
    assert cli("run", str(one), "--run-id", "r1").exit_code == 0
    res = cli("run", str(two), "--run-id", "r1")
    assert res.exit_code == 2 and "usage.run_id_other_flow" in res.stderr
    res = cli("run", str(one), "--run-id", "r1", "--param", "p=y")
    assert res.exit_code == 2 and "usage.params_of_existing_run" in res.stderr


def test_run_id_of_an_existing_run_keeps_its_business_key(cli, write_flow) -> None:
    flow = write_flow("version: 1\nflow: {id: keyed, unique: {key: order}}\n"
                      "jobs: [{id: a, steps: [{id: s, type: noop}]}]\n")
    assert cli("run", str(flow), "--run-id", "k1", "--key", "42").exit_code == 0
    res = cli("run", str(flow), "--run-id", "k1", "--key", "43")
    assert res.exit_code == 2 and "usage.key_of_existing_run" in res.stderr and "order::42" in res.stderr
    for same in ("42", "order::42"):  # the key it has: nothing to change
        res = cli("run", str(flow), "--run-id", "k1", "--key", same)
        assert res.exit_code == 0, res.stderr


@pytest.mark.store_backends  # also with the store selected by a PostgreSQL URL
def test_job_by_job_in_one_run_with_run_id(cli, write_flow) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: stepwise}
        jobs:
          - {id: a, steps: [{id: s, type: noop, inputs: {v: 1}}], }
          - {id: b, depends_on: [a], steps: [{id: s, type: noop, inputs: {v: "{{ jobs.a.steps.s.outputs.v }}"}}]}
        """)
    assert cli("run", str(flow), "--run-id", "r2", "--job", "a").exit_code == 0
    code, doc, err = run_json(cli, "run", str(flow), "--run-id", "r2", "--job", "b")
    assert code == 0, err
    assert doc["jobs"] == {"a": "SUCCESS", "b": "SUCCESS"}
    assert step_doc(show(cli, "r2"), "b", "s")["outputs"] == {"v": 1}


@pytest.mark.store_backends  # also with the store selected by a PostgreSQL URL
def test_cancel_marks_the_waiting_job_and_step_cancelled(cli, write_flow) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: cw}
        jobs: [{id: a, steps: [{id: w, type: wait_for_event, inputs: {events: [go]}}]}]
        """)
    code, doc, _ = run_json(cli, "run", str(flow))
    assert cli("cancel", doc["run_id"], "--reason", "stop").exit_code == 0
    shown = show(cli, doc["run_id"])
    assert shown["run"]["status"] == "CANCELLED"
    assert job_doc(shown, "a")["status"] == "CANCELLED"
    assert step_doc(shown, "a", "w")["status"] == "CANCELLED"
    assert shown["waits"] == []


def test_file_secret_keeps_its_bytes_and_wrapped_base64_decodes(cli, write_flow, tmp_path: Path) -> None:
    (tmp_path / "raw.txt").write_bytes(b"a\rb-inner\r\nline2\n")
    wrapped = base64.encodebytes(("s3cr3t-" * 20).encode()).decode()  # wrapped at 76 columns
    (tmp_path / "b64.txt").write_text(wrapped)
    flow = write_flow(f"""
        version: 1
        flow: {{id: filesec}}
        secrets:
          raw: {{file: {tmp_path / "raw.txt"}}}
          wrapped: {{file: {tmp_path / "b64.txt"}, decode: base64}}
        jobs:
          - id: a
            steps:
              - id: p
                type: external.process
                inputs:
                  command: [python3, -c, "import os,sys; sys.exit(0 if os.environ['R'] == 'a\\\\rb-inner\\\\r\\\\nline2' and os.environ['W'].startswith('s3cr3t-') else 7)"]
                  env: {{R: "{{{{ secrets.raw }}}}", W: "{{{{ secrets.wrapped }}}}"}}
        """)
    res = cli("run", str(flow))
    assert res.exit_code == 0, res.stderr


def test_lines_of_a_multiline_secret_are_masked_in_errors(cli, write_flow, tmp_path: Path) -> None:
    key = "\n".join(f"LINE{i:02d}-" + "Q" * 40 for i in range(30))
    (tmp_path / "key.pem").write_text(key + "\n")
    flow = write_flow(f"""
        version: 1
        flow: {{id: pem}}
        secrets: {{pem: {{file: {tmp_path / "key.pem"}}}}}
        jobs:
          - id: a
            steps:
              - id: leak
                type: external.process
                inputs:
                  command: [sh, -c, 'printf "%s\\n" "$PEM" >&2; exit 1']
                  env: {{PEM: "{{{{ secrets.pem }}}}"}}
        """)
    res = cli("run", str(flow))
    assert res.exit_code == 1
    assert "QQQQQQQQ" not in res.stderr and "***" in res.stderr
    db = Path(os.environ["AETHERFLOW_HOME"]) / "state.db"
    raw = db.read_bytes() + (Path(str(db) + "-wal").read_bytes() if Path(str(db) + "-wal").exists() else b"")
    assert b"QQQQQQQQQQ" not in raw


def test_event_data_carrying_a_secret_fails_the_template_that_reads_it(cli, write_flow, monkeypatch) -> None:
    monkeypatch.setenv("TOK", "tok-SuperSecret-123")
    flow = write_flow("""
        version: 1
        flow: {id: evsec}
        secrets: {tok: {env: TOK}}
        jobs:
          - id: a
            steps:
              - {id: w, type: wait_for_event, inputs: {events: [go]}}
              - {id: use, type: noop, inputs: {t: "token is {{ steps.w.token }}"}}
        """)
    code, doc, _ = run_json(cli, "run", str(flow))
    res = cli("resume", doc["run_id"], "--event", "go", "--data", '{"token": "tok-SuperSecret-123"}')
    assert res.exit_code == 1
    assert "secrets." in res.stderr and "SuperSecret" not in res.stderr


def test_run_lookup_falls_back_from_state_to_known_stores(cli, write_flow, tmp_path: Path) -> None:
    flow = write_flow("version: 1\nflow: {id: look}\njobs: [{id: a, steps: [{id: s, type: noop}]}]\n")
    code, doc, _ = run_json(cli, "run", str(flow))
    empty = tmp_path / "nowhere" / "empty.db"
    res = cli("runs", "show", doc["run_id"], "--state", str(empty))
    assert res.exit_code == 0, res.stderr
    assert not empty.exists()  # a lookup never creates a store


def test_state_directories_created_private(cli, write_flow, tmp_path: Path) -> None:
    flow = write_flow("version: 1\nflow: {id: perms}\njobs: [{id: a, steps: [{id: s, type: noop}]}]\n")
    state = tmp_path / "newst" / "sub" / "x.db"
    assert cli("run", str(flow), "--state", str(state)).exit_code == 0
    for d in (tmp_path / "newst", tmp_path / "newst" / "sub"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


def test_dry_run_shows_a_selected_job_with_unrun_upstream_as_blocked(cli, write_flow) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: dryblock}
        jobs:
          - {id: a, steps: [{id: s, type: noop}]}
          - {id: c, depends_on: [a], steps: [{id: s, type: noop}]}
        """)
    res = cli("run", str(flow), "--job", "c", "--dry-run")
    assert res.exit_code == 0
    assert "job c after a: blocked (upstream a not selected" in res.stdout
    real = cli("run", str(flow), "--job", "c", "--json")
    assert json.loads(real.stdout)["jobs"]["c"] == "BLOCKED"


def test_job_output_carrying_a_secret_fails_a_template_after_resume(cli, write_flow, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JTOK", "job-Secret-Value-77")
    gate = tmp_path / "gate"
    flow = write_flow(f"""
        version: 1
        flow: {{id: jobsec}}
        secrets: {{tok: {{env: JTOK}}}}
        jobs:
          - id: a
            steps:
              - {{id: s, type: noop, inputs: {{t: "{{{{ secrets.tok }}}}"}}, outputs: {{token: "{{{{ result.t }}}}"}}}}
          - id: b
            depends_on: [a]
            steps:
              - {{id: gate, type: external.process, inputs: {{command: [test, -f, "{gate}"]}}}}
              - {{id: use, type: noop, inputs: {{t: "{{{{ jobs.a.outputs.token }}}}"}}}}
        """)
    code, doc, _ = run_json(cli, "run", str(flow))
    assert code == 1  # the gate fails on the first run
    shown = show(cli, doc["run_id"])
    assert job_doc(shown, "a")["outputs"] == {"token": "***"} and job_doc(shown, "a")["masked_outputs"] == ["token"]
    gate.touch()
    res = cli("resume", doc["run_id"])
    assert res.exit_code == 1
    assert "secrets." in res.stderr and "Secret-Value" not in res.stderr
