"""Secret canaries: secrets from every source (env, file, dotenv, command with base64, a
``decode:`` resource field) are used in step inputs, a resource, a process environment, an
output and error messages of a real `python -m aetherflow run -vv --log-format json
--events-log FILE`. Then stdout, stderr, the events log, `runs show --json --history`, `runs
list --json` and the raw bytes of the state database (and its WAL) are searched for every
secret in plain, base64 (standard and URL-safe, with and without padding), URL-encoded and
JSON-escaped form. None may appear. The resume test checks that a masked output cannot be
read back by a template after resume."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

TOKEN = secrets.token_hex(4)
SECRETS = {
    "env": f"EnvC4nary/+ü \"q\" &x=1-{TOKEN}",
    "file": f"F1leCanary?#:{TOKEN}",
    "dotenv": f"D0tenvCanary_{TOKEN}=/",
    "command": f"CmdCanary~{TOKEN}>ä",
    "decoded": f"ResTok3n+/{TOKEN}",
}


def forms(value: str) -> dict[str, str]:
    raw = value.encode("utf-8")
    out = {"plain": value}
    for label, enc in (("base64", base64.b64encode(raw)), ("base64url", base64.urlsafe_b64encode(raw))):
        text = enc.decode("ascii")
        out[label] = text
        out[label + "-nopad"] = text.rstrip("=")
    out["url"] = urllib.parse.quote(value, safe="")
    out["url-plus"] = urllib.parse.quote_plus(value)
    out["url-path"] = urllib.parse.quote(value)
    out["json"] = json.dumps(value)[1:-1]
    out["json-utf8"] = json.dumps(value, ensure_ascii=False)[1:-1]
    return out


def assert_clean(where: str, data: str | bytes) -> None:
    for name, value in SECRETS.items():
        for label, form in forms(value).items():
            needle: str | bytes = form.encode("utf-8") if isinstance(data, bytes) else form
            assert needle not in data, f"secret '{name}' leaked as {label} into {where}"


class _Echo(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_POST(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        info = {"auth": self.headers.get("Authorization", ""), "x_secret": self.headers.get("X-Secret", ""), "body": body}
        type(self).seen.append(info)
        status = 500 if self.path.startswith("/fail") else 200
        payload = json.dumps(info, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if status == 200 else "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def echo_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    handler = type("Echo", (_Echo,), {"seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(timeout=10)


FLOW = """
version: 1
flow:
  id: canary
  workspace: {{root: work}}
  state: {{path: state/canary.db}}
secrets:
  s_env: {{env: CANARY_ENV}}
  s_file: {{file: secret.txt}}
  s_dotenv: {{dotenv: secrets.env, key: DOT_SECRET}}
  s_cmd: {{command: [cat, "{cmd_file}"], decode: base64}}
resources:
  api:
    kind: rest
    driver: http
    config:
      base_url: "{url}"
      token: "{{{{ env.CANARY_TOKEN_B64 }}}}"
    decode: {{config: {{token: true}}}}
jobs:
  - id: use
    steps:
      - id: echo
        type: debug
        inputs: {{message: "env={{{{ secrets.s_env }}}} file={{{{ secrets.s_file }}}} dot={{{{ secrets.s_dotenv }}}} cmd={{{{ secrets.s_cmd }}}}"}}
        outputs: {{carried: "{{{{ result.message }}}}"}}
      - id: proc
        type: external.process
        inputs:
          command: [sh, -c, 'echo "out:$CANARY_VAR:$CMD"; echo "err:$CANARY_VAR" >&2']
          env: {{CANARY_VAR: "{{{{ secrets.s_env }}}}", CMD: "{{{{ secrets.s_cmd }}}}"}}
      - id: call
        type: http_request
        inputs: {{resource: api, path: /echo, headers: {{X-Secret: "{{{{ secrets.s_file }}}}"}}, json: {{dot: "{{{{ secrets.s_dotenv }}}}"}}}}
  - id: boom
    steps:
      - id: fail
        type: external.process
        inputs:
          command: [sh, -c, 'echo "failing with $S and $T" >&2; exit 3']
          env: {{S: "{{{{ secrets.s_dotenv }}}}", T: "{{{{ secrets.s_cmd }}}}"}}
  - id: boom_http
    steps:
      - id: fail
        type: http_request
        inputs: {{resource: api, path: /fail, headers: {{X-Secret: "{{{{ secrets.s_env }}}}"}}}}
"""


def test_no_secret_form_reaches_any_output(af, tmp_path: Path, echo_server: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = echo_server
    (tmp_path / "secret.txt").write_text(SECRETS["file"] + "\n", encoding="utf-8")
    (tmp_path / "secrets.env").write_text(f"DOT_SECRET='{SECRETS['dotenv']}'\n", encoding="utf-8")
    cmd_file = tmp_path / "cmd.b64"
    cmd_file.write_text(base64.b64encode(SECRETS["command"].encode()).decode() + "\n", encoding="utf-8")
    flow = tmp_path / "canary.yaml"
    flow.write_text(FLOW.format(url=url, cmd_file=cmd_file), encoding="utf-8")
    events = tmp_path / "events.jsonl"
    env = {"CANARY_ENV": SECRETS["env"], "CANARY_TOKEN_B64": base64.b64encode(SECRETS["decoded"].encode()).decode()}

    res = af("run", flow, "-vv", "--log-format", "json", "--events-log", events, "--json", env=env)
    assert res.exit_code == 1, res.stderr  # the two boom jobs fail on purpose
    doc = json.loads(res.stdout)
    run_id, store = doc["run_id"], Path(doc["store"])
    assert doc["jobs"] == {"use": "SUCCESS", "boom": "FAILED", "boom_http": "FAILED"}

    # the secrets really were used: the server saw the decoded token and the header/body values
    ok = [s for s in seen if s["body"]][0]
    assert ok["auth"] == f"Bearer {SECRETS['decoded']}"
    assert ok["x_secret"] == SECRETS["file"] and json.loads(ok["body"]) == {"dot": SECRETS["dotenv"]}
    assert seen[-1]["x_secret"] == SECRETS["env"]

    shown = af("runs", "show", run_id, "--json", "--history", "--state", store, env=env)
    assert shown.exit_code == 0, shown.stderr
    show_doc = json.loads(shown.stdout)
    text_show = af("runs", "show", run_id, "--history", "--state", store, env=env)
    listed = af("runs", "list", "--json", "--state", store, env=env)
    assert text_show.exit_code == 0 and listed.exit_code == 0

    # ... and where they would have shown up, they are masked
    steps = {(j["job_id"], s["step_id"]): s for j in show_doc["jobs"] for s in j["steps"]}
    assert steps[("use", "echo")]["outputs"]["message"] == "env=*** file=*** dot=*** cmd=***"
    assert steps[("use", "echo")]["masked_outputs"] == ["message"]
    assert "out:***:***" in steps[("use", "proc")]["outputs"]["stdout"]
    assert "***" in json.dumps(steps[("use", "call")]["outputs"]["json"])
    assert "failing with *** and ***" in steps[("boom", "fail")]["error"]
    assert "returned 500" in steps[("boom_http", "fail")]["error"] and "***" in steps[("boom_http", "fail")]["error"]
    assert show_doc["history"], "history is empty"
    assert events.read_text(encoding="utf-8").count("\n") > 5
    assert '"level": "debug"' in res.stderr and "debug: " in res.stderr  # -vv logging was on

    outputs = {
        "run stdout": res.stdout,
        "run stderr": res.stderr,
        "events log": events.read_bytes(),
        "runs show --json --history": shown.stdout + shown.stderr,
        "runs show --history": text_show.stdout + text_show.stderr,
        "runs list --json": listed.stdout + listed.stderr,
    }
    for suffix in ("", "-wal", "-shm", "-journal"):
        db = Path(str(store) + suffix)
        if db.exists():
            outputs[f"state database{suffix}"] = db.read_bytes()
    assert "state database" in outputs
    for where, data in outputs.items():
        assert_clean(where, data)


RESUME_FLOW = """
version: 1
flow:
  id: resume_canary
  workspace: {{root: work}}
  state: {{path: state/r.db}}
secrets:
  tok: {{env: RESUME_TOKEN}}
jobs:
  - id: j
    steps:
      - id: a
        type: debug
        inputs: {{message: "{{{{ secrets.tok }}}}", plain: visible}}
      - id: gate
        type: external.process
        inputs: {{command: [sh, -c, 'test -f "$M"'], env: {{M: "{marker}"}}}}
      - id: b
        type: debug
        inputs: {{message: "got {{{{ steps.a.message }}}} and {{{{ steps.a.plain }}}}"}}
"""


def test_resume_refuses_a_masked_output(af, tmp_path: Path) -> None:
    value = f"Resum3-{TOKEN}-tok"
    marker = tmp_path / "marker"
    flow = tmp_path / "resume.yaml"
    flow.write_text(RESUME_FLOW.format(marker=marker), encoding="utf-8")
    env = {"RESUME_TOKEN": value}

    first = af("run", flow, "--json", env=env)
    assert first.exit_code == 1, first.stderr
    doc = json.loads(first.stdout)
    run_id, store = doc["run_id"], doc["store"]

    marker.write_text("go")
    second = af("resume", run_id, "--state", store, "--json", env=env)
    assert second.exit_code == 1, second.stderr
    shown = json.loads(af("runs", "show", run_id, "--json", "--state", store, env=env).stdout)
    steps = {s["step_id"]: s for s in shown["jobs"][0]["steps"]}
    assert steps["a"]["status"] == "SUCCESS" and steps["a"]["attempt"] == 1  # restored, not re-run
    assert steps["a"]["outputs"] == {"message": "***", "plain": "visible"}
    assert steps["gate"]["status"] == "SUCCESS"
    err = steps["b"]["error"]
    assert steps["b"]["status"] == "FAILED"
    assert "steps.a.message" in err and "carried a secret" in err
    assert "{{ secrets.NAME }}" in err
    for text in (first.stdout, first.stderr, second.stdout, second.stderr, json.dumps(shown)):
        assert value not in text


def test_inherited_process_output_is_masked_line_by_line(af, write_flow) -> None:
    """`log: inherit` copies the child's output to stderr through the redactor (a partial last line too)."""
    flow = write_flow("""
        version: 1
        flow: {id: inherit_mask}
        secrets: {tok: {env: INHERIT_TOK}}
        jobs:
          - id: a
            steps:
              - id: p
                type: external.process
                inputs:
                  command: [sh, -c, 'echo "out:$T"; printf "err-tail:%s" "$T" >&2']
                  env: {T: "{{ secrets.tok }}"}
                  log: {stdout: inherit, stderr: inherit}
        """)
    res = af("run", str(flow), env={"INHERIT_TOK": "Inherit-Secret-4711"})
    assert res.exit_code == 0, res.stderr
    assert "Inherit-Secret-4711" not in res.stderr + res.stdout
    assert "out:***" in res.stderr and "err-tail:***" in res.stderr
    assert res.stdout == ""  # a child never writes to aetherflow's stdout


def test_basic_auth_header_built_from_a_secret_is_masked(af, write_flow, home, echo_server) -> None:
    """A server echoing request headers must not put `base64(user:password)` into the store."""
    url, _seen = echo_server
    flow = write_flow(f"""
        version: 1
        flow: {{id: basic_echo}}
        secrets: {{pw: {{env: BASIC_PW}}}}
        resources:
          api:
            kind: rest
            driver: http
            config: {{base_url: "{url}", username: etl, password: "{{{{ secrets.pw }}}}"}}
        jobs:
          - id: a
            steps:
              - {{id: call, type: http_request, inputs: {{resource: api, method: GET, path: /echo}}}}
        """)
    res = af("run", str(flow), "--json", env={"BASIC_PW": "BasicPassw0rd-99"})
    assert res.exit_code == 0, res.stderr
    header = base64.b64encode(b"etl:BasicPassw0rd-99").decode()
    shown = af("runs", "show", json.loads(res.stdout)["run_id"], "--json")
    db = (home / "state.db").read_bytes()
    wal = home / "state.db-wal"
    raw = db + (wal.read_bytes() if wal.exists() else b"")
    for blob in (shown.stdout, res.stderr, raw.decode("latin-1")):
        assert header not in blob and header.rstrip("=") not in blob
