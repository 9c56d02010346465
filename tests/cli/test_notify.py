"""Notifications (SPEC 13), for real: a local HTTP server receives the webhook, a local SMTP
server the mail, a command writes what it got on stdin. A notifier that fails is reported on
stderr and in the run's history and never changes the exit code; a crashed run is notified
once, by the first `status` or `resume --due` that finds it."""

from __future__ import annotations

import email
import email.policy
import json
import textwrap
from pathlib import Path

from servers import http_receiver, silent_server, smtp_server
from support import q, show, wait_until

FAILING = """
version: 1
flow: {id: nightly}
secrets: {api_token: {env: API_TOKEN}}
jobs:
  - id: extract
    steps:
      - {id: ok, type: noop}
      - id: fetch
        type: external.process
        inputs: {command: [sh, -c, 'echo "denied for {{ secrets.api_token }}" >&2; exit 7']}
"""
OK = """
version: 1
flow: {id: fine}
jobs:
  - id: a
    steps:
      - {id: s, type: noop}
"""
TOKEN = "tok-" + "5e3c7a91"


def config(home: Path, text: str) -> Path:
    p = home / "config.toml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


def history(cli, run_id: str) -> list[dict]:
    return [e for e in show(cli, run_id, history=True)["history"] if e["event"].startswith("notify.")]


def test_a_failed_run_is_posted_to_the_webhook(cli, write_flow, home: Path) -> None:
    with http_receiver() as inbox:
        config(home, f"""
            [[notify]]
            on = ["failed", "crashed"]
            webhook = "{inbox.url}"
            """)
        res = cli("run", str(write_flow(FAILING)), "--json", env={"API_TOKEN": TOKEN})
        assert res.exit_code == 1
        run_id = json.loads(res.stdout)["run_id"]
        assert len(inbox.requests) == 1
    req = inbox.requests[0]
    assert req.path == "/hooks/T000/secret-path" and req.headers["Content-Type"] == "application/json"
    doc = json.loads(req.body)
    assert (doc["event"], doc["flow_id"], doc["run_id"], doc["status"]) == ("failed", "nightly", run_id, "FAILED")
    assert (doc["failed_job"], doc["failed_step"]) == ("extract", "fetch")
    assert "exit code 7" in doc["error"] and "denied for ***" in doc["error"]
    assert doc["resume_command"] == f"aetherflow resume {run_id}"
    assert doc["host"] and doc["started_at"] and doc["schema_version"] == 1
    assert TOKEN not in req.body.decode()
    assert history(cli, run_id) == [{**history(cli, run_id)[0], "event": "notify.sent"}]
    sent = history(cli, run_id)[0]["data"]
    assert sent["target"].startswith("webhook http://127.0.0.1:") and "secret-path" not in sent["target"]


def test_a_command_gets_the_event_on_stdin(cli, write_flow, home: Path, tmp_path: Path) -> None:
    got = tmp_path / "got.json"
    config(home, f"""
        [[notify]]
        on = ["succeeded"]
        command = ["sh", "-c", "cat > {got}"]
        """)
    res = cli("run", str(write_flow(OK)))
    assert res.exit_code == 0 and res.stderr == "" and res.stdout == ""  # still silent on success
    doc = json.loads(got.read_text())
    assert (doc["event"], doc["status"], doc["flow_id"], doc["resume_command"]) == ("succeeded", "SUCCESS", "fine", None)


def test_mail_through_a_local_smtp_server(cli, write_flow, home: Path) -> None:
    password = "m4il-" + "s3cret"
    with smtp_server(password) as box:
        config(home, f"""
            [[notify]]
            on = ["failed"]
            email = {{to = ["ops@example.com", "oncall@example.com"], subject = "[batch]", host = "127.0.0.1", port = {box.port}, username = "robot", password = "{{{{ env.SMTP_PW }}}}", from = "flows@example.com"}}
            """)
        res = cli("run", str(write_flow(FAILING)), "--json", env={"API_TOKEN": TOKEN, "SMTP_PW": password})
        assert res.exit_code == 1, res.stderr
        assert len(box.messages) == 1
    got = box.messages[0]
    assert (got.mail_from, got.rcpt, got.auth) == ("flows@example.com", ["ops@example.com", "oncall@example.com"], "robot")
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    run_id = json.loads(res.stdout)["run_id"]
    assert msg["Subject"] == f"[batch]: nightly: run {run_id} FAILED"
    body = msg.get_content()
    assert "failed: extract.fetch" in body and f"aetherflow resume {run_id}" in body
    assert json.loads(body[body.index("{"):])["failed_step"] == "fetch"
    assert TOKEN not in body and password not in res.stderr + res.stdout


def test_a_failing_notifier_is_reported_and_changes_no_exit_code(cli, write_flow, home: Path) -> None:
    config(home, """
        [[notify]]
        on = ["succeeded"]
        command = ["sh", "-c", "cat >/dev/null; echo 'pager is down' >&2; exit 3"]
        """)
    res = cli("run", str(write_flow(OK)), "--json")
    assert res.exit_code == 0
    assert "notification succeeded (command sh) failed: exited 3: pager is down" in res.stderr
    events = history(cli, json.loads(res.stdout)["run_id"])
    assert [(e["event"], e["data"]["error"]) for e in events] == [("notify.failed", "exited 3: pager is down")]


def test_a_webhook_that_does_not_answer_times_out(cli, write_flow, home: Path) -> None:
    with silent_server() as url:
        config(home, f"""
            [[notify]]
            on = ["succeeded"]
            webhook = "{url}"
            timeout_seconds = 0.5
            retries = 0
            """)
        res = cli("run", str(write_flow(OK)), "--json")
    assert res.exit_code == 0
    assert "(webhook http://127.0.0.1:" in res.stderr and "failed: no answer within 0.5 s" in res.stderr
    [event] = history(cli, json.loads(res.stdout)["run_id"])
    assert event["event"] == "notify.failed" and event["data"]["tries"] == 1


def test_a_webhook_answering_500_is_tried_again(cli, write_flow, home: Path) -> None:
    with http_receiver(statuses=[500]) as inbox:
        config(home, f"""
            [[notify]]
            on = ["succeeded"]
            webhook = "{inbox.url}"
            retries = 1
            """)
        res = cli("run", str(write_flow(OK)), "--json")
    assert res.exit_code == 0 and res.stderr == ""
    assert len(inbox.requests) == 2
    [event] = history(cli, json.loads(res.stdout)["run_id"])
    assert (event["event"], event["data"]["tries"]) == ("notify.sent", 2)


def test_a_flows_own_notifiers_with_templates(cli, write_flow, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "own.json"
    with http_receiver() as inbox:
        flow = write_flow(f"""
            version: 1
            flow:
              id: own
              params: {{out: {{default: {out}}}}}
              notify:
                - on: [failed]
                  command: [sh, -c, 'cat > "$0"', "{{{{ params.out }}}}"]
                - on: [failed]
                  webhook: "{{{{ env.HOOK_URL }}}}"
            secrets: {{api_token: {{env: API_TOKEN}}}}
            jobs:
              - id: a
                steps:
                  - id: s
                    type: external.process
                    inputs: {{command: [sh, -c, 'echo "{{{{ secrets.api_token }}}}" >&2; exit 1']}}
            """)
        res = cli("run", str(flow), env={"HOOK_URL": inbox.url, "API_TOKEN": TOKEN})
        assert res.exit_code == 1
        assert len(inbox.requests) == 1
    for text in (out.read_text(), inbox.requests[0].body.decode()):
        doc = json.loads(text)
        assert (doc["event"], doc["flow_id"], doc["failed_step"]) == ("failed", "own", "s")
        assert TOKEN not in text


def test_config_notifiers_can_be_limited_to_flows(cli, write_flow, home: Path, tmp_path: Path) -> None:
    got = tmp_path / "got.jsonl"
    config(home, f"""
        [[notify]]
        on = ["succeeded"]
        flows = ["daily_*"]
        command = ["sh", "-c", "cat >> {got}"]
        """)
    assert cli("run", str(write_flow(OK))).exit_code == 0
    assert not got.exists()
    assert cli("run", str(write_flow(OK.replace("id: fine", "id: daily_sales"), name="d.yaml"))).exit_code == 0
    assert json.loads(got.read_text())["flow_id"] == "daily_sales"


def test_invalid_and_lock_busy_are_notified(cli, af, spawn, write_flow, home: Path, tmp_path: Path) -> None:
    got = tmp_path / "got.jsonl"
    config(home, f"""
        [[notify]]
        on = ["invalid", "lock_busy"]
        command = ["sh", "-c", "cat >> {got}"]
        """)
    bad = write_flow("version: 1\nflow: {id: broken}\njobs:\n  - id: a\n    steps: [{id: s, type: nope}]\n", name="bad.yaml")
    assert cli("run", str(bad)).exit_code == 2
    invalid = json.loads(got.read_text().splitlines()[0])
    assert (invalid["event"], invalid["flow_id"], invalid["run_id"]) == ("invalid", None, None)
    assert invalid["flow_file"] == str(bad) and "unknown step type 'nope'" in invalid["error"]
    started, go = tmp_path / "started", tmp_path / "go"
    flow = write_flow(f"""
        version: 1
        flow: {{id: busy, locks: {{scope: flow}}}}
        jobs:
          - id: a
            steps:
              - id: hold
                type: external.process
                inputs: {{command: 'touch {q(started)}; while [ ! -e {q(go)} ]; do sleep 0.05; done', shell: true}}
        """, name="busy.yaml")
    holder = spawn("run", flow, "--run-id", "holder")
    wait_until(started.exists, what="the first run to hold the flow lock")
    res = af("run", flow)
    assert res.exit_code == 3
    go.touch()
    assert holder.wait(timeout=60) == 0
    busy = json.loads(got.read_text().splitlines()[1])
    assert (busy["event"], busy["flow_id"], busy["status"]) == ("lock_busy", "busy", "NOT_STARTED")
    assert "locked by run holder" in busy["error"]


def test_waiting_is_notified(cli, write_flow, home: Path, tmp_path: Path) -> None:
    got = tmp_path / "got.json"
    config(home, f"""
        [[notify]]
        on = ["waiting"]
        command = ["sh", "-c", "cat > {got}"]
        """)
    flow = write_flow("""
        version: 1
        flow: {id: approve}
        jobs:
          - id: a
            steps:
              - {id: gate, type: wait_for_event, inputs: {events: [approved]}}
        """)
    res = cli("run", str(flow), "--json")
    assert res.exit_code == 0
    doc = json.loads(got.read_text())
    assert (doc["event"], doc["status"]) == ("waiting", "WAITING")
    assert doc["waits"][0]["events"] == ["approved"]


def test_a_crashed_run_is_notified_once(af, write_flow, home: Path, tmp_path: Path) -> None:
    got = tmp_path / "crashed.jsonl"
    config(home, f"""
        [[notify]]
        on = ["crashed"]
        command = ["sh", "-c", "cat >> {got}"]
        """)
    flow = write_flow("""
        version: 1
        flow: {id: fragile}
        jobs:
          - id: a
            steps:
              - {id: s1, type: noop}
              - {id: s2, type: noop}
        """)
    res = af("run", flow, "--run-id", "boom", env={"AETHERFLOW_TEST_CRASH_AT": "step.started:a.s2"})
    assert res.exit_code == -9
    assert not got.exists()  # nobody was left to say so
    first = af("status")
    assert first.exit_code == 0 and "boom" in first.stdout.split("crashed:")[1]
    for again in (af("status"), af("resume", "--due"), af("status", "--json")):
        assert again.exit_code == 0, again.stderr
    lines = got.read_text().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert (doc["event"], doc["run_id"], doc["status"], doc["resume_command"]) == (
        "crashed", "boom", "CRASHED", "aetherflow resume boom")
    names = [e["event"] for e in show(af, "boom", history=True)["history"]]
    assert names.count("run.crash_noticed") == 1 and names.count("notify.sent") == 1
    assert af("resume", "boom").exit_code == 0  # still resumable


def test_resume_due_notices_a_crash_too(af, write_flow, home: Path, tmp_path: Path) -> None:
    got = tmp_path / "crashed.jsonl"
    config(home, f"""
        [[notify]]
        on = ["crashed"]
        command = ["sh", "-c", "cat >> {got}"]
        """)
    flow = write_flow("version: 1\nflow: {id: f}\njobs:\n  - id: a\n    steps: [{id: s, type: noop}]\n")
    af("run", flow, "--run-id", "k1", env={"AETHERFLOW_TEST_CRASH_AT": "step.started:a.s"})
    assert af("resume", "--due").exit_code == 0
    assert json.loads(got.read_text())["run_id"] == "k1"
