"""Several hosts sharing one PostgreSQL store (SPEC section 12), simulated on one machine: every
"host" is a ``python -m aetherflow`` process with its own ``AETHERFLOW_HOME`` (its own list of
known stores, its own workspaces) and, where ``unshare --uts`` is allowed, its own host name;
all of them name the store by the same URL in ``AETHERFLOW_STATE``.

What is checked is what an operator relies on: exit codes, the messages naming pid and host,
what ran (each step appends a line to a shared file), and what the store shows from any host.
Synchronisation is by files and polled states, never by sleeps."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from support import alive, job_doc, q, step_doc, wait_until

pytestmark = pytest.mark.postgres

#: with_lock sections per host (AETHERFLOW_HOSTS_LOCK_SECTIONS to change it)
LOCK_SECTIONS = int(os.environ.get("AETHERFLOW_HOSTS_LOCK_SECTIONS", "250"))
PARK = {"AETHERFLOW_INLINE_WAIT_MAX": "0"}


def _unshare_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("hostname") is None:
        return False
    try:
        done = subprocess.run(["unshare", "--uts", "sh", "-c", "hostname af-probe && hostname"], capture_output=True,
                              text=True, timeout=30)
    except OSError:
        return False
    return done.returncode == 0 and done.stdout.strip() == "af-probe"


UNSHARE = _unshare_works()


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@dataclass
class Host:
    """One simulated host: its own home, its own name (when ``unshare --uts`` works)."""

    name: str
    home: Path
    env: dict[str, str]
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def argv(self, *args: Any) -> list[str]:
        cmd = [sys.executable, "-m", "aetherflow", *[str(a) for a in args]]
        if UNSHARE:  # a UTS namespace of its own: the process sees (and records) this host name
            return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.name, *cmd]
        return cmd

    def spawn(self, *args: Any, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[str]:
        p = subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**self.env, **(env or {})}, cwd=cwd)
        self.started.append(p)
        return p

    def run(self, *args: Any, env: dict[str, str] | None = None, timeout: float = 180) -> Result:
        done = subprocess.run(self.argv(*args), capture_output=True, text=True, env={**self.env, **(env or {})},
                              timeout=timeout)
        return Result(done.returncode, done.stdout, done.stderr)

    def json(self, *args: Any) -> Any:
        res = self.run(*args, "--json")
        assert res.code == 0, res.stderr
        return json.loads(res.stdout)


@pytest.fixture
def store_url(pg_store_url: Callable[[], str]) -> str:
    return pg_store_url()


@pytest.fixture
def hosts(tmp_path: Path, store_url: str) -> Iterator[Callable[[int], list[Host]]]:
    made: list[Host] = []

    def make(n: int) -> list[Host]:
        out = []
        for _ in range(n):
            name = f"host-{chr(ord('a') + len(made))}"
            home = tmp_path / name
            env = dict(os.environ)
            for var in ("AETHERFLOW_TEST_CRASH_AT", "AETHERFLOW_EVENTS_LOG", "AETHERFLOW_PLUGIN_PATHS", "XDG_STATE_HOME"):
                env.pop(var, None)
            env.update({"AETHERFLOW_HOME": str(home), "AETHERFLOW_STATE": store_url, "HOME": str(tmp_path / "userhome")})
            host = Host(name, home, env)
            made.append(host)
            out.append(host)
        return out

    yield make
    for host in made:
        for p in host.started:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=60)


def finish(p: subprocess.Popen[str], timeout: float = 240) -> Result:
    out, err = p.communicate(timeout=timeout)
    return Result(p.returncode, out, err)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def shown(host: Host, run_id: str, history: bool = False) -> dict[str, Any]:
    return host.json("runs", "show", run_id, *(["--history"] if history else []))  # type: ignore[no-any-return]


def statuses(host: Host) -> dict[str, str]:
    return {r["run_id"]: r["status"] for r in host.json("runs", "list", "--limit", "1000")["runs"]}


def test_each_host_records_its_own_name(hosts, write_flow) -> None:
    if not UNSHARE:
        pytest.skip("`unshare --uts` is not allowed here: the simulated hosts share one host name")
    a, b = hosts(2)
    flow = write_flow("version: 1\nflow: {id: named}\njobs:\n  - id: j\n    steps:\n      - {id: s, type: noop}\n")
    assert a.run("run", flow, "--run-id", "from-a").code == 0
    assert b.run("run", flow, "--run-id", "from-b").code == 0
    assert {r["run_id"]: r["host"] for r in a.json("runs", "list")["runs"]} == {"from-a": "host-a", "from-b": "host-b"}


# ---------------------------------------------------------------------------------------------
# admission: the same crontab on four hosts


ONCE = """
version: 1
flow:
  id: nightly
  locks: {{scope: flow}}
  unique: {{key: batch, scope: flow}}
jobs:
  - id: j
    steps:
      - id: work
        type: external.process
        inputs:
          command: [sh, -c, {cmd}]
"""


@pytest.mark.parametrize("admission", ["flow_lock", "business_key"])
def test_the_same_flow_started_on_four_hosts_at_once_runs_once(hosts, write_flow, tmp_path: Path, admission: str) -> None:
    log, gate = tmp_path / "ran.log", tmp_path / "gate"
    # the winner holds on until every other host has been turned away
    cmd = json.dumps(f'echo "$(hostname) $AETHERFLOW_RUN_ID" >> {q(log)}; '
                     f"i=0; while [ ! -f {q(gate)} ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done")
    text = ONCE.format(cmd=cmd)
    if admission == "business_key":
        text = text.replace("  locks: {scope: flow}\n", "")
    flow = write_flow(text)
    four = hosts(4)
    key = ["--key", "2026-12-07"] if admission == "business_key" else []
    procs = [h.spawn("run", flow, *key) for h in four]
    wait_until(lambda: sum(p.poll() is not None for p in procs) >= 3, timeout=180, what="three hosts to be turned away")
    gate.touch()
    results = [finish(p) for p in procs]
    assert sorted(r.code for r in results) == [0, 3, 3, 3], [r.stderr for r in results]
    ran = lines(log)
    assert len(ran) == 1, ran
    run_id = ran[0].split()[1]
    for r in results:
        if r.code == 3:
            assert "Traceback" not in r.stderr
            assert (f"held by run {run_id}" if admission == "business_key" else f"locked by run {run_id}") in r.stderr, (
                r.stderr)
            if UNSHARE:
                assert ran[0].split()[0] in r.stderr  # the holder's host is named
    assert statuses(four[0]) == {run_id: "SUCCESS"}  # the turned-away hosts recorded no run


# ---------------------------------------------------------------------------------------------
# a host dies; another resumes


LINE = ("""{command: [sh, -c, 'echo "$AETHERFLOW_JOB_ID.$AETHERFLOW_STEP_ID $AETHERFLOW_ATTEMPT $(hostname)" """
        """>> "$LOG_FILE"']}""")
THREE = f"""
version: 1
flow: {{id: failover}}
jobs:
  - id: a
    steps:
      - {{id: s1, type: external.process, inputs: {LINE}}}
      - {{id: s2, type: external.process, inputs: {LINE}}}
      - {{id: s3, type: external.process, inputs: {LINE}}}
"""


def test_a_run_killed_on_host_a_shows_crashed_on_b_and_resumes_there(hosts, write_flow, tmp_path: Path) -> None:
    log = tmp_path / "exec.log"
    a, b = hosts(2)
    flow = write_flow(THREE)
    env = {"LOG_FILE": str(log)}
    res = a.run("run", flow, "--run-id", "fo-1", env={**env, "AETHERFLOW_TEST_CRASH_AT": "step.finished:a.s2"})
    assert res.code == -signal.SIGKILL, res.stderr
    wait_until(lambda: statuses(b) == {"fo-1": "CRASHED"}, what="host b to see the run CRASHED")
    doc = shown(b, "fo-1")
    assert doc["run"]["stored_status"] == "RUNNING"
    if UNSHARE:
        assert doc["run"]["host"] == "host-a"
    res = b.run("resume", "fo-1", env=env)
    assert res.code == 0, res.stderr
    ran = [line.split() for line in lines(log)]
    assert [(n, int(at)) for n, at, _ in ran] == [("a.s1", 1), ("a.s2", 1), ("a.s3", 1)]  # s2's SUCCESS not re-run
    doc = shown(a, "fo-1")  # any host sees the end
    assert doc["run"]["status"] == "SUCCESS" and doc["run"]["attempt"] == 2
    if UNSHARE:
        assert [h for _, _, h in ran] == ["host-a", "host-a", "host-b"]
        assert doc["run"]["host"] == "host-b"


# ---------------------------------------------------------------------------------------------
# with_lock across hosts


def lock_flow(n: int, shared: Path) -> str:
    section = f'echo "enter $AETHERFLOW_RUN_ID $AETHERFLOW_STEP_ID" >> {q(shared)}; echo "exit $AETHERFLOW_RUN_ID $AETHERFLOW_STEP_ID" >> {q(shared)}'
    steps = "".join(
        f"""
      - id: s{i:03d}
        type: with_lock
        inputs:
          lock_key: warehouse
          wait_seconds: 600
          step: {{type: external.process, inputs: {{command: [sh, -c, {json.dumps(section)}]}}}}"""
        for i in range(n)
    )
    return f"version: 1\nflow: {{id: sections}}\njobs:\n  - id: j\n    steps:{steps}\n"


@pytest.mark.timeout(1800)
def test_with_lock_sections_on_four_hosts_never_overlap(hosts, write_flow, tmp_path: Path) -> None:
    shared = tmp_path / "sections.log"
    flow = write_flow(lock_flow(LOCK_SECTIONS, shared))
    four = hosts(4)
    procs = [h.spawn("run", flow, "--run-id", f"locks-{h.name}") for h in four]
    results = [finish(p, timeout=1700) for p in procs]
    assert [r.code for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    entries = [line.split() for line in lines(shared)]
    assert len(entries) == 2 * 4 * LOCK_SECTIONS
    overlaps = 0
    for enter, leave in zip(entries[::2], entries[1::2], strict=True):
        if enter[0] != "enter" or leave[0] != "exit" or enter[1:] != leave[1:]:
            overlaps += 1
    assert overlaps == 0, f"{overlaps} overlapping sections"
    assert Counter(e[1] for e in entries[::2]) == {f"locks-{h.name}": LOCK_SECTIONS for h in four}
    assert four[0].json("locks", "list")["locks"] == []  # every holder record was removed


# ---------------------------------------------------------------------------------------------
# waiting runs: due sweeps and events from any host


def timer_flow(side: Path) -> str:
    return f"""
version: 1
flow: {{id: timers}}
jobs:
  - id: j
    steps:
      - {{id: pause, type: wait, inputs: {{duration: 1s}}}}
      - id: after
        type: external.process
        inputs: {{command: [sh, -c, {json.dumps(f'echo "$AETHERFLOW_RUN_ID" >> {q(side)}')}]}}
"""


def test_four_hosts_sweeping_due_runs_at_once_resume_each_once(hosts, write_flow, tmp_path: Path) -> None:
    side = tmp_path / "after.log"
    flow = write_flow(timer_flow(side))
    four = hosts(4)
    ids = [f"due-{i}" for i in range(8)]
    for i, rid in enumerate(ids):
        res = four[i % 4].run("run", flow, "--run-id", rid, env=PARK)  # parked WAITING on every host in turn
        assert res.code == 0, res.stderr
    due = max(shown(four[0], rid)["run"]["due_at"] for rid in ids)
    wait_until(lambda: time.time() > due + 0.05, what="the timers to be due")
    sweeps = [h.spawn("resume", "--due", "--json", env=PARK) for h in four]
    results = [finish(p) for p in sweeps]
    assert [r.code for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    assert sorted(lines(side)) == ids  # the step after each timer ran exactly once
    resumed = [r["run_id"] for res in results for r in json.loads(res.stdout)["due"]
               if r["status"] == "SUCCESS" and not r.get("message")]
    assert sorted(resumed) == ids  # each run resumed by exactly one sweep
    for rid in ids:
        doc = shown(four[1], rid, history=True)
        assert doc["run"]["status"] == "SUCCESS"
        assert [e["event"] for e in doc["history"]].count("run.resumed") == 1


APPROVAL = """
version: 1
flow:
  id: approval
  unique: {key: order, scope: flow}
jobs:
  - id: approve
    steps:
      - {id: wait_ok, type: wait_for_event, inputs: {events: [approved, rejected]}, on_outcome: {rejected: fail}}
  - id: ship
    depends_on: [approve]
    steps:
      - {id: note, type: debug, inputs: {message: "by {{ jobs.approve.steps.wait_ok.outputs.by }}"},
         outputs: {by: "{{ jobs.approve.steps.wait_ok.outputs.by }}"}}
"""


def test_events_and_cancels_from_other_hosts(hosts, write_flow) -> None:
    a, b, c = hosts(3)
    flow = write_flow(APPROVAL)
    res = a.run("run", flow, "--run-id", "order-1", "--key", "1")
    assert res.code == 0 and "waits for" in res.stderr, res.stderr
    assert a.run("run", flow, "--run-id", "order-2", "--key", "2").code == 0
    res = b.run("resume", "order-1", "--event", "approved", "--data", '{"by": "ops on b"}')
    assert res.code == 0, res.stderr
    doc = shown(c, "order-1")
    assert doc["run"]["status"] == "SUCCESS"
    assert step_doc(doc, "approve", "wait_ok")["outcome"] == "approved"
    assert job_doc(doc, "ship")["outputs"] == {"by": "ops on b"}
    if UNSHARE:
        assert doc["run"]["host"] == "host-b"
    res = c.run("resume", "--key", "2", "--event", "rejected")  # by business key, from a third host
    assert res.code == 1, res.stderr
    assert statuses(a)["order-2"] == "FAILED"
    assert a.run("run", flow, "--run-id", "order-3", "--key", "3").code == 0
    res = b.run("cancel", "order-3", "--reason", "customer withdrew")
    assert res.code == 0, res.stderr
    assert statuses(c)["order-3"] == "CANCELLED"


# ---------------------------------------------------------------------------------------------
# the store is lost under a running executor


BUSY = ("""{command: [sh, -c, 'echo "$AETHERFLOW_JOB_ID.$AETHERFLOW_STEP_ID $AETHERFLOW_ATTEMPT" >> "$LOG_FILE"; """
        """if [ "$AETHERFLOW_ATTEMPT" = 1 ]; then echo $$ > "$PID_FILE.tmp"; mv "$PID_FILE.tmp" "$PID_FILE"; """
        """exec sleep 300; fi']}""")
LOSS = f"""
version: 1
flow: {{id: lossy}}
jobs:
  - id: a
    steps:
      - {{id: s1, type: external.process, inputs: {LINE}}}
      - {{id: s2, type: external.process, inputs: {BUSY}}}
      - {{id: s3, type: external.process, inputs: {LINE}}}
"""


def sessions_of(dsn: str, pid: int, role: str = "%") -> list[int]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
                            (f"aetherflow/{pid}/{role}",)).fetchall()
    return [r[0] for r in rows]


def terminate(dsn: str, backends: list[int]) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for b in backends:
            conn.execute("SELECT pg_terminate_backend(%s)", (b,))


def test_an_executor_that_loses_its_store_stops_its_steps_and_exits_1(hosts, write_flow, tmp_path: Path,
                                                                       pg_dsn: str, store_url: str) -> None:
    log, pid_file = tmp_path / "exec.log", tmp_path / "pid"
    a, b = hosts(2)
    flow = write_flow(LOSS)
    env = {"LOG_FILE": str(log), "PID_FILE": str(pid_file)}
    proc = a.spawn("run", flow, "--run-id", "lost-1", env=env)
    wait_until(pid_file.exists, what="the long step to start")
    child = int(pid_file.read_text())
    backends = sessions_of(pg_dsn, proc.pid)
    assert len(backends) == 2  # the data connection and the one holding the locks
    terminate(pg_dsn, backends)
    res = finish(proc, timeout=120)
    assert res.code == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert "lost the state store" in res.stderr and store_url.split("?")[0] in res.stderr, res.stderr
    assert "aetherflow resume lost-1" in res.stderr
    wait_until(lambda: not alive(child), timeout=30, what="the step's process group to be stopped")
    wait_until(lambda: statuses(b) == {"lost-1": "CRASHED"}, what="the run to show CRASHED")
    res = b.run("resume", "lost-1", env=env)
    assert res.code == 0, res.stderr
    assert [(x.split()[0], x.split()[1]) for x in lines(log)] == [("a.s1", "1"), ("a.s2", "1"), ("a.s2", "2"), ("a.s3", "1")]
    assert shown(a, "lost-1")["run"]["status"] == "SUCCESS"


def test_a_zombie_executors_late_write_is_refused(hosts, write_flow, tmp_path: Path, pg_dsn: str) -> None:
    """Host a stops (SIGSTOP: a hung VM) in the middle of a step; its lock session is ended, host b
    takes the run over and finishes it; when a wakes up, what it tries to record is refused."""
    log, gate = tmp_path / "exec.log", tmp_path / "gate"
    step = ("""{command: [sh, -c, 'echo "$AETHERFLOW_JOB_ID.$AETHERFLOW_STEP_ID $AETHERFLOW_ATTEMPT start" >> "$LOG_FILE"; """
            f"""while [ ! -f {q(gate)} ]; do sleep 0.05; done; """
            """echo "$AETHERFLOW_JOB_ID.$AETHERFLOW_STEP_ID $AETHERFLOW_ATTEMPT done" >> "$LOG_FILE"']}""")
    flow = write_flow(f"""
version: 1
flow: {{id: zombie}}
jobs:
  - id: a
    steps:
      - {{id: s1, type: external.process, inputs: {step}}}
      - {{id: s2, type: external.process, inputs: {LINE}}}
""")
    a, b = hosts(2)
    env = {"LOG_FILE": str(log)}
    proc = a.spawn("run", flow, "--run-id", "zombie-1", env=env)
    wait_until(lambda: "a.s1 1 start" in lines(log), what="host a's step to start")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        terminate(pg_dsn, sessions_of(pg_dsn, proc.pid, "locks"))
        wait_until(lambda: statuses(b) == {"zombie-1": "CRASHED"}, what="host b to see the run CRASHED")
        resumed = b.spawn("resume", "zombie-1", env=env)
        wait_until(lambda: "a.s1 2 start" in lines(log), what="host b to run the step again")
        gate.touch()
        res = finish(resumed)
        assert res.code == 0, res.stderr
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    late = finish(proc)
    assert late.code == 1, late.stderr
    assert "Traceback" not in late.stderr
    assert "taken over by another executor" in late.stderr or "lost the state store" in late.stderr, late.stderr
    doc = shown(b, "zombie-1", history=True)
    assert doc["run"]["status"] == "SUCCESS" and doc["run"]["attempt"] == 2
    assert (step_doc(doc, "a", "s1")["status"], step_doc(doc, "a", "s1")["attempt"]) == ("SUCCESS", 2)
    names = [e["event"] for e in doc["history"]]
    assert names[-1] == "run.finished" and names.count("run.finished") == 1  # nothing of a's came after b's end
    assert [e["attempt"] for e in doc["history"] if e["event"] == "step.finished" and e.get("step_id") == "s1"] == [2]


# ---------------------------------------------------------------------------------------------
# docs/scale-out.md, as written


DOC = Path(__file__).resolve().parents[2] / "docs" / "scale-out.md"
DOC_URL = "postgresql://aetherflow@db.example.com:5432/ops"


def fenced(text: str, lang: str) -> list[str]:
    import re

    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_the_scale_out_walkthrough_runs_as_written(hosts, tmp_path: Path, pg_dsn: str) -> None:
    """From an empty database (the doc's SQL, with names of our own) to three hosts running the
    doc's crontab lines on the doc's flow, then the doc's `store copy`."""
    import shlex
    import uuid

    import psycopg

    text = DOC.read_text(encoding="utf-8")
    (sql,) = fenced(text, "sql")
    (crontab,) = fenced(text, "crontab")
    (flow_text,) = [b for b in fenced(text, "yaml") if b.startswith("version: 1")]
    shell = "\n".join(fenced(text, "sh"))
    tag = uuid.uuid4().hex[:8]
    role, db = f"af_doc_{tag}", f"af_doc_{tag}"
    parts = urlsplit(pg_dsn)
    url = urlunsplit((parts.scheme, f"{role}@{parts.netloc.rpartition('@')[2]}", f"/{db}", "", ""))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for stmt in sql.replace("ROLE aetherflow", f"ROLE {role}").replace("OWNER aetherflow", f"OWNER {role}") \
                       .replace("DATABASE ops", f"DATABASE {db}").split(";"):
            if stmt.strip():
                conn.execute(stmt)
    try:
        flows = tmp_path / "srv-flows"
        flows.mkdir()
        ran, gate = tmp_path / "loads.log", tmp_path / "gate"
        load = flows / "load.sh"
        load.write_text(f"#!/bin/sh\necho \"$(hostname) $AETHERFLOW_RUN_ID\" >> {q(ran)}\n"
                        f"i=0; while [ ! -f {q(gate)} ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done\n")
        load.chmod(0o755)
        (flows / "daily.yaml").write_text(flow_text.replace("./load.sh", str(load)), encoding="utf-8")
        three = hosts(3)
        env = {}
        lines_of_cron = []
        for line in crontab.splitlines():
            if "=" in line.split()[0] and not line.startswith("#"):
                key, _, value = line.partition("=")
                env[key] = value.replace(DOC_URL, url)
            elif "aetherflow " in line:
                lines_of_cron.append(line)
        assert env["AETHERFLOW_STATE"] == url
        env.pop("AETHERFLOW_HOME")  # each host has its own
        env.pop("PATH")  # this machine's, for the interpreter
        for h in three:
            h.env.update(env)

        doctor = next(line for line in shell.splitlines() if line.startswith("aetherflow doctor"))
        proc = three[0].spawn(*shlex.split(doctor.replace(DOC_URL, url))[1:], env=env, cwd=flows)
        done = finish(proc)
        res = Result(done.code, done.stdout, done.stderr)
        assert res.code == 0, res.stdout + res.stderr
        assert f'state store: {url} reachable; schema "aetherflow" is created by the first run' in res.stdout

        daily = next(line for line in lines_of_cron if " run " in line)
        cd, _, command = daily.split(None, 5)[5].partition(" && ")
        assert cd == "cd /srv/flows"
        args = shlex.split(command)[1:]
        procs = [h.spawn(*args, env=env, cwd=flows) for h in three]
        wait_until(lambda: sum(p.poll() is not None for p in procs) >= 2, timeout=180, what="two hosts turned away")
        gate.touch()
        results = [finish(p) for p in procs]
        assert sorted(r.code for r in results) == [0, 3, 3], [r.stderr for r in results]
        assert len(lines(ran)) == 1
        sweep = next(line for line in lines_of_cron if "resume --due" in line)
        sweeps = [h.spawn(*shlex.split(sweep.split(None, 5)[5])[1:], env=env) for h in three]  # the program: ours
        assert [finish(p).code for p in sweeps] == [0, 0, 0]
        res = three[1].run("doctor", flows / "daily.yaml", env=env)
        assert f'state store: {url} reachable, schema "aetherflow" version 1' in res.stdout, res.stdout

        # moving an existing SQLite store in, as the doc shows
        old_home = tmp_path / "var-lib-aetherflow"
        (flows / "old.yaml").write_text("version: 1\nflow: {id: old}\njobs:\n  - id: j\n    steps:\n"
                                        "      - {id: s, type: noop}\n", encoding="utf-8")
        sqlite_env = {**env, "AETHERFLOW_STATE": str(old_home / "state.db")}
        assert three[2].run("run", flows / "old.yaml", "--run-id", "from-sqlite", env=sqlite_env).code == 0
        copy = next(line for line in shell.splitlines() if line.startswith("aetherflow store copy"))
        res = three[2].run(*shlex.split(copy.replace(DOC_URL, url).replace("/var/lib/aetherflow", str(old_home)))[1:],
                           env=env)
        assert res.code == 0, res.stderr
        assert statuses(three[0])["from-sqlite"] == "SUCCESS"
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')
