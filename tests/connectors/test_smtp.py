"""mail_send against a tiny real SMTP server on 127.0.0.1 started by the test (``servers.py``:
socketserver; it speaks just enough SMTP: EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT)."""

from __future__ import annotations

import email
import email.policy
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import Mailbox, smtp_server

from aetherflow.connectors.smtp import SmtpConnector
from aetherflow.errors import ConnectorError

PASSWORD = "m4il-" + "pw-4f3e2d"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server(PASSWORD) as box:
        yield box


def flow(box: Mailbox, steps: str) -> str:
    return f"""
version: 1
flow:
  id: mailer
  workspace: {{root: work}}
secrets:
  smtp_password: {{env: SMTP_PASSWORD}}
resources:
  mail:
    kind: mail
    driver: smtp
    config:
      host: 127.0.0.1
      port: {box.port}
      username: robot
      password: "{{{{ secrets.smtp_password }}}}"
      from: "Flows <robot@example.org>"
      timeout: 10
jobs:
  - id: report
    steps:
      - id: make
        type: external.process
        inputs:
          command: ["sh", "-c", "printf 'a,b\\n1,2\\n' > artifacts/report.csv"]
{steps}
"""


def test_mail_with_attachment_reaches_the_server(write_flow, run_flow, mailbox: Mailbox) -> None:
    steps = """
      - id: send
        type: mail_send
        inputs:
          resource: mail
          to: ["ops@example.org", "Dev Team <dev@example.org>"]
          cc: boss@example.org
          bcc: [audit@example.org, reject-me@example.org]
          subject: "Daily report {{ run_id }}"
          body: "Rows attached.\\nBye."
          html: "<p>Rows attached.</p>"
          attachments: [report.csv]
"""
    run = run_flow(write_flow(flow(mailbox, steps)), env={"SMTP_PASSWORD": PASSWORD})
    assert run.result.exit_code == 0, run.result.stderr
    assert len(mailbox.messages) == 1
    got = mailbox.messages[0]
    assert got.auth == "robot"
    assert got.mail_from == "robot@example.org"
    assert got.rcpt == ["ops@example.org", "dev@example.org", "boss@example.org", "audit@example.org"]
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    assert msg["From"] == "Flows <robot@example.org>"
    assert msg["To"] == "ops@example.org, Dev Team <dev@example.org>"
    assert msg["Cc"] == "boss@example.org" and msg["Bcc"] is None
    assert msg["Subject"] == f"Daily report {run.run_id}"
    key = f"{run.run_id}/report/send"
    assert msg["Message-ID"] == f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@example.org>"
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and body.get_content().replace("\r\n", "\n") == "Rows attached.\nBye.\n"
    html = msg.get_body(preferencelist=("html",))
    assert html is not None and "<p>Rows attached.</p>" in html.get_content()
    atts = list(msg.iter_attachments())
    assert [a.get_filename() for a in atts] == ["report.csv"]
    assert atts[0].get_content_type() == "text/csv" and atts[0].get_payload(decode=True) == b"a,b\n1,2\n"

    out = run.step("report", "send")["outputs"]
    assert out["message_id"] == msg["Message-ID"] and out["recipients"] == 4 and out["attachments"] == 1
    assert list(out["refused"]) == ["reject-me@example.org"]
    assert PASSWORD not in run.result.stderr + run.result.stdout


def test_login_failure_and_escaping_attachment(write_flow, run_flow, mailbox: Mailbox) -> None:
    steps = """
      - id: escape
        type: mail_send
        inputs: {resource: mail, to: ops@example.org, subject: x, attachments: [/etc/hostname]}
  - id: second
    steps:
      - id: send
        type: mail_send
        inputs: {resource: mail, to: ops@example.org, subject: x}
"""
    run = run_flow(write_flow(flow(mailbox, steps)), env={"SMTP_PASSWORD": "not-the-password"})
    assert run.result.exit_code == 1
    assert "attachment '/etc/hostname' is outside the flow workspace" in run.step("report", "escape")["error"]
    err = run.step("second", "send")["error"]
    assert "rejected the login for robot" in err and "535" in err
    assert "not-the-password" not in err
    assert mailbox.messages == []


def test_connector_refuses_plaintext_password_to_remote_host() -> None:
    with pytest.raises(ConnectorError, match="refusing to send a password unencrypted"):
        SmtpConnector("mail", {"host": "mail.example.org", "username": "u", "password": "p"}, {})
    c = SmtpConnector("mail", {"host": "mail.example.org", "port": 587, "username": "u", "password": "p"}, {})
    assert c.starttls and not c.use_ssl and c.port == 587
    c = SmtpConnector("mail", {"host": "mail.example.org", "ssl": True}, {})
    assert c.use_ssl and c.port == 465


def test_unreachable_server(tmp_path: Path) -> None:
    import socket
    from email.message import EmailMessage

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    with pytest.raises(ConnectorError, match=f"cannot reach SMTP 127.0.0.1:{port}"):
        SmtpConnector("mail", {"host": "127.0.0.1", "port": port, "timeout": 5}, {}).send(msg, ["b@example.org"])


def test_aetherflow_core_inputs(cli, write_flow, run_flow, mailbox: Mailbox) -> None:
    """aetherflow-core's mail_send: html is a flag (body is the HTML), text the plain part,
    from_addr the sender; its outputs sent/subject/html are there too."""
    steps = """
      - id: html_mail
        type: mail_send
        inputs:
          resource: mail
          to: ops@example.org
          subject: Report
          body: "<h1>Done</h1>"
          html: true
          text: "Done (plain)"
          from_addr: "Reports <reports@example.org>"
      - id: plain_mail
        type: mail_send
        inputs: {resource: mail, to: [ops@example.org], subject: Plain, body: "just text", html: false}
"""
    f = write_flow(flow(mailbox, steps))
    res = cli("validate", str(f))
    assert res.exit_code == 0, res.stderr
    run = run_flow(f, env={"SMTP_PASSWORD": PASSWORD})
    assert run.result.exit_code == 0, run.result.stderr
    assert len(mailbox.messages) == 2
    first, second = (email.message_from_bytes(m.data, policy=email.policy.default) for m in mailbox.messages)
    assert mailbox.messages[0].mail_from == "reports@example.org"
    assert first["From"] == "Reports <reports@example.org>"
    html = first.get_body(preferencelist=("html",))
    plain = first.get_body(preferencelist=("plain",))
    assert html is not None and "<h1>Done</h1>" in html.get_content()
    assert plain is not None and plain.get_content().strip() == "Done (plain)"
    assert second.get_body(preferencelist=("html",)) is None
    assert second.get_content().strip() == "just text" and second["From"] == "Flows <robot@example.org>"
    out = run.step("report", "html_mail")["outputs"]
    assert out["sent"] is True and out["html"] is True and out["subject"] == "Report" and out["to"] == ["ops@example.org"]
    assert run.step("report", "plain_mail")["outputs"]["html"] is False


CORE_MAIL_PLUGIN = '''
from aetherflow.core.api import Step, register_step


@register_step("core_mail")
class CoreMail(Step):
    """aetherflow-core style: the connector's send_plaintext / send_html."""

    def run(self):
        mail = self.ctx.connectors.mail("mail")
        mail.send_plaintext(to=["ops@example.org"], subject="plain", body="plain body", cc="cc@example.org",
                            bcc=["audit@example.org"])
        mail.send_html(to="ops@example.org", subject="html", html="<b>hi</b>", text="hi",
                       from_addr="Other <other@example.org>")
        return {"sent": 2}
'''

CORE_MAIL_CONNECTOR = '''
from aetherflow.core.api import ConnectorBase, ConnectorInit, register_connector

SENT = []


@register_connector(kind="mail", driver="core-outbox")
class Outbox(ConnectorBase):
    """A mail connector written for aetherflow-core: mail_send calls send_plaintext / send_html."""

    def __init__(self, init: ConnectorInit):
        super().__init__(init)

    def send_plaintext(self, *, to, subject, body, from_addr=None, cc=None, bcc=None):
        with open(self.config["outbox"], "a") as fh:
            fh.write(f"plain|{to}|{subject}|{body}|{from_addr}|{cc}|{bcc}\\n")

    def send_html(self, *, to, subject, html, text=None, from_addr=None, cc=None, bcc=None):
        with open(self.config["outbox"], "a") as fh:
            fh.write(f"html|{to}|{subject}|{html}|{text}|{from_addr}\\n")
'''


def test_core_connector_calls_and_reference_keys(af, write_flow, mailbox: Mailbox, tmp_path: Path) -> None:
    """The mail:smtp connector answers aetherflow-core's send_plaintext / send_html, and takes its
    config key from_addr and its option retry (the demo profile's mail_default)."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "core_mail.py").write_text(CORE_MAIL_PLUGIN, encoding="utf-8")
    f = write_flow(f"""
        version: 1
        flow: {{id: core_mail, workspace: {{root: work}}}}
        resources:
          mail:
            kind: mail
            driver: smtp
            config: {{host: 127.0.0.1, port: {mailbox.port}, from_addr: "Robot <robot@example.org>"}}
            options: {{timeout: 30, retry: {{max_attempts: 2}}}}
        jobs:
          - id: send
            steps:
              - {{id: both, type: core_mail}}
        """)
    res = af("run", f, "--plugin-path", plugins, "--json")
    assert res.exit_code == 0, res.stderr
    assert len(mailbox.messages) == 2
    plain, html = (email.message_from_bytes(m.data, policy=email.policy.default) for m in mailbox.messages)
    assert mailbox.messages[0].mail_from == "robot@example.org"
    assert mailbox.messages[0].rcpt == ["ops@example.org", "cc@example.org", "audit@example.org"]
    assert plain["Subject"] == "plain" and plain["Cc"] == "cc@example.org" and "Bcc" not in plain
    assert plain.get_content().strip() == "plain body"
    assert mailbox.messages[1].mail_from == "other@example.org" and html["To"] == "ops@example.org"
    part = html.get_body(preferencelist=("html",))
    assert part is not None and part.get_content().strip() == "<b>hi</b>"


def test_mail_send_uses_a_core_style_mail_connector(af, write_flow, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "outbox.py").write_text(CORE_MAIL_CONNECTOR, encoding="utf-8")
    outbox = tmp_path / "outbox.txt"
    f = write_flow(f"""
        version: 1
        flow: {{id: outbox, workspace: {{root: work}}}}
        resources:
          mail: {{kind: mail, driver: core-outbox, config: {{outbox: "{outbox}"}}}}
        jobs:
          - id: send
            steps:
              - {{id: plain, type: mail_send, inputs: {{resource: mail, to: [a@example.org], subject: S1, body: B1}}}}
              - id: html
                type: mail_send
                inputs: {{resource: mail, to: a@example.org, subject: S2, body: "<p>x</p>", html: true, text: x,
                          from_addr: me@example.org}}
        """)
    res = af("run", f, "--plugin-path", plugins, "--json")
    assert res.exit_code == 0, res.stderr
    assert outbox.read_text().splitlines() == [
        "plain|['a@example.org']|S1|B1|None|[]|[]",
        "html|['a@example.org']|S2|<p>x</p>|x|me@example.org",
    ]
