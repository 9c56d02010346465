"""`runs logs` (SPEC 13): every attempt's captured stdout and stderr, masked, kept in the store;
narrowed to a job, a step or an attempt; followed while the run runs; size limits stated; and
the run id `last` for runs show, runs logs, resume and cancel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import q, show, wait_until

RETRYING = """
version: 1
flow: {id: chatty}
secrets: {token: {env: LOGS_TOKEN}}
jobs:
  - id: extract
    steps:
      - id: fetch
        type: external.process
        retry: {max_attempts: 2, initial_delay_seconds: 0, jitter: false}
        inputs:
          command: 'echo "try $(cat n 2>/dev/null || echo 1) token {{ secrets.token }}"; echo warn >&2; [ -e n ] || { echo 2 > n; exit 1; }'
          shell: true
          cwd: "{{ workspace.root }}"
  - id: load
    depends_on: [extract]
    steps:
      - {id: put, type: external.process, inputs: {command: [echo, loaded]}}
"""
TOKEN = "logs-" + "t0k3n-77"


def run_json(cli, flow: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    res = cli("run", str(flow), "--json", *args, env=env)
    assert res.stdout, res.stderr
    return json.loads(res.stdout)


def test_every_attempt_is_kept_masked_and_can_be_narrowed(cli, write_flow) -> None:
    run_id = run_json(cli, write_flow(RETRYING), env={"LOGS_TOKEN": TOKEN})["run_id"]
    res = cli("runs", "logs", run_id)
    assert res.exit_code == 0, res.stderr
    assert res.stdout == (
        "==> extract.fetch attempt 1 stdout <==\ntry 1 token ***\n"
        "==> extract.fetch attempt 1 stderr <==\nwarn\n"
        "==> extract.fetch attempt 2 stdout <==\ntry 2 token ***\n"
        "==> extract.fetch attempt 2 stderr <==\nwarn\n"
        "==> load.put attempt 1 stdout <==\nloaded\n"
    )
    assert TOKEN not in res.stdout + res.stderr
    only = cli("runs", "logs", run_id, "extract.fetch", "--attempt", "2")
    assert only.stdout == "==> extract.fetch attempt 2 stdout <==\ntry 2 token ***\n==> extract.fetch attempt 2 stderr <==\nwarn\n"
    assert cli("runs", "logs", run_id, "load").stdout == "==> load.put attempt 1 stdout <==\nloaded\n"
    doc = json.loads(cli("runs", "logs", run_id, "load.put", "--json").stdout)
    assert [(c["job"], c["step"], c["attempt"], c["stream"], c["text"]) for c in doc["output"]] == [
        ("load", "put", 1, "stdout", "loaded\n")]
    none = cli("runs", "logs", run_id, "load.put", "--attempt", "3")
    assert none.exit_code == 0 and none.stdout == "" and "no output recorded of load.put (attempt 3)" in none.stderr


def test_last_is_the_newest_run(cli, write_flow) -> None:
    a = write_flow("version: 1\nflow: {id: fa}\njobs:\n  - id: j\n    steps: [{id: s, type: external.process, inputs: {command: [echo, A]}}]\n",
                   name="a.yaml")
    b = write_flow("version: 1\nflow: {id: fb}\njobs:\n  - id: j\n    steps: [{id: s, type: external.process, inputs: {command: [sh, -c, 'echo B; exit 1']}}]\n",
                   name="b.yaml")
    ra = run_json(cli, a)["run_id"]
    rb = run_json(cli, b)["run_id"]
    assert show(cli, "last")["run"]["run_id"] == rb
    assert json.loads(cli("runs", "show", "last", "--flow", "fa", "--json").stdout)["run"]["run_id"] == ra
    assert cli("runs", "logs", "last", "--flow", "fa").stdout.endswith("A\n")
    assert cli("runs", "logs", "last").stdout.endswith("B\n")
    resumed = cli("resume", "last", "--json")
    assert resumed.exit_code == 1 and json.loads(resumed.stdout)["run_id"] == rb
    assert cli("cancel", "last", "--flow", "fb").exit_code == 0
    assert show(cli, rb)["run"]["status"] == "CANCELLED"
    assert cli("runs", "show", "last", "--flow", "nope").exit_code == 2
    refused = cli("runs", "show", ra, "--flow", "fa")
    assert refused.exit_code == 2 and "--flow goes with --key or the run id 'last'" in refused.stderr


def test_run_id_last_is_refused(cli, write_flow) -> None:
    res = cli("run", str(write_flow(RETRYING)), "--run-id", "last")
    assert res.exit_code == 2
    assert "'last' means the newest run" in res.stderr
    assert cli("runs", "list", "--json").stdout.count("run_id") == 0


def test_size_limits_keep_the_head_and_the_tail(cli, write_flow) -> None:
    from aetherflow.engine.output import HEAD_BYTES, TAIL_BYTES

    total = HEAD_BYTES + TAIL_BYTES + 3 * 1024 * 1024
    flow = write_flow(f"""
        version: 1
        flow: {{id: big}}
        jobs:
          - id: j
            steps:
              - id: s
                type: external.process
                inputs:
                  command: [{sys.executable}, -c, "import sys; [sys.stdout.write(f'line {{i:08d}} ' + 'x' * 1009 + chr(10)) for i in range({total // 1024})]"]
                  log: {{max_capture_kb: 64}}
        """)
    run_id = run_json(cli, flow)["run_id"]
    out = cli("runs", "logs", run_id, "--json")
    text = "".join(c["text"] for c in json.loads(out.stdout)["output"])
    assert text.startswith("line 00000000 ")
    assert text.rstrip("\n").endswith("x") and f"line {total // 1024 - 1:08d} " in text
    marker = [line for line in text.splitlines() if line.startswith("[… ")]
    assert marker == [f"[… {total - HEAD_BYTES - TAIL_BYTES} bytes not kept …]"]
    assert len(text.encode()) < HEAD_BYTES + TAIL_BYTES + 100


def test_follow_streams_a_running_run_until_it_ends(af, write_flow, tmp_path: Path, home: Path) -> None:
    go = tmp_path / "go"
    flow = write_flow(f"""
        version: 1
        flow: {{id: slow}}
        jobs:
          - id: j
            steps:
              - id: s
                type: external.process
                inputs: {{command: 'echo first line; while [ ! -e {q(go)} ]; do sleep 0.05; done; echo second line', shell: true}}
        """)
    env = dict(os.environ)
    runner = subprocess.Popen([sys.executable, "-m", "aetherflow", "run", str(flow), "--run-id", "f1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    follower = None
    try:
        wait_until(lambda: "first line" in af("runs", "logs", "f1").stdout, what="the first line to be stored")
        follower = subprocess.Popen([sys.executable, "-m", "aetherflow", "runs", "logs", "f1", "--follow"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert follower.stdout is not None
        assert follower.stdout.readline() == "==> j.s attempt 1 stdout <==\n"
        assert follower.stdout.readline() == "first line\n"
        assert follower.poll() is None  # still following: the run goes on
        go.touch()
        rest, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err
        assert rest == "second line\n"
        assert runner.wait(timeout=60) == 0
    finally:
        for p in (runner, follower):
            if p is not None and p.poll() is None:
                p.kill()
            if p is not None:
                p.communicate(timeout=30)


def test_follow_and_json_do_not_mix(cli, write_flow) -> None:
    res = cli("runs", "logs", "last", "--follow", "--json")
    assert res.exit_code == 2 and "choose one" in res.stderr
