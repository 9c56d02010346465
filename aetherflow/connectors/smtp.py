"""``mail:smtp`` (alias ``mail:smtplib``): send mail through an SMTP server (stdlib smtplib).

Config: ``host`` (required), ``port``, ``username``, ``password``, ``ssl`` (implicit TLS, the
default on port 465), ``starttls`` (upgrade with STARTTLS, the default on port 587), ``from``
(default sender; ``from_addr``, aetherflow-core's name, also), ``timeout`` (seconds, default
30), ``verify`` (TLS certificate and host name checks, default true; ``false`` or a CA bundle
path), ``local_hostname`` (EHLO name). Port default: 465 with ``ssl``, 587 with ``starttls``,
else 25. Options may set ``timeout`` and aetherflow-core's ``retry: {max_attempts: N}``: a
message whose server could not be reached is tried up to N times in all (never one the server
may have accepted).

``send(msg, recipients)`` sends a built message (``mail_send`` uses it); aetherflow-core's
``send_plaintext(to=, subject=, body=, ...)`` and ``send_html(to=, subject=, html=, text=, ...)``
build one and send it the same way.

A password is never sent over an unencrypted connection to a non-local host: with
``username`` and neither ``ssl`` nor ``starttls``, only ``localhost`` / ``127.0.0.1`` / ``::1``
are accepted. One connection per message (SMTP servers drop idle sessions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aetherflow.api import Connector, ConnectorError, register_connector
from aetherflow.connectors.base import check_keys, tls_context

if TYPE_CHECKING:
    import ssl
    from email.message import EmailMessage

CONFIG_KEYS = frozenset({"host", "port", "username", "password", "ssl", "starttls", "from", "from_addr", "timeout", "verify",
                         "local_hostname"})
OPTION_KEYS = frozenset({"timeout", "retry"})
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _flag(name: str, key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    low = str(value).strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off", ""):
        return False
    raise ConnectorError(f"resource '{name}': {key} must be true or false", code="connector.bad_config")


@register_connector("mail", "smtp", aliases=["smtplib"])
class SmtpConnector(Connector):
    """SMTP mail submission (smtplib), STARTTLS or implicit TLS, verified by default."""

    def __init__(self, name: str, config: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        super().__init__(name, config, options)
        check_keys(name, "config", config, CONFIG_KEYS)
        check_keys(name, "options", options, OPTION_KEYS)
        host = config.get("host")
        if not host:
            raise ConnectorError(f"resource '{name}': mail:smtp needs config.host", code="connector.bad_config")
        self.host = str(host)
        port = config.get("port")
        self.use_ssl = _flag(name, "ssl", config["ssl"]) if "ssl" in config else str(port) == "465"
        default_starttls = str(port) == "587" and not self.use_ssl
        self.starttls = _flag(name, "starttls", config["starttls"]) if "starttls" in config else default_starttls
        if self.use_ssl and self.starttls:
            raise ConnectorError(f"resource '{name}': use ssl (implicit TLS) or starttls, not both", code="connector.bad_config")
        try:
            self.port = int(port) if port not in (None, "") else (465 if self.use_ssl else 587 if self.starttls else 25)
            self.timeout = float(config.get("timeout", options.get("timeout", 30)))
        except (TypeError, ValueError) as exc:
            raise ConnectorError(f"resource '{name}': port and timeout must be numbers", code="connector.bad_config") from exc
        self.username = str(config["username"]) if config.get("username") else None
        self._password = str(config.get("password") or "")
        if config.get("from") and config.get("from_addr"):
            raise ConnectorError(f"resource '{name}': give config.from or config.from_addr, not both", code="connector.bad_config")
        sender = config.get("from") or config.get("from_addr")
        self.sender = str(sender) if sender else None
        self.attempts = _attempts(name, options.get("retry"))
        verify = config.get("verify", True)
        self.verify: bool | str = verify if isinstance(verify, bool) else (
            _flag(name, "verify", verify) if str(verify).strip().lower() in ("true", "false", "1", "0", "yes", "no", "on", "off")
            else str(verify)
        )
        self.local_hostname = str(config["local_hostname"]) if config.get("local_hostname") else None
        if self.username and not (self.use_ssl or self.starttls) and self.host not in LOCAL_HOSTS:
            raise ConnectorError(
                f"resource '{name}': refusing to send a password unencrypted to {self.host}",
                code="connector.bad_config",
                hint="set starttls: true (port 587) or ssl: true (port 465)",
            )

    def ssl_context(self) -> ssl.SSLContext:
        return tls_context(self.name, self.verify)

    def send(self, msg: EmailMessage, recipients: Sequence[str]) -> dict[str, Any]:
        """Send ``msg`` to every address in ``recipients`` (envelope). Returns the addresses the
        server refused (a partial failure); when all are refused this raises. A server that
        cannot be reached is tried again, up to ``retry.max_attempts`` attempts in all."""
        for attempt in range(1, self.attempts + 1):
            try:
                return self._send_once(msg, recipients)
            except ConnectorError as exc:
                if exc.code != "mail.connect" or attempt == self.attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def send_plaintext(self, *, to: Sequence[str] | str, subject: str, body: str, from_addr: str | None = None,
                       cc: Sequence[str] | str | None = None, bcc: Sequence[str] | str | None = None) -> dict[str, Any]:
        """aetherflow-core's call: a plain-text message. Returns the refused addresses."""
        return self._compose(to, subject, body, None, from_addr, cc, bcc)

    def send_html(self, *, to: Sequence[str] | str, subject: str, html: str, text: str | None = None,
                  from_addr: str | None = None, cc: Sequence[str] | str | None = None,
                  bcc: Sequence[str] | str | None = None) -> dict[str, Any]:
        """aetherflow-core's call: an HTML message with an optional plain-text part."""
        return self._compose(to, subject, text or "", html, from_addr, cc, bcc)

    def _compose(self, to: Sequence[str] | str, subject: str, text: str, html: str | None, from_addr: str | None,
                 cc: Sequence[str] | str | None, bcc: Sequence[str] | str | None) -> dict[str, Any]:
        from email.message import EmailMessage

        def listed(v: Sequence[str] | str | None) -> list[str]:
            return [] if not v else [v] if isinstance(v, str) else [str(x) for x in v]

        msg = EmailMessage()
        sender = from_addr or self.sender or (self.username if self.username and "@" in self.username else None)
        if sender:
            msg["From"] = sender
        msg["To"] = ", ".join(listed(to))
        if listed(cc):
            msg["Cc"] = ", ".join(listed(cc))
        msg["Subject"] = subject
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        return self.send(msg, [*listed(to), *listed(cc), *listed(bcc)])

    def _send_once(self, msg: EmailMessage, recipients: Sequence[str]) -> dict[str, Any]:
        import smtplib
        import ssl

        where = f"SMTP {self.host}:{self.port}"
        sender = str(msg.get("From") or self.sender or "")
        if not sender:
            raise ConnectorError(f"resource '{self.name}': no sender: set config.from or the step's from", code="mail.no_sender")
        try:
            client: smtplib.SMTP
            if self.use_ssl:
                client = smtplib.SMTP_SSL(self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout,
                                          context=self.ssl_context())
            else:
                client = smtplib.SMTP(self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout)
            try:
                client.ehlo_or_helo_if_needed()
                if self.starttls:
                    client.starttls(context=self.ssl_context())
                    client.ehlo()
                if self.username:
                    client.login(self.username, self._password)
                refused = client.send_message(msg, from_addr=sender, to_addrs=list(recipients))
            finally:
                try:
                    client.quit()
                except (smtplib.SMTPException, OSError):
                    client.close()
        except smtplib.SMTPAuthenticationError as exc:
            raise ConnectorError(f"resource '{self.name}': {where} rejected the login for {self.username}: {_smtp_text(exc)}",
                                 code="mail.auth") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            addrs = ", ".join(sorted(exc.recipients))
            raise ConnectorError(f"resource '{self.name}': {where} refused every recipient: {addrs}", code="mail.refused") from exc
        except smtplib.SMTPException as exc:
            raise ConnectorError(f"resource '{self.name}': {where}: {type(exc).__name__}: {_smtp_text(exc)}", code="mail.smtp") from exc
        except ssl.SSLError as exc:
            raise ConnectorError(f"resource '{self.name}': {where}: TLS failed: {exc}", code="mail.tls",
                                 hint="check the certificate, name a CA bundle with verify: /path/ca.pem") from exc
        except OSError as exc:
            raise ConnectorError(f"resource '{self.name}': cannot reach {where}: {exc.strerror or exc}", code="mail.connect") from exc
        return {k: _smtp_text(v) for k, v in refused.items()}

    def close(self) -> None:
        """Nothing to release: one connection per message."""


def _attempts(name: str, retry: Any) -> int:
    """``options.retry.max_attempts`` (aetherflow-core), default 1."""
    if retry is None:
        return 1
    value = retry.get("max_attempts", 1) if isinstance(retry, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or set(retry) - {"max_attempts"}:
        raise ConnectorError(f"resource '{name}': options.retry must be {{max_attempts: N}} with N ≥ 1",
                             code="connector.bad_config")
    return value


def _smtp_text(exc: Any) -> str:
    code = getattr(exc, "smtp_code", None)
    err = getattr(exc, "smtp_error", None)
    if isinstance(exc, tuple) and len(exc) == 2:
        code, err = exc
    if isinstance(err, bytes):
        err = err.decode("utf-8", "replace")
    if code is not None and err is not None:
        return f"{code} {err}"
    return str(exc)
