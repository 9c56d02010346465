"""Every flow, command and plugin example of README.md and docs/ is executed, and what the doc
says it shows is checked (see tests/docblocks.py for how a block is found and how one opts out).

* ``yaml`` flows: run through the real CLI in a fresh AETHERFLOW_HOME (with the doc's python
  examples as a plugin folder); a flow that needs files gets them from FLOW_SETUP, and what the
  doc says about its result is checked in FLOW_CHECKS. ``validate-only`` flows need a server the
  test cannot have (validated by tests/contract/test_docs.py like every flow).
* ``python`` examples: imported as a plugin folder; every step type, connector, decoder and
  observer they register is used by a flow in PLUGIN_USES; a ``def test_`` example is run by
  pytest.
* ``sh`` / ``console`` commands: run in order, one session per doc, with the installed
  ``aetherflow`` script in a subprocess; ``<run_id>`` / ``RUN_ID`` name the session's newest
  run, ``# exit N`` in a comment is the expected exit code (else 0), and a console block's output
  lines must appear. Installing (``pip``, ``pipx``, ``python3 -m venv``, activating, ``bash
  .ci/run``) is what `.ci/run` does and is not repeated here. COMMAND_SETUP prepares the state a
  block talks about (a failed run for the recovery playbook, a waiting run for events).
* ``crontab`` entries: run as cron would, with only the crontab's variables, after mapping its
  example paths to this test's; aetherflow must be named by its absolute path.
* ``Example:`` lines of every command's --help (docs/cli.md is made of these helps): each runs
  as typed, in a copy of the repository's flows/ with a fresh home, after EXAMPLE_SETUP made the
  run or the files it names.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from docblocks import ROOT, Block, all_blocks, plugin_sources

CLI = str(Path(sys.executable).parent / "aetherflow")
BLOCKS = all_blocks()
#: sql: the database set-up of docs/scale-out.md, run by tests/process/test_hosts.py (its walkthrough)
KNOWN_LANGS = {"yaml", "python", "sh", "console", "crontab", "text", "json", "toml", "sql", ""}
MAX_OPT_OUTS = 6


# ------------------------------------------------------------------------------ the session


class Session:
    """One doc's commands: a working directory holding a copy of flows/, a private home."""

    def __init__(self, tmp_path: Path, doc: str) -> None:
        self.doc = doc
        self.tmp = tmp_path
        self.cwd = tmp_path / "work"
        self.cwd.mkdir()
        shutil.copytree(ROOT / "flows", self.cwd / "flows")
        self.home = tmp_path / "home"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AETHERFLOW_")}
        self.env.update(AETHERFLOW_HOME=str(self.home), HOME=str(tmp_path / "userhome"),
                        PATH=f"{Path(CLI).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}")
        self.run_id: str | None = None
        self.log: list[str] = []  # the aetherflow commands that ran
        self.names: dict[str, str] = {}  # the doc's example names -> this session's (SESSION_NAMES)
        self.plugins = tmp_path / "doc_plugins"
        self.plugins.mkdir()
        for name, text in plugin_sources(doc).items():
            (self.plugins / name).write_text(text, encoding="utf-8")

    def aetherflow(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                   expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([CLI, *args], capture_output=True, text=True, env={**self.env, **(env or {})},
                              cwd=cwd or self.cwd, timeout=300)
        if expect is not None:
            assert proc.returncode == expect, f"aetherflow {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def newest_run(self) -> str | None:
        runs = json.loads(self.aetherflow("runs", "list", "--json").stdout)["runs"]
        return str(runs[0]["run_id"]) if runs else None

    def write(self, relative: str, text: str) -> Path:
        p = self.cwd / relative
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        return p

    def job_dir(self, flow_id: str, job: str, run_id: str = "docs") -> Path:
        d = self.home / "work" / flow_id / job / run_id
        d.mkdir(parents=True, exist_ok=True)
        return d


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(0o755)


def _shop(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, day TEXT)")
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
                       [(1, "ada", 12.5, "2026-11-21"), (2, "bob", 7.0, "2026-11-21"), (3, "cyd", 3.0, "2026-11-20")])
    db.close()


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _show(s: Session, run_id: str = "docs") -> dict[str, Any]:
    return json.loads(s.aetherflow("runs", "show", run_id, "--json").stdout)


def _outputs(shown: dict[str, Any], job: str, step: str) -> dict[str, Any]:
    j = next(j for j in shown["jobs"] if j["job_id"] == job)
    return dict(next(x for x in j["steps"] if x["step_id"] == step)["outputs"])


# ------------------------------------------------------------------------------ flows

SECRET_TOKEN = "tok-Zq81-docs"


def _setup_secrets(s: Session) -> dict[str, str]:
    s.write("secrets/api_token", SECRET_TOKEN + "\n")
    s.write("secrets.env", "SMTP_PASSWORD=smtp-pw-1\n")
    fake = s.tmp / "fakebin"
    fake.mkdir()
    _script(fake / "pass", f"echo {base64.b64encode(b'signing-key-1').decode()}\n")
    _script(s.job_dir("secrets_example", "load") / "load.sh", f'test "$API_TOKEN" = "{SECRET_TOKEN}" && echo "loaded with $API_TOKEN"\n')
    return {"WAREHOUSE_PASSWORD": "pw-warehouse-1", "PATH": f"{fake}{os.pathsep}{s.env['PATH']}"}


def _setup_nightly_reference(s: Session) -> dict[str, str]:
    _script(s.job_dir("nightly_export", "export") / "export.sh", 'echo "exported $1"\n')
    return {}


def _setup_nightly_processes(s: Session) -> dict[str, str]:
    _script(s.job_dir("nightly_export", "export") / "export.sh",
            'mkdir -p artifacts/out && echo "$EXPORT_FORMAT $2" > artifacts/out/orders.parquet\n')
    return {}


def _setup_sales_load(s: Session) -> dict[str, str]:
    _script(s.job_dir("sales_load", "load") / "load_fact_sales.sh", "echo loaded\n")
    return {}


def _setup_shop(s: Session) -> dict[str, str]:
    _shop(s.cwd / "data" / "shop.db")
    return {}


def _setup_daily_sales(s: Session) -> dict[str, str]:
    _script(s.job_dir("daily_sales", "load") / "load.sh", "echo loaded\n")
    return {}


FLOW_SETUP: dict[tuple[str, str], Callable[[Session], dict[str, str]]] = {
    ("scale-out.md", "daily_sales"): _setup_daily_sales,
    ("connectors.md", "sqlite_example"): _setup_shop,
    ("connectors.md", "decode_example"): lambda s: {"WAREHOUSE_PASSWORD_B64": base64.b64encode(b"pw-1").decode()},
    ("flow-reference.md", "nightly_export"): _setup_nightly_reference,
    ("processes.md", "nightly_export"): _setup_nightly_processes,
    ("secrets.md", "secrets_example"): _setup_secrets,
    ("step-authors.md", "count_example"): _setup_shop,
    ("step-authors.md", "sales_load"): _setup_sales_load,
    ("steps.md", "extract_example"): _setup_shop,
    ("steps.md", "load_example"): _setup_shop,
}


def _check_hello(s: Session, doc: dict[str, Any]) -> None:
    who = s.env.get("USER") or "world"
    assert _outputs(_show(s), "after", "show")["message"] == f"greet said hello {who}\n"


def _check_tour(s: Session, doc: dict[str, Any]) -> None:
    shown = _show(s)
    day = shown["run"]["params"]["day"]
    assert day == __import__("time").strftime("%Y-%m-%d", __import__("time").gmtime(shown["run"]["created_at"]))
    assert _outputs(shown, "report", "show") == {
        "raw_stdout": f"north {day}\n", "count": 2, "text": f"2 region(s) on {day}",
        "list_in_text": 'regions=["north","south"]', "literal": "{{ not a template }} ${HOME} {x}",
        "with_default": "fallback value"}
    jobs = {j["job_id"]: j for j in shown["jobs"]}
    assert jobs["probe"]["outputs"] == {"count": 2, "first": "north"}
    assert jobs["report"]["outputs"] == {"message": f"2 region(s) on {day}"}
    big = next(x for x in jobs["report"]["steps"] if x["step_id"] == "big")
    assert (big["status"], big["reason"]) == ("SKIPPED", "condition false")


def _check_conditions(s: Session, doc: dict[str, Any]) -> None:
    assert doc["jobs"] == {"probe": "SUCCESS", "load": "SUCCESS", "never": "SKIPPED"}
    steps = {x["step_id"]: x for j in _show(s)["jobs"] if j["job_id"] == "load" for x in j["steps"]}
    assert steps["refunds"]["status"] == "SUCCESS"
    assert (steps["everything"]["status"], steps["everything"]["reason"]) == ("SKIPPED", "condition false")


def _check_extract(s: Session, doc: dict[str, Any]) -> None:
    out = _outputs(_show(s), "export", "orders")
    assert Path(out["path"]).read_text() == "id,customer,amount\n1,ada,12.5\n2,bob,7.0\n" and out["row_count"] == 2


def _check_load(s: Session, doc: dict[str, Any]) -> None:
    shown = _show(s)
    assert next(j for j in shown["jobs"] if j["job_id"] == "load")["outputs"] == {"loaded": 3}
    assert _rows(s.cwd / "data" / "warehouse.db", "SELECT * FROM staging_orders ORDER BY id") == [
        ("1", "ada", "12.5"), ("2", "bob", "7.0"), ("3", "cyd", "3.0")]


def _check_count(s: Session, doc: dict[str, Any]) -> None:
    assert next(j for j in _show(s)["jobs"] if j["job_id"] == "probe")["outputs"] == {"count": 3}


def _check_secrets(s: Session, doc: dict[str, Any]) -> None:
    out = _outputs(_show(s), "load", "run_loader")
    assert out["stdout"] == "loaded with ***\n"  # the process got the token; the store has it masked
    assert SECRET_TOKEN.encode() not in (s.home / "state.db").read_bytes()


def _check_waiting(s: Session, doc: dict[str, Any]) -> None:
    assert doc["status"] == "WAITING" and doc["waits"][0]["events"] == ["approved", "rejected"]


def _check_processes(s: Session, doc: dict[str, Any]) -> None:
    out = _outputs(_show(s), "export", "report")
    assert out["stdout"] == s.env["HOME"].upper() + "\n"  # `${HOME}` reached the shell as text
    assert (s.job_dir("nightly_export", "export") / "manifests" / "dump.done").exists()  # idempotency marker


FLOW_CHECKS: dict[tuple[str, str], Callable[[Session, dict[str, Any]], None]] = {
    ("quickstart.md", "hello"): _check_hello,
    ("templates.md", "templates_tour"): _check_tour,
    ("templates.md", "conditions"): _check_conditions,
    ("steps.md", "extract_example"): _check_extract,
    ("steps.md", "load_example"): _check_load,
    ("step-authors.md", "count_example"): _check_count,
    ("secrets.md", "secrets_example"): _check_secrets,
    ("waiting.md", "order_approval"): _check_waiting,
    ("processes.md", "nightly_export"): _check_processes,
}

RUNNABLE_FLOWS = [b for b in BLOCKS if b.is_flow and not b.expected_codes and b.marker is None]


@pytest.mark.parametrize("block", RUNNABLE_FLOWS, ids=[b.name for b in RUNNABLE_FLOWS])
def test_doc_flow_runs(block: Block, tmp_path: Path) -> None:
    s = Session(tmp_path, block.doc)
    name = block.save_as or "flow.yaml"
    s.write(name, block.text)
    key = (block.doc, block.flow_id or "")
    env = FLOW_SETUP[key](s) if key in FLOW_SETUP else {}
    res = s.aetherflow("run", name, "--json", "--run-id", "docs", "--plugin-path", str(s.plugins), env=env, expect=None)
    doc = json.loads(res.stdout)
    assert res.returncode == 0 and doc["status"] in ("SUCCESS", "WAITING"), res.stdout + res.stderr
    if key in FLOW_CHECKS:
        FLOW_CHECKS[key](s, doc)


# ------------------------------------------------------------------------------ python

KV_FLOW = """
version: 1
flow: {{id: kv_use}}
resources:
  kv: {{kind: kv, driver: acme_sqlite, config: {{path: {path}}}}}
jobs:
  - id: j
    steps:
      - {{id: get, type: acme.kv_get, inputs: {{resource: kv, key: answer}}}}
"""


def _use_kv(s: Session) -> None:
    path = s.tmp / "kv.sqlite"
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO kv VALUES ('answer', '42')")
    db.close()
    s.write("kv.yaml", KV_FLOW.format(path=path))
    s.aetherflow("run", "kv.yaml", "--run-id", "docs", "--plugin-path", str(s.plugins))
    assert _outputs(_show(s), "j", "get") == {"value": 42}


def _use_report(s: Session) -> None:
    s.write("report.yaml", "version: 1\nflow: {id: report}\njobs:\n  - id: j\n    steps:\n      - {id: w, type: acme.write_report}\n")
    s.aetherflow("run", "report.yaml", "--run-id", "docs", "--plugin-path", str(s.plugins))
    ws = s.home / "work" / "report" / "j" / "docs"
    assert (ws / "artifacts" / "report.csv").read_bytes() == b"region,total\r\nnorth,12\r\n"
    assert json.loads((ws / "manifests" / "report.json").read_text())["rows"] == 1


def _use_classify(s: Session) -> None:
    s.write("classify.yaml", "version: 1\nflow: {id: cls}\njobs:\n  - id: route\n    steps:\n"
            "      - {id: c, type: acme.classify, inputs: {value: 250}, on_outcome: {small: complete_job, large: continue}}\n"
            "      - {id: after, type: noop}\n")
    s.aetherflow("run", "classify.yaml", "--run-id", "docs", "--plugin-path", str(s.plugins))
    steps = {x["step_id"]: x for x in _show(s)["jobs"][0]["steps"]}
    assert steps["c"]["outcome"] == "large" and steps["after"]["status"] == "SUCCESS"


def _use_shout(s: Session) -> None:
    s.write("shout.yaml", "version: 1\nflow: {id: shout}\njobs:\n  - id: j\n    steps:\n"
            "      - {id: up, type: acme.shout, inputs: {text: Hello}}\n      - {id: down, type: acme.whisper, inputs: {text: Hello}}\n")
    s.aetherflow("run", "shout.yaml", "--run-id", "docs", "--plugin-path", str(s.plugins))
    shown = _show(s)
    assert _outputs(shown, "j", "up") == {"text": "HELLO"} and _outputs(shown, "j", "down") == {"text": "hello"}


def _use_observer(s: Session) -> None:
    s.write("obs.yaml", "version: 1\nflow: {id: obs}\njobs:\n  - id: j\n    steps:\n      - {id: s, type: noop}\n")
    res = s.aetherflow("run", "obs.yaml", "-vv", "--plugin-path", str(s.plugins))
    assert "metric aetherflow.step flow=obs step=j.s" in res.stderr, res.stderr


def _use_decoder(s: Session) -> None:
    target = s.tmp / "decoded.db"
    s.write("decode.yaml", f"""version: 1
flow: {{id: dec}}
resources:
  db: {{kind: db, driver: sqlite3, config: {{path: "{binascii.hexlify(str(target).encode()).decode()}"}}, decode: {{config: {{path: hex}}}}}}
jobs:
  - id: j
    steps:
      - {{id: q, type: db_query, inputs: {{resource: db, sql: "SELECT 1 AS one"}}}}
""")
    s.aetherflow("run", "decode.yaml", "--plugin-path", str(s.plugins))
    assert target.exists()  # the connector opened the decoded path


def _use_fetch(s: Session) -> None:
    _shop(s.cwd / "data" / "shop.db")
    s.write("fetch.yaml", "version: 1\nflow: {id: fetch}\nresources:\n  shop: {kind: db, driver: sqlite3, config: {path: data/shop.db}}\n"
            "jobs:\n  - id: j\n    steps:\n      - {id: f, type: acme.fetch, inputs: {resource: shop}}\n")
    s.aetherflow("run", "fetch.yaml", "--run-id", "docs", "--plugin-path", str(s.plugins))
    assert _outputs(_show(s), "j", "f") == {"orders": 3}
    shown = s.aetherflow("steps", "show", "acme.fetch", "--plugin-path", str(s.plugins)).stdout
    assert '"max_attempts": 4' in shown and "retry default" in shown, shown


CONNECTOR_PROBE = """
from aetherflow.api import STEP_SUCCESS, Step, StepResult, register_step


@register_step("probe.connector")
class ProbeConnector(Step):
    def run(self, ctx, inputs):
        conn = ctx.connectors[inputs["resource"]]
        return StepResult(STEP_SUCCESS, {"class": type(conn).__name__, "name": conn.name, "sent": conn.sent})
"""


def _use_mail_dummy(s: Session) -> None:
    (s.plugins / "probe_connector.py").write_text(CONNECTOR_PROBE, encoding="utf-8")
    s.write("dummy.yaml", "version: 1\nflow: {id: dummy}\nresources:\n  outbox: {kind: mail, driver: mail-dummy}\n"
            "jobs:\n  - id: j\n    steps:\n      - {id: p, type: probe.connector, inputs: {resource: outbox}}\n")
    s.aetherflow("run", "dummy.yaml", "--run-id", "docs", "--plugin-path", str(s.plugins))
    assert _outputs(_show(s), "j", "p") == {"class": "MailDummy", "name": "outbox", "sent": []}


#: what each name a python example registers is used by: a function, or the id of a flow of the
#: same doc that uses it (run by test_doc_flow_runs)
PLUGIN_USES: dict[str, Callable[[Session], None] | str] = {
    "acme.count_rows": "count_example",
    "acme.write_report": _use_report,
    "kv:acme_sqlite": _use_kv,
    "acme.kv_get": _use_kv,
    "acme.classify": _use_classify,
    "acme.fetch": _use_fetch,
    "acme.shout": _use_shout,
    "acme.whisper": _use_shout,
    "observer:to_metrics": _use_observer,
    "decoder:hex": _use_decoder,
    "mail:mail-dummy": _use_mail_dummy,
}

_REGISTERED = [
    (re.compile(r"register_step\(\s*\"([^\"]+)\""), "{}"),
    (re.compile(r"register_step\(\s*\w+\s*,\s*\"([^\"]+)\""), "{}"),
    (re.compile(r"\.register\(\s*\"([^\"]+)\""), "{}"),
    (re.compile(r"register_connector\(\s*\"([^\"]+)\",\s*\"([^\"]+)\""), "{}:{}"),
    (re.compile(r"register_connector\(\s*kind=\"([^\"]+)\",\s*driver=\"([^\"]+)\""), "{}:{}"),
    (re.compile(r"register_decoder\(\s*\"([^\"]+)\""), "decoder:{}"),
    (re.compile(r"@register_observer\s*\n\s*def (\w+)"), "observer:{}"),
]


def registered(text: str) -> list[str]:
    names = []
    for pattern, form in _REGISTERED:
        for m in pattern.finditer(text):
            names.append(form.format(*m.groups()))
    return sorted(set(names))


PYTHON = [b for b in BLOCKS if b.lang == "python" and b.marker is None]


@pytest.mark.parametrize("block", PYTHON, ids=[b.name for b in PYTHON])
def test_doc_python_example_runs(block: Block, tmp_path: Path) -> None:
    if re.search(r"^def test_", block.text, re.M):  # a test example: pytest runs it
        path = tmp_path / "test_doc_example.py"
        path.write_text(block.text, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AETHERFLOW_", "PYTEST_"))}
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                               "--rootdir", str(tmp_path), str(path)], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)
        assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout + proc.stderr
        return
    s = Session(tmp_path, block.doc)
    for p in s.plugins.iterdir():  # this example alone
        if p.read_text(encoding="utf-8") != block.text:
            p.unlink()
    listed = json.loads(s.aetherflow("steps", "list", "--json", "--plugin-path", str(s.plugins)).stdout)
    assert not [p for p in listed["plugins"] if p["error"]], listed["plugins"]
    names = registered(block.text)
    assert names, f"{block.name}: a python example registers nothing (a step, connector, decoder or observer)"
    flows = {b.flow_id for b in BLOCKS if b.doc == block.doc and b.is_flow}
    done: list[Callable[[Session], None]] = []
    for name in names:
        use = PLUGIN_USES.get(name)
        assert use is not None, f"{block.name}: nothing uses '{name}'; add it to PLUGIN_USES"
        if isinstance(use, str):
            assert use in flows, f"{name}: no flow '{use}' in {block.doc}"
        elif use not in done:
            use(s)
            done.append(use)


# ------------------------------------------------------------------------------ commands


def _split_comment(line: str) -> tuple[str, str]:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


INSTALL = (("python3", "-m", "venv"), ("pip",), (".venv/bin/pip",), ("pipx",), (".", ".venv/bin/activate"),
           ("source",), ("bash", ".ci/run"))


def _run_command(s: Session, command: str, comment: str) -> subprocess.CompletedProcess[str] | None:
    m = re.match(r"exit (\d+)\b", comment)
    expect = int(m.group(1)) if m else 0
    last = None
    for part in (p.strip() for p in command.split("&&")):
        for example, here in s.names.items():
            part = part.replace(example, here)
        if s.run_id:
            part = part.replace("<run_id>", s.run_id)
            part = re.sub(r"\bRUN_ID\b", s.run_id, part)
        argv = [s.env["HOME"] + w[1:] if w == "~" or w.startswith("~/") else w for w in shlex.split(part)]
        env: dict[str, str] = {}
        while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
            k, _, v = argv.pop(0).partition("=")
            env[k] = v
        redirect = None
        if ">" in argv:  # COMMAND > FILE
            at = argv.index(">")
            argv, redirect = argv[:at], argv[at + 1]
        if any(tuple(argv[:len(p)]) == p for p in INSTALL):
            continue  # .ci/run installs and tests; a test cannot install from the network
        if argv[0] in ("aetherflow", ".venv/bin/aetherflow"):
            last = s.aetherflow(*argv[1:], env=env, expect=expect)
            if redirect:
                (s.cwd / redirect).write_text(last.stdout, encoding="utf-8")
            s.log.append(part)
            s.run_id = s.newest_run() or s.run_id
        elif argv[0] == "sqlite3":
            if shutil.which("sqlite3") is None:
                pytest.skip("the sqlite3 command-line shell is not installed")
            proc = subprocess.run(["sh", "-c", part], capture_output=True, text=True, cwd=s.cwd, timeout=120)
            assert proc.returncode == expect, proc.stderr
        else:
            raise AssertionError(f"{s.doc}: the harness does not know how to run {part!r}")
    return last


def _commands(block: Block) -> list[tuple[str, str, list[str]]]:
    """(command, comment, expected output lines) of a sh or console block."""
    out: list[tuple[str, str, list[str]]] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i].strip()
        i += 1
        if block.lang == "console":
            if line.startswith("$ "):
                command, comment = _split_comment(line[2:])
                out.append((command, comment, []))
            elif line.strip() and out:
                out[-1][2].append(line)
            continue
        command, comment = _split_comment(line)
        if command.strip():
            out.append((command, comment, []))
    return out


def _failed_once_flow(s: Session) -> None:
    marker = s.tmp / "fixed"
    s.write("load.yaml", f"""version: 1
flow: {{id: load_orders}}
jobs:
  - id: load
    steps:
      - {{id: copy, type: external.process, inputs: {{command: [sh, -c, 'test -e {marker} || {{ touch {marker}; exit 1; }}']}}}}
""")
    s.aetherflow("run", "load.yaml", expect=1)
    s.run_id = s.newest_run()


def _waiting_run(s: Session, key: str | None = None) -> None:
    s.aetherflow("run", "flows/order_approval.yaml", *(["--key", key] if key else []))
    s.run_id = s.newest_run()


def _nightly_plugins(s: Session) -> None:
    s.env.pop("AETHERFLOW_PLUGIN_PATHS")  # this block names its folders itself
    for d in ("flow_plugins", "shared_plugins"):
        (s.cwd / d).mkdir()
    for name in os.listdir(s.plugins):
        shutil.copy(s.plugins / name, s.cwd / "flow_plugins" / name)
    s.write("flows/nightly.yaml", "version: 1\nflow: {id: nightly}\njobs:\n  - id: j\n    steps:\n"
            "      - {id: s, type: acme.shout, inputs: {text: hi}}\n")


#: (doc, first command of a block) -> what to prepare before the block runs
COMMAND_SETUP: dict[tuple[str, str], Callable[[Session], None]] = {
    ("recovery.md", "aetherflow runs list --status FAILED"): _failed_once_flow,
    ("recovery.md", "aetherflow runs show RUN_ID"): _waiting_run,
    ("recovery.md", "aetherflow cancel RUN_ID --reason \"order withdrawn\""): _waiting_run,
    ("waiting.md", "aetherflow resume RUN_ID --event approved --data '{\"by\": \"ops\"}'"):
        lambda s: (_waiting_run(s, "order42"), _waiting_run(s, "order43")) and None,
    ("plugins.md", "aetherflow run flows/nightly.yaml --plugin-path ./flow_plugins"): _nightly_plugins,
    ("waiting.md", "aetherflow resume RUN_ID --in 2h"): lambda s: _waiting_run(s, "order42"),
    ("recovery.md", "sqlite3 state.db '.dump' | sqlite3 recovered.db"): lambda s: setattr(s, "cwd", s.home),
    # the SQLite store the doc moves to PostgreSQL holds a run
    ("scale-out.md", "aetherflow runs list --state /var/lib/aetherflow/state.db"):
        lambda s: s.aetherflow("run", "flows/daily.yaml") and None,
}

#: a doc's example names (a database server, paths) -> this session's, in its commands and crontab
SESSION_NAMES: dict[str, Callable[[Session, pytest.FixtureRequest], dict[str, str]]] = {
    # a store of its own on the test server (skipped, with the reason, without one)
    "scale-out.md": lambda s, request: {"postgresql://aetherflow@db.example.com:5432/ops":
                                        request.getfixturevalue("pg_store_url")(),
                                        "/var/lib/aetherflow": str(s.home)},
}

#: env of a doc's whole session
SESSION_ENV: dict[str, Callable[[Session], dict[str, str]]] = {
    "plugins.md": lambda s: {"AETHERFLOW_PLUGIN_PATHS": str(s.plugins)},  # acme.shout, from its examples
}

COMMAND_DOCS = sorted({b.doc for b in BLOCKS if b.lang in ("sh", "console") and b.marker is None})


@pytest.mark.parametrize("doc", COMMAND_DOCS)
def test_doc_commands_run(doc: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    s = Session(tmp_path, doc)
    if doc in SESSION_NAMES:
        s.names = SESSION_NAMES[doc](s, request)
    if doc in SESSION_ENV:
        s.env.update(SESSION_ENV[doc](s))
    ran = 0
    for block in (b for b in BLOCKS if b.doc == doc and b.lang in ("sh", "console") and b.marker is None):
        for flow in (b for b in BLOCKS if b.doc == doc and b.save_as and b.line < block.line):
            if not (s.cwd / str(flow.save_as)).exists():  # "Save it as `NAME`" before these commands
                s.write(str(flow.save_as), flow.text)
        commands = _commands(block)
        if commands and (doc, commands[0][0]) in COMMAND_SETUP:
            COMMAND_SETUP[(doc, commands[0][0])](s)
        for command, comment, expected in commands:
            res = _run_command(s, command, comment)
            ran += res is not None
            if expected:
                assert res is not None
                shown = (res.stdout + res.stderr).splitlines()
                for line in expected:
                    want = line.replace("<run_id>", s.run_id or "<run_id>")
                    assert want in shown, f"{block.name}: {want!r} not in the output of {command!r}:\n{res.stdout}{res.stderr}"
    assert ran, f"{doc}: no aetherflow command ran"
    if doc == "recovery.md":  # the recovered copy holds the runs of the store it was made from
        runs = json.loads(s.aetherflow("runs", "list", "--state", "recovered.db", "--json").stdout)["runs"]
        assert len(runs) == 3, runs


def test_the_readme_first_command_runs_quietly_without_v(tmp_path: Path) -> None:
    """The README says a run that succeeds prints nothing, and -v shows each step."""
    s = Session(tmp_path, "README.md")
    quiet = s.aetherflow("run", "flows/daily.yaml")
    assert quiet.stdout == "" and quiet.stderr == ""
    loud = s.aetherflow("run", "flows/daily.yaml", "-v")
    assert "done   report.extract SUCCESS" in loud.stderr


# ------------------------------------------------------------------------------ --help examples


def help_examples() -> list[tuple[str, str]]:
    """(command, example) of every ``Example:`` line in the --help of every command and group
    (docs/cli.md is made of these helps: tests/contract/test_cli_reference.py)."""
    import typer.main

    from aetherflow.cli.app import app

    found: list[tuple[str, str]] = []

    def walk(command: Any, path: list[str]) -> None:
        for line in (command.help or "").splitlines():
            if line.strip().startswith("Example:"):
                found.append((" ".join(path) or "aetherflow", line.strip().removeprefix("Example:").strip()))
        for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


EXAMPLE_RUN_ID = "20261122T031500-a1b2c3"


def _example_run(s: Session) -> None:
    s.aetherflow("run", "flows/daily.yaml", "--run-id", EXAMPLE_RUN_ID)


def _example_waiting_run(s: Session) -> None:
    s.aetherflow("run", "flows/order_approval.yaml", "--key", "order42", "--run-id", EXAMPLE_RUN_ID)


def _example_failed_sales_run(s: Session) -> None:
    s.write("flows/sales_load.yaml", "version: 1\nflow: {id: sales_load, tags: [sales]}\njobs:\n  - id: load\n    steps:\n"
            "      - {id: copy, type: external.process, inputs: {command: [sh, -c, 'exit 3']}}\n")
    s.aetherflow("run", "flows/sales_load.yaml", expect=1)


def _example_retried_fetch(s: Session) -> None:
    marker = s.tmp / "fetched-once"
    s.write("flows/fetch.yaml", f"""version: 1
flow: {{id: fetch}}
jobs:
  - id: extract
    steps:
      - id: fetch
        type: external.process
        retry: {{max_attempts: 2, backoff: constant, initial_delay_seconds: 0}}
        inputs: {{command: [sh, -c, 'if test -e {marker}; then echo fetched; else touch {marker}; echo "not yet" >&2; exit 1; fi']}}
""")
    s.aetherflow("run", "flows/fetch.yaml")


def _example_stores(s: Session) -> None:
    for store in ("state.db", "~/.local/state/aetherflow/state.db"):
        s.aetherflow("run", "flows/daily.yaml", "--state", store.replace("~", s.env["HOME"]))


#: example -> what it needs before it runs (its run, its files)
EXAMPLE_SETUP: dict[str, Callable[[Session], None]] = {
    f"aetherflow runs show {EXAMPLE_RUN_ID} --history": _example_run,
    f"aetherflow cancel {EXAMPLE_RUN_ID} --reason \"bad input file\"": _example_waiting_run,
    f"aetherflow resume {EXAMPLE_RUN_ID} --event approved --data '{{\"by\": \"ops\"}}'": _example_waiting_run,
    "aetherflow runs list --status FAILED": _example_failed_sales_run,
    "aetherflow runs list --status FAILED --tag sales --limit 5": _example_failed_sales_run,
    "aetherflow runs logs last extract.fetch --attempt 2": _example_retried_fetch,
    "aetherflow store copy state.db postgresql://aetherflow@db.example/ops": _example_stores,
    "aetherflow store copy ~/.local/state/aetherflow/state.db postgresql://aetherflow@db.example:5432/ops":
        _example_stores,
}

#: example -> a line its output must hold (``{run_id}``: the session's newest run)
EXAMPLE_SHOWS: dict[str, str] = {
    "aetherflow runs list --status FAILED": "sales_load",
    "aetherflow runs list --status FAILED --tag sales --limit 5": "sales_load",
    "aetherflow runs logs last extract.fetch --attempt 2": "fetched",
    f"aetherflow runs show {EXAMPLE_RUN_ID} --history": f"run {EXAMPLE_RUN_ID}  flow daily_sales  SUCCESS",
    "aetherflow steps show external.process": "external.process",
    "aetherflow graph flows/daily.yaml --format mermaid": "j_probe --> j_report",
    "aetherflow explain flows/etl_sqlite.yaml --param db=/srv/shop.db":
        "config.path = /srv/shop.db  <- flow resource via params.db",
}

HELP_EXAMPLES = help_examples()


@pytest.mark.parametrize(("command", "example"), HELP_EXAMPLES, ids=[f"{c}: {e}" for c, e in HELP_EXAMPLES])
def test_help_example_runs(command: str, example: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Every --help ``Example:`` runs and exits 0, as typed in a copy of the repository's flows/
    with a fresh home; a run id or a file it names is made first (EXAMPLE_SETUP), and a database
    server it names is a PostgreSQL store of the test server's (skipped, saying why, without one)."""
    s = Session(tmp_path, "cli.md")
    if "postgresql://" in example:
        url = re.search(r"postgresql://\S+", example)
        assert url is not None
        s.names = {url.group(0): request.getfixturevalue("pg_store_url")()}
    if example in EXAMPLE_SETUP:
        EXAMPLE_SETUP[example](s)
    res = _run_command(s, example, "")
    assert res is not None, f"{command}: its example runs no aetherflow command"
    if example in EXAMPLE_SHOWS:
        assert EXAMPLE_SHOWS[example] in res.stdout, res.stdout
    if "> flow.schema.json" in example:
        assert json.loads((s.cwd / "flow.schema.json").read_text())["$schema"].startswith("https://json-schema.org/")
    if "store copy" in example:  # the copy holds the runs of the store it was made from
        copied = json.loads(s.aetherflow("runs", "list", "--state", s.names[next(iter(s.names))], "--json").stdout)
        assert len(copied["runs"]) == 1, copied


def test_every_command_has_a_help_example() -> None:
    commands = {c for c, _ in HELP_EXAMPLES}
    import typer.main

    from aetherflow.cli.app import app

    def names(command: Any, path: list[str]) -> list[str]:
        subs = getattr(command, "commands", None) or {}
        return [" ".join(path) or "aetherflow"] + [n for k, sub in subs.items() for n in names(sub, [*path, k])]

    missing = sorted(set(names(typer.main.get_command(app), [])) - commands)
    assert not missing, f"--help without an Example: line: {missing}"


# ------------------------------------------------------------------------------ crontab

CRON = [b for b in BLOCKS if b.lang == "crontab" and b.marker is None]
_PATHS = {"/opt/aetherflow/.venv/bin/aetherflow": CLI}


@pytest.mark.parametrize("block", CRON, ids=[b.name for b in CRON])
def test_doc_crontab_runs_as_cron_would(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    s = Session(tmp_path, block.doc)
    names = SESSION_NAMES[block.doc](s, request) if block.doc in SESSION_NAMES else {}
    cron_env = {"HOME": str(tmp_path / "userhome"), "SHELL": "/bin/sh", "LOGNAME": "cron", "PATH": "/usr/bin:/bin"}
    entries = []
    for line in block.text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if m := re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line):
            cron_env[m.group(1)] = names.get(m.group(2), m.group(2))
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, f"{block.name}: not a crontab entry: {line!r}"
        entries.append(fields[5])
    cron_env["AETHERFLOW_HOME"] = str(s.home)  # the crontab's own, or none: this session's home either way
    assert entries
    for command in entries:
        words = [w for part in command.split("&&") for w in [shlex.split(part.strip())[0]] if w != "cd"]
        program = words[0]
        assert program.startswith("/") and program.endswith("/aetherflow"), (
            f"{block.name}: cron's PATH has no virtual environment: call aetherflow by its absolute path ({command!r})")
        real = command.replace("\\%", "%").replace("/srv/flows", str(s.cwd / "flows"))
        for example, here in _PATHS.items():
            real = real.replace(example, here)
        proc = subprocess.run(["/bin/sh", "-c", real], capture_output=True, text=True, env=cron_env, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout == "" and proc.stderr == "", "cron mails any output: a good run prints nothing"


# ------------------------------------------------------------------------------ outputs and files


def _shown(block: Block, output: str, names: dict[str, str] | None = None) -> None:
    """Every line of ``block`` is a line of ``output`` (after the doc's example paths become
    this session's)."""
    lines = output.splitlines()
    for want in block.text.splitlines():
        for example, here in (names or {}).items():
            want = want.replace(example, here)
        assert want in lines, f"{block.name}: {want!r} is not a line of the output:\n{output}"


def _map(value: Any, names: dict[str, str]) -> Any:
    text = json.dumps(value)
    for example, here in names.items():
        text = text.replace(example, here)
    return json.loads(text)


def _misspelled_depends_on(s: Session) -> None:
    flow = s.cwd / "flows" / "daily.yaml"
    text = flow.read_text(encoding="utf-8")
    assert text.count("    depends_on: [probe]\n") == 1
    flow.write_text(text.replace("    depends_on: [probe]\n", "    depends_onn: [probe]\n"), encoding="utf-8")


def _out_validate_text(s: Session, block: Block) -> None:
    _misspelled_depends_on(s)
    res = s.aetherflow("validate", "flows/daily.yaml", expect=2)
    assert res.stderr == block.text  # the whole output, positions included


def _out_validate_json(s: Session, block: Block) -> None:
    _misspelled_depends_on(s)
    res = s.aetherflow("validate", "flows/daily.yaml", "--json", expect=2)
    assert json.loads(res.stdout) == json.loads(block.text)


def _out_ignored_core_setting(s: Session, block: Block) -> None:
    res = s.aetherflow("validate", "flows/daily.yaml", env={"AETHERFLOW_SECRETS_MODULE": "acme.secrets"})
    _shown(block, res.stderr)


def _srv_plugins(s: Session, name: str, text: str) -> Path:
    d = s.cwd / "srv" / "flows" / "plugins"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(text, encoding="utf-8")
    return d


def _out_private_plugin_file(s: Session, block: Block) -> None:
    d = _srv_plugins(s, "_old_steps.py", "LEFT_OVER = 1\n")
    res = s.aetherflow("validate", "flows/daily.yaml", "--plugin-path", str(d))
    _shown(block, res.stderr, {"/srv/flows/plugins": str(d)})


def _out_duplicate_step(s: Session, block: Block) -> None:
    d = _srv_plugins(s, "checks.py", "from aetherflow.api import Step, register_step\n\n\n"
                     "@register_step(\"check_items\")\nclass Checks(Step):\n    def run(self, ctx, inputs):\n"
                     "        raise NotImplementedError\n")
    res = s.aetherflow("validate", "flows/daily.yaml", "--plugin-path", str(d), expect=2)
    _shown(block, res.stderr, {"/srv/flows/plugins": str(d)})


def _broken_entry_point(s: Session) -> dict[str, str]:
    """An installed distribution (on PYTHONPATH) whose ``acme`` entry point fails to import."""
    site = s.tmp / "site"
    (site / "acme_aetherflow").mkdir(parents=True)
    (site / "acme_aetherflow" / "__init__.py").write_text("import snowflake  # not installed\n", encoding="utf-8")
    info = site / "acme_aetherflow-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-aetherflow\nVersion: 1.0.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[aetherflow.plugins]\nacme = acme_aetherflow\n", encoding="utf-8")
    return {"PYTHONPATH": str(site), "AETHERFLOW_PLUGIN_CACHE": "0"}


def _out_broken_plugin(s: Session, block: Block) -> None:
    env = _broken_entry_point(s)
    shown = s.aetherflow("validate", "flows/daily.yaml", env=env).stderr  # warning: ...
    shown += s.aetherflow("run", "flows/daily.yaml", env=env).stderr  # WARNING ... (run's log)
    _shown(block, shown)


NIGHTLY = """version: 1
flow: {id: nightly}
jobs:
  - id: load
    steps:
      - id: stage
        type: external.process
        inputs:
          command: [sh, -c, 'echo staged']
      - id: push
        retry: {max_attempts: 2}
        type: acme.load
"""


def _out_step_of_a_broken_plugin(s: Session, block: Block) -> None:
    env = _broken_entry_point(s)
    s.write("flows/nightly.yaml", NIGHTLY)
    _shown(block, s.aetherflow("validate", "flows/nightly.yaml", env=env, expect=2).stderr)


SECRET_RESUME = """version: 1
flow: {{id: login_then_use}}
secrets:
  TOKEN: {{env: API_TOKEN}}
jobs:
  - id: job
    steps:
      - {{id: login, type: noop, inputs: {{token: "{{{{ secrets.TOKEN }}}}"}}}}
      - {{id: gate, type: external.process, inputs: {{command: [test, -e, "{gate}"]}}}}
      - {{id: use, type: noop, inputs: {{token: "{{{{ steps.login.token }}}}"}}}}
"""


def _out_masked_secret_on_resume(s: Session, block: Block) -> None:
    gate = s.tmp / "gate"
    s.write("login.yaml", SECRET_RESUME.format(gate=gate))
    env = {"API_TOKEN": SECRET_TOKEN}
    s.aetherflow("run", "login.yaml", "--run-id", "docs", env=env, expect=1)  # fails at gate
    gate.touch()
    s.aetherflow("resume", "docs", env=env, expect=1)  # login restored masked: use cannot render it
    use = next(x for x in _show(s)["jobs"][0]["steps"] if x["step_id"] == "use")
    assert use["error"] == block.text.strip()


def _config_example() -> Block:
    return next(b for b in BLOCKS if b.doc == "operations.md" and b.lang == "toml")


def _out_config_error(s: Session, block: Block) -> None:
    lines = _config_example().text.splitlines()
    lines[4] = 'log_fromat = "json"'  # the doc: the file above with this as its fifth line
    path = s.write("etc/aetherflow/config.toml", "\n".join(lines) + "\n")
    res = s.aetherflow("config", "show", "--config", str(path), expect=2)
    _shown(block, res.stderr, {"/etc/aetherflow/config.toml": str(path)})


def _out_notice(s: Session, block: Block) -> None:
    doc = json.loads(block.text)
    srv = s.cwd / "srv" / "aetherflow"
    flow = s.write("srv/aetherflow/flows/billing_daily.yaml", "version: 1\nflow: {id: billing_daily}\njobs:\n"
                   "  - id: load\n    steps:\n      - {id: copy, type: external.process, inputs: {command: [sh, -c, 'exit 3']}}\n")
    got = s.tmp / "notice.json"
    config = s.write("config.toml", f'state = "{srv}/state.db"\n[[notify]]\non = ["failed"]\n'
                     f'command = ["sh", "-c", "cat > {got}"]\n')
    s.aetherflow("run", str(flow), "--config", str(config), expect=1)
    real = json.loads(got.read_text(encoding="utf-8"))
    assert sorted(real) == sorted(doc), "the notice's fields"
    want = _map(doc, {"/srv/aetherflow": str(srv), "20261122T021500-a1b2c3": real["run_id"]})
    varying = ("host", "pid", "started_at", "finished_at", "duration_seconds", "sent_at")  # this run's
    assert {k: v for k, v in real.items() if k not in varying} == {k: v for k, v in want.items() if k not in varying}
    for k in varying:
        assert type(real[k]) is type(doc[k]), k
    from datetime import datetime

    assert all(datetime.fromisoformat(real[k]).utcoffset() is not None for k in ("started_at", "finished_at", "sent_at"))


AMOUNT_STEP = """
from aetherflow.api import STEP_SUCCESS, Step, StepResult, register_step


@register_step("docs.check_amount")
class CheckAmount(Step):
    def run(self, ctx, inputs):
        return StepResult(STEP_SUCCESS, {}, metadata={"amount": inputs["amount"]})
"""

ORDER_FLOW = """version: 1
flow:
  id: order_approval
  version: 3
  tags: [orders]
  metadata: {team: payments}
  unique: {key: orderid}
jobs:
  - id: approve
    steps:
      - {id: check, type: docs.check_amount, inputs: {amount: 4999}}
"""


def _out_events_log_line(s: Session, block: Block) -> None:
    doc = json.loads(block.text)
    (s.plugins / "doc_amount.py").write_text(AMOUNT_STEP, encoding="utf-8")
    s.write("order.yaml", ORDER_FLOW)
    log = s.tmp / "events.jsonl"
    s.aetherflow("run", "order.yaml", "--key", "order42", "--meta", "ticket=OPS-7", "--run-id", doc["run_id"],
                 "--events-log", str(log), "--plugin-path", str(s.plugins))
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    real = next(e for e in lines if e["event"] == doc["event"] and e["step_id"] == doc["step_id"])
    assert sorted(real) == sorted(doc) and sorted(real["data"]) == sorted(doc["data"]), "the fields"
    assert {k: v for k, v in real.items() if k not in ("ts", "data")} == {k: v for k, v in doc.items() if k not in ("ts", "data")}
    assert {k: v for k, v in real["data"].items() if k != "duration"} == {k: v for k, v in doc["data"].items() if k != "duration"}
    assert isinstance(real["ts"], float) and isinstance(real["data"]["duration"], float)


#: (doc, first line of a block) -> what produces the output the block shows, checked against it
OUTPUT_CHECKS: dict[tuple[str, str], Callable[[Session, Block], None]] = {
    ("error-codes.md", "flows/daily.yaml:27:5: schema.additional_property: unknown key 'depends_onn' in jobs[1] "
                       "(at jobs[1].depends_onn)"): _out_validate_text,
    ("error-codes.md", "{"): _out_validate_json,
    ("migrating.md", "warning: AETHERFLOW_SECRETS_MODULE is set but aetherflow does not read it (aetherflow-core "
                     "setting): decode resource fields with a plugin decoder (@register_decoder(\"name\"), decode: "
                     "{config: {password: name}}); decode: true means base64 here; take secret values from secrets: "
                     "(env, file, dotenv, command) instead of expand_env"): _out_ignored_core_setting,
    ("plugins.md", "warning: plugin folder /srv/flows/plugins: skipped _old_steps.py: a name starting with '_' is "
                   "private to the plugins that import it, and none did"): _out_private_plugin_file,
    ("plugins.md", "warning: plugin failed to import: acme: ModuleNotFoundError: No module named 'snowflake'"):
        _out_broken_plugin,
    ("plugins.md", "flows/nightly.yaml:12:15: flow.unknown_step_type: unknown step type 'acme.load'; plugins that "
                   "failed to import: acme: ModuleNotFoundError: No module named 'snowflake' "
                   "(at jobs[0].steps[1].type)"): _out_step_of_a_broken_plugin,
    ("plugins.md", "aetherflow: error[plugin.duplicate_step]: step type 'check_items' is registered twice: by builtin "
                   "(aetherflow.steps.control) and by plugin path /srv/flows/plugins/checks.py"): _out_duplicate_step,
    ("secrets.md", "inputs: template path 'steps.login.token' refers to a value that carried a secret and was masked "
                   "in the run store (job.login.token); it cannot be rendered (hint: read secrets with "
                   "'{{ secrets.NAME }}' where they are needed)"): _out_masked_secret_on_resume,
    ("operations.md", "/etc/aetherflow/config.toml:5:1: config.additional_property: unknown key 'log_fromat' at the "
                      "top level (at log_fromat)"): _out_config_error,
    ("operations.md", "{"): _out_notice,
    ("waiting.md", '{"event": "step.finished", "ts": 1795000000.1, "run_id": "20261122T031500-a1b2c3", '
                   '"flow_id": "order_approval",'): _out_events_log_line,
}


def _check_config_file(s: Session, block: Block) -> None:
    """The config example is valid against schemas/config.schema.json, and aetherflow reads it."""
    import jsonschema

    schema = json.loads((ROOT / "schemas" / "config.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(tomllib.loads(block.text))
    path = s.write("etc/aetherflow/config.toml", block.text)
    shown = s.aetherflow("config", "show", "--config", str(path), "--json").stdout
    assert "/srv/aetherflow/state.db" in shown and "billing_*" in shown


def _check_plugin_package(s: Session, block: Block) -> None:
    """The plugin package's pyproject.toml builds (with this environment's hatchling, offline)
    and its entry point is found: the package holds the doc's register() example."""
    pkg = s.tmp / "acme-aetherflow"
    (pkg / "src" / "acme_aetherflow").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(block.text, encoding="utf-8")
    register = next(b for b in BLOCKS if b.doc == "plugins.md" and b.lang == "python" and "def register(" in b.text)
    (pkg / "src" / "acme_aetherflow" / "__init__.py").write_text(register.text, encoding="utf-8")
    target = s.tmp / "target"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--disable-pip-version-check", "--target", str(target), str(pkg)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PIP_NO_INPUT": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = json.loads(s.aetherflow("steps", "list", "--json", env={"PYTHONPATH": str(target)}).stdout)
    rows = {r["type"]: r["source"] for r in listed["steps"]}
    assert rows.get("acme.shout") == "plugin acme-aetherflow (entry point acme = acme_aetherflow)", rows


#: (doc, first line of a toml block) -> its check
FILE_CHECKS: dict[tuple[str, str], Callable[[Session, Block], None]] = {
    ("operations.md", "# /etc/aetherflow/config.toml: read by every aetherflow command on this host"): _check_config_file,
    ("plugins.md", "[build-system]"): _check_plugin_package,
}

SHOWN = [b for b in BLOCKS if b.lang in ("text", "json", "", "toml") and b.marker != "illustrative"]


def _first_line(block: Block) -> tuple[str, str]:
    return block.doc, block.text.splitlines()[0]


@pytest.mark.parametrize("block", SHOWN, ids=[b.name for b in SHOWN])
def test_documented_output_is_the_real_output(block: Block, tmp_path: Path) -> None:
    """A block that shows a command's output is what the command prints (codes, messages,
    file:line:column); a block that shows a file aetherflow reads is read by it. Any other
    block says it is illustrative (tests/docblocks.py)."""
    check = OUTPUT_CHECKS.get(_first_line(block)) or FILE_CHECKS.get(_first_line(block))
    assert check is not None, (f"{block.name}: what shows this output? Add it to OUTPUT_CHECKS (or FILE_CHECKS), "
                               "or mark the block illustrative and say so in the doc")
    check(Session(tmp_path, block.doc), block)


def test_every_check_has_its_block() -> None:
    firsts = {_first_line(b) for b in SHOWN}
    stale = sorted(k for k in [*OUTPUT_CHECKS, *FILE_CHECKS] if k not in firsts)
    assert not stale, f"no block of the docs starts like this any more: {stale}"


ILLUSTRATIVE = [b for b in BLOCKS if b.marker == "illustrative"]


def _tree_paths(text: str) -> list[str]:
    """The files and directories a tree block names, with their parents (``spec/`` ...)."""
    out: list[str] = []
    parents: list[tuple[int, str]] = []
    for line in text.splitlines():
        m = re.match(r"^([│ ]*)[├└]── (\S+)", line)
        if not m:
            continue
        depth = len(m.group(1)) // 4
        parents = [p for p in parents if p[0] < depth]
        path = "/".join([p[1].rstrip("/") for p in parents] + [m.group(2)])
        out.append(path)
        if m.group(2).endswith("/"):
            parents.append((depth, m.group(2)))
    return out


def test_the_architecture_tree_names_what_exists() -> None:
    block = next(b for b in ILLUSTRATIVE if b.doc == "architecture.md")
    assert block.text.startswith("aetherflow/\n")
    named = _tree_paths(block.text)
    assert len(named) > 20
    missing = [p for p in named if not (ROOT / "aetherflow" / p.rstrip("/")).exists()]
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"
    listed = {p.rstrip("/") for p in named}
    unnamed = sorted(p.name for p in (ROOT / "aetherflow").iterdir()
                     if p.name != "__pycache__" and p.name not in listed and not p.name.startswith("."))
    assert not unnamed, f"docs/architecture.md's tree leaves out: {unnamed}"


def test_the_alert_rules_name_metrics_aetherflow_writes(tmp_path: Path) -> None:
    block = next(b for b in ILLUSTRATIVE if b.doc == "operations.md")
    s = Session(tmp_path, "operations.md")
    textfile = s.tmp / "aetherflow.prom"
    s.aetherflow("run", "flows/daily.yaml", "--metrics-textfile", str(textfile))
    written = set(re.findall(r"^(aetherflow_[a-z_]+)", textfile.read_text(encoding="utf-8"), re.M))
    named = set(re.findall(r"\b(aetherflow_[a-z_]+)", block.text))
    assert named and named <= written, f"not in the textfile: {sorted(named - written)}"


# ------------------------------------------------------------------------------ the rest


def test_every_block_is_of_a_known_kind() -> None:
    unknown = [b.name for b in BLOCKS if b.lang not in KNOWN_LANGS]
    assert not unknown, unknown
    fragments = [b.name for b in BLOCKS if b.lang == "yaml" and not b.is_flow and b.marker is None]
    assert not fragments, f"yaml examples must be whole flows: {fragments}"


def test_opting_out_is_rare_and_says_why() -> None:
    marked = [b for b in BLOCKS if b.marker in ("skip", "validate-only")]
    assert len(marked) <= MAX_OPT_OUTS, [b.name for b in marked]
    for b in BLOCKS:
        if b.marker:
            assert b.reason and len(b.reason) > 15, b.name
        if b.marker == "validate-only":
            assert b.is_flow, f"{b.name}: validate-only is for flows"
        if b.marker == "illustrative":
            assert b.lang in ("text", ""), f"{b.name}: an illustrative block shows no code nor output"
