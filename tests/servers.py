"""Servers on 127.0.0.1 that tests start and stop: SMTP (just enough of it: EHLO/HELO, AUTH
PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT), an HTTP receiver that records every request, and a
server that accepts connections and never answers (for timeouts). All stdlib (socketserver)."""

from __future__ import annotations

import base64
import http.server
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Received:
    mail_from: str
    rcpt: list[str]
    data: bytes
    auth: str | None


@dataclass
class Mailbox:
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Received] = field(default_factory=list)


def _smtp_handler(box: Mailbox, password: str) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def reply(self, text: str) -> None:
            self.wfile.write(text.encode() + b"\r\n")
            self.wfile.flush()

        def handle(self) -> None:
            self.reply("220 test.local ESMTP ready")
            mail_from, rcpt, auth = "", [], None
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                cmd = line.decode("utf-8", "replace").rstrip("\r\n")
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    self.reply("250-test.local\r\n250-AUTH PLAIN\r\n250 8BITMIME")
                elif verb == "HELO":
                    self.reply("250 test.local")
                elif verb == "AUTH":
                    parts = cmd.split()
                    raw = base64.b64decode(parts[2]).decode() if len(parts) > 2 else ""
                    _, user, pw = raw.split("\x00")
                    if pw == password:
                        auth = user
                        self.reply("235 2.7.0 Authentication successful")
                    else:
                        self.reply("535 5.7.8 Authentication credentials invalid")
                elif verb == "MAIL":
                    mail_from = cmd.split(":", 1)[1].strip().split()[0].strip("<>")
                    rcpt = []
                    self.reply("250 OK")
                elif verb == "RCPT":
                    addr = cmd.split(":", 1)[1].strip().strip("<>")
                    if addr.startswith("reject"):
                        self.reply("550 5.1.1 no such user")
                    else:
                        rcpt.append(addr)
                        self.reply("250 OK")
                elif verb == "DATA":
                    self.reply("354 End data with <CR><LF>.<CR><LF>")
                    lines = []
                    while True:
                        d = self.rfile.readline()
                        if d in (b".\r\n", b""):
                            break
                        lines.append(d[1:] if d.startswith(b"..") else d)
                    box.messages.append(Received(mail_from, list(rcpt), b"".join(lines), auth))
                    self.reply("250 OK queued")
                elif verb in ("RSET", "NOOP"):
                    self.reply("250 OK")
                elif verb == "QUIT":
                    self.reply("221 Bye")
                    return
                else:
                    self.reply("502 Command not implemented")

    return Handler


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def _serving(srv: socketserver.BaseServer) -> Iterator[None]:
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(timeout=10)


@contextmanager
def smtp_server(password: str) -> Iterator[Mailbox]:
    """An SMTP server; ``AUTH PLAIN`` accepts only ``password``; recipients starting with
    ``reject`` are refused."""
    box = Mailbox()
    srv = _Server(("127.0.0.1", 0), _smtp_handler(box, password))
    box.port = srv.server_address[1]
    with _serving(srv):
        yield box


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Inbox:
    """What an :func:`http_receiver` got; ``statuses`` are answered in turn (then 200)."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


@contextmanager
def http_receiver(statuses: list[int] | None = None) -> Iterator[Inbox]:
    box = Inbox(statuses=list(statuses or []))
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with lock:
                box.requests.append(Request("POST", self.path, dict(self.headers.items()), body))
                status = box.statuses.pop(0) if box.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    box.url = f"http://127.0.0.1:{srv.server_address[1]}/hooks/T000/secret-path"
    with _serving(srv):
        yield box


@contextmanager
def silent_server() -> Iterator[str]:
    """A listening socket that accepts and never answers: an ``http://`` URL to it times out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            accepted.append(conn)

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    finally:
        stop.set()
        t.join(timeout=10)
        for c in accepted:
            c.close()
        sock.close()
