"""http_request against a real HTTP server on 127.0.0.1 started by the test."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aetherflow.connectors.http import HttpConnector
from aetherflow.errors import ConnectorError

TOKEN = "tok-" + "9f8e7d6c5b4a"
BIG = b"x" * (200 * 1024)
BLOB = bytes(range(256)) * 1200


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str
    seen: list[Seen] = field(default_factory=list)

    def last(self, path_prefix: str) -> Seen:
        return [s for s in self.seen if s.path.startswith(path_prefix)][-1]


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            path = self.path.split("?", 1)[0]
            if path.endswith("/items") and self.command == "GET":
                self._send(200, json.dumps({"items": [1, 2, 3]}).encode(), "application/json", {"ETag": '"v1"', "Set-Cookie": "s=1"})
            elif path.endswith("/items") and self.command == "POST":
                self._send(201, json.dumps({"created": json.loads(body)}).encode(), "application/json; charset=utf-8")
            elif path.endswith("/fail"):
                self._send(500, b"boom: database is down", "text/plain")
            elif path.endswith("/big"):
                self._send(200, BIG, "text/plain")
            elif path.endswith("/blob"):
                self._send(200, BLOB, "application/octet-stream")
            elif path.endswith("/redirect"):
                self._send(302, b"", "text/plain", {"Location": "/api/landing"})
            elif path.endswith("/landing"):
                self._send(200, b"landed", "text/plain")
            else:
                self._send(404, b"not here", "text/plain")

        def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    return Handler


def _start(tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    holder = Server(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(holder))
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    scheme = "https" if tls else "http"
    holder.url = f"{scheme}://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def server() -> Iterator[Server]:
    yield from _start()


FLOW = """
version: 1
flow:
  id: api
  workspace: {{root: work}}
secrets:
  api_token: {{env: API_TOKEN}}
resources:
  api:
    kind: rest
    driver: {driver}
    config:
      base_url: "{url}/api"
      headers: {{X-Team: ops}}
      auth: {{type: bearer, token: "{{{{ secrets.api_token }}}}"}}
jobs:
  - id: calls
    steps:
{steps}
"""


def test_get_post_save_and_truncate(write_flow, run_flow, server: Server) -> None:
    steps = f"""
      - id: get
        type: http_request
        inputs: {{resource: api, path: /items, params: {{q: "a b", tag: [x, y]}}}}
      - id: post
        type: http_request
        inputs: {{resource: api, method: post, path: items, json: {{name: widget, n: 2}}, expected_status: 201,
                  headers: {{X-Api-Key: "{{{{ secrets.api_token }}}}"}}}}
      - id: big
        type: http_request
        inputs: {{resource: api, path: big}}
      - id: save
        type: http_request
        inputs: {{resource: api, path: blob, save_to: downloads/blob.bin}}
      - id: plain
        type: http_request
        inputs: {{url: "{server.url}/other/items", timeout_seconds: 5}}
      - id: redirect
        type: http_request
        inputs: {{resource: api, path: redirect}}
"""
    flow = write_flow(FLOW.format(driver="http", url=server.url, steps=steps))
    run = run_flow(flow, env={"API_TOKEN": TOKEN})
    assert run.result.exit_code == 0, run.result.stderr

    get = run.step("calls", "get")["outputs"]
    assert get["status"] == 200 and get["ok"] is True and get["json"] == {"items": [1, 2, 3]}
    assert get["truncated"] is False and "text" not in get
    assert get["headers"] == {"content-type": "application/json", "content-length": "20", "etag": '"v1"'}
    assert get["url"] == f"{server.url}/api/items"  # no query string in outputs
    seen = server.last("/api/items")
    first = [s for s in server.seen if s.method == "GET" and s.path.startswith("/api/items")][0]
    assert first.path == "/api/items?q=a+b&tag=x&tag=y"
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert first.headers["x-team"] == "ops" and first.headers["user-agent"] == "aetherflow"

    post = run.step("calls", "post")["outputs"]
    assert post["status"] == 201 and post["json"] == {"created": {"name": "widget", "n": 2}}
    seen = [s for s in server.seen if s.method == "POST"][0]
    assert json.loads(seen.body) == {"name": "widget", "n": 2}
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-api-key"] == TOKEN and seen.headers["authorization"] == f"Bearer {TOKEN}"

    big = run.step("calls", "big")["outputs"]
    assert big["truncated"] is True and len(big["text"]) == 64 * 1024 and big["text"] == "x" * 64 * 1024

    save = run.step("calls", "save")["outputs"]
    path = Path(save["path"])
    assert path.read_bytes() == BLOB and path.parent.name == "downloads"
    assert save["sha256"] == hashlib.sha256(BLOB).hexdigest() and save["bytes"] == len(BLOB)
    assert "text" not in save and "json" not in save

    plain = [s for s in server.seen if s.path.startswith("/other/items")][0]
    assert "authorization" not in plain.headers  # a plain url carries no resource credentials
    assert run.step("calls", "plain")["outputs"]["json"] == {"items": [1, 2, 3]}

    assert run.step("calls", "redirect")["outputs"]["text"] == "landed"
    landing = server.last("/api/landing")
    assert "authorization" not in landing.headers  # credentials are not re-sent after a redirect

    # the token reached the server but never the store or the output
    for text in (run.result.stdout, run.result.stderr, json.dumps(run.shown)):
        assert TOKEN not in text


def test_unexpected_status_fails_with_body_start(write_flow, run_flow, server: Server) -> None:
    steps = """
      - id: accepted_500
        type: http_request
        inputs: {resource: api, path: fail, expected_status: [500, 503]}
      - id: fail
        type: http_request
        inputs: {resource: api, path: fail, save_to: never.txt}
"""
    flow = write_flow(FLOW.format(driver="httpx", url=server.url, steps=steps))  # reference driver name
    run = run_flow(flow, env={"API_TOKEN": TOKEN})
    assert run.result.exit_code == 1
    ok = run.step("calls", "accepted_500")["outputs"]
    assert ok["status"] == 500 and ok["text"] == "boom: database is down"
    err = run.step("calls", "fail")["error"]
    assert f"GET {server.url}/api/fail returned 500" in err and "(expected 2xx)" in err
    assert "boom: database is down" in err
    assert not [p for p in (flow.parent / "work").rglob("never.txt")]


def test_transport_errors_and_validation(cli, write_flow, run_flow, tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    steps = f"""
      - id: refused
        type: http_request
        inputs: {{url: "http://127.0.0.1:{port}/x?token=abc"}}
"""
    run = run_flow(write_flow(FLOW.format(driver="http", url="http://127.0.0.1:1", steps=steps)), env={"API_TOKEN": TOKEN})
    assert run.result.exit_code == 1
    err = run.step("calls", "refused")["error"]
    assert f"GET http://127.0.0.1:{port}/x failed" in err and "token=abc" not in err

    bad = """
      - id: both
        type: http_request
        inputs: {resource: api, url: "http://x", json: {}, body: "", expected_status: 99}
"""
    res = cli("validate", str(write_flow(FLOW.format(driver="http", url="http://h", steps=bad), name="bad.yaml")))
    assert res.exit_code == 2
    assert "expected exactly one of the keys 'resource' or 'url'" in res.stderr
    assert "inputs.expected_status" in res.stderr and "should not be valid under {'required': ['json', 'body']}" in res.stderr

    with pytest.raises(ConnectorError, match="path must be relative to base_url"):
        HttpConnector("api", {"base_url": "http://h/api"}, {}).url_for("http://elsewhere/x")
    with pytest.raises(ConnectorError, match="only http:// and https://"):
        HttpConnector("api", {}, {}).url_for("file:///etc/passwd")
    with pytest.raises(ConnectorError, match="auth must be"):
        HttpConnector("api", {"auth": {"type": "digest"}}, {})


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    for srv in _start(ctx):
        yield srv, cert


def test_tls_is_verified_by_default(write_flow, run_flow, tls_server: tuple[Server, Path]) -> None:
    server, cert = tls_server
    steps = """
      - id: get
        type: http_request
        inputs: {resource: api, path: items}
"""
    text = FLOW.format(driver="http", url=server.url, steps=steps)
    run = run_flow(write_flow(text), env={"API_TOKEN": TOKEN})
    assert run.result.exit_code == 1
    err = run.step("calls", "get")["error"]
    assert "CERTIFICATE_VERIFY_FAILED" in err or "certificate verify failed" in err
    assert "verify:" in err  # the hint says how to trust the certificate

    for verify in ("false", f'"{cert}"'):
        ok = text.replace("headers: {X-Team: ops}", f"headers: {{X-Team: ops}}\n      verify: {verify}")
        run = run_flow(write_flow(ok, name=f"ok{len(verify)}.yaml"), env={"API_TOKEN": TOKEN})
        assert run.result.exit_code == 0, run.result.stderr
        assert run.step("calls", "get")["outputs"]["json"] == {"items": [1, 2, 3]}


def test_url_userinfo_is_basic_auth(cli, write_flow, run_flow, server: Server) -> None:
    """user:password@ in a URL (as httpx accepts it in aetherflow-core flows) becomes basic auth,
    percent-escapes decoded; the password shows in no error, output or log."""
    import socket

    password = "pw-" + "9c1e:p@ss/x"  # ':', '@' and '/' must be percent-encoded in a URL
    enc = urllib.parse.quote(password, safe="")
    hostport = server.url.split("://", 1)[1]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()
    text = f"""
version: 1
flow:
  id: userinfo
  workspace: {{root: work}}
resources:
  api:
    kind: rest
    driver: httpx
    config: {{base_url: "http://robot:{enc}@{hostport}/api"}}
jobs:
  - id: calls
    steps:
      - id: plain_url
        type: http_request
        inputs: {{url: "http://alice:{enc}@{hostport}/other/items"}}
      - id: via_resource
        type: http_request
        inputs: {{resource: api, path: items}}
  - id: bad_status
    steps:
      - id: s
        type: http_request
        inputs: {{url: "http://alice:{enc}@{hostport}/api/fail"}}
  - id: refused
    steps:
      - id: s
        type: http_request
        inputs: {{url: "http://alice:{enc}@127.0.0.1:{closed}/x"}}
"""
    flow = write_flow(text)
    res = cli("validate", str(flow))
    assert res.exit_code == 0, res.stderr
    run = run_flow(flow)
    assert run.result.exit_code == 1  # bad_status and refused fail
    basic = {u: "Basic " + base64.b64encode(f"{u}:{password}".encode()).decode() for u in ("alice", "robot")}
    assert server.last("/other/items").headers["authorization"] == basic["alice"]
    assert server.last("/api/items").headers["authorization"] == basic["robot"]
    assert server.last("/api/fail").headers["authorization"] == basic["alice"]
    plain = run.step("calls", "plain_url")["outputs"]
    assert plain["json"] == {"items": [1, 2, 3]} and plain["url"] == f"{server.url}/other/items"
    assert run.step("calls", "via_resource")["outputs"]["url"] == f"{server.url}/api/items"
    status_err = run.step("bad_status", "s")["error"]
    assert f"GET {server.url}/api/fail returned 500" in status_err
    assert f"GET http://127.0.0.1:{closed}/x failed" in run.step("refused", "s")["error"]
    for shown in (status_err, run.step("refused", "s")["error"], run.result.stdout, run.result.stderr,
                  json.dumps(run.shown)):
        assert password not in shown and enc not in shown and "alice:" not in shown


CORE_HTTP_PLUGIN = '''
from aetherflow.core.api import Step, register_step


@register_step("core_http")
class CoreHttp(Step):
    """aetherflow-core style: get/post/put/delete/request/client on the rest connector."""

    def run(self):
        api = self.ctx.connectors.rest("api")
        got = api.get("/items", params={"page": 2})
        got.raise_for_status()
        created = api.post("/items", json={"name": "n1"})
        form = api.request("POST", "/form", data={"a": "1"}, headers={"X-Req": "yes"})
        with api.client() as client:
            missing = client.put("/nowhere", content=b"raw")
        gone = api.delete("/nowhere")
        try:
            gone.raise_for_status()
            raised = False
        except Exception as exc:
            raised = type(exc).__name__
        return {"get": [got.status_code, got.json(), got.is_success], "post": [created.status_code, created.json()],
                "form": form.status_code, "put": [missing.status_code, missing.text], "delete": gone.status_code,
                "raised": raised}
'''


def test_core_connector_calls_and_reference_keys(af, write_flow, server: Server, tmp_path: Path) -> None:
    """The rest connector answers aetherflow-core's calls and takes its keys bearer_token (config),
    verify_ssl and timeouts (options)."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "core_http.py").write_text(CORE_HTTP_PLUGIN, encoding="utf-8")
    f = write_flow(f"""
        version: 1
        flow: {{id: core_http, workspace: {{root: work}}}}
        resources:
          api:
            kind: rest
            driver: httpx
            config: {{base_url: "{server.url}/api", bearer_token: "{TOKEN}"}}
            options: {{verify_ssl: true, timeouts: {{total: 10}}}}
        jobs:
          - id: calls
            steps:
              - {{id: all, type: core_http}}
        """)
    res = af("run", f, "--plugin-path", plugins, "--json")
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    shown = json.loads(af("runs", "show", run_id, "--json").stdout)
    assert shown["jobs"][0]["steps"][0]["outputs"] == {
        "get": [200, {"items": [1, 2, 3]}, True], "post": [201, {"created": {"name": "n1"}}], "form": 404,
        "put": [404, "not here"], "delete": 404, "raised": "ConnectorError",
    }
    assert server.last("/api/items?page=2").headers["authorization"] == f"Bearer {TOKEN}"
    form = [s for s in server.seen if s.method == "POST" and s.headers.get("x-req") == "yes"][-1]
    assert form.body == b"a=1" and form.headers["content-type"] == "application/x-www-form-urlencoded"
    assert [s for s in server.seen if s.method == "PUT"][-1].body == b"raw"


def test_reference_option_values_are_checked() -> None:
    with pytest.raises(ConnectorError, match=r"options.timeouts must be \{total: SECONDS\}"):
        HttpConnector("api", {"base_url": "http://127.0.0.1:9"}, {"timeouts": {"read": 3}})
    conn = HttpConnector("api", {"base_url": "http://127.0.0.1:9"}, {"timeouts": {"total": 7}, "verify_ssl": False})
    assert conn.timeout == 7 and conn.verify is False
