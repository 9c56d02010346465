"""Notifications (SPEC section 13): tell someone when a run needs attention, or when it is done.

A ``Notice`` is what happened (``failed``, ``crashed``, ``interrupted``, ``timed_out``,
``lock_busy``, ``invalid``, ``waiting``, ``succeeded``) to which run of which flow; its JSON
(:meth:`Notice.as_dict`, ``schema_version`` 1) names the flow, the run, its status, the failed
job and step with the error, the host, and the command that resumes the run. A ``Dispatcher``
sends a notice to every notifier (``model.NotifySpec``) that wants it:

- ``command``: argv run without a shell, the JSON on its stdin, ``timeout_seconds`` to finish;
  it failed when it exits non-zero (its last stderr lines are in the report). Not retried.
- ``webhook``: an HTTP POST of the JSON (``Content-Type: application/json``); a 2xx answer is
  success; no answer within ``timeout_seconds``, a connection error, a 429 or a 5xx is tried
  again ``retries`` times, 1 s, 2 s, 4 s... apart; any other answer fails at once.
- ``email``: a mail through the ``mail:smtp`` connector, with the connector's settings (or a
  flow's ``resource``): a short text and the JSON; tried again like a webhook.

Strings of a notifier may hold templates (``{{ env.SMTP_PASSWORD }}``; a flow's notifiers also
``params`` and ``secrets``), rendered when the notice is sent. Every text that leaves (the JSON,
the mail, the reports) is masked with the run's secrets. Sending never raises: each notifier's
result is a ``Delivery`` (the caller reports failures on stderr and in the run's history), and
a failure never changes a run's exit code.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aetherflow.errors import AetherflowError
from aetherflow.model import NotifySpec, thaw

__all__ = ["Delivery", "Dispatcher", "Notice", "event_for_status", "target_text"]

#: the notice for a run that ended with each status (CANCELLED: someone chose it, nothing to say)
_STATUS_EVENTS = {"SUCCESS": "succeeded", "FAILED": "failed", "INTERRUPTED": "interrupted", "TIMED_OUT": "timed_out",
                  "WAITING": "waiting", "CRASHED": "crashed"}
#: at most this much of a command notifier's output is kept for its report
_COMMAND_CAPTURE_KB = 16


def event_for_status(status: str) -> str | None:
    """The notice a run ending with ``status`` sends (``None``: none)."""
    return _STATUS_EVENTS.get(str(status))


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    event: str
    host: str
    flow_id: str | None = None
    flow_file: str | None = None
    run_id: str | None = None
    status: str | None = None
    pid: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    failed_steps: tuple[tuple[str, str, str], ...] = ()  # job, step, error
    error: str | None = None
    waits: tuple[Mapping[str, Any], ...] = ()
    message: str | None = None
    resume_command: str | None = None
    store: str | None = None
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        from datetime import UTC, datetime

        def iso(ts: float | None) -> str | None:
            return None if ts is None else datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")

        failed_job, failed_step, error = (self.failed_steps[-1] if self.failed_steps else (None, None, self.error))
        duration = None
        if self.started_at is not None:
            duration = round((self.finished_at or self.at) - self.started_at, 3)
        return {
            "schema_version": 1,
            "event": self.event,
            "flow_id": self.flow_id,
            "flow_file": self.flow_file,
            "run_id": self.run_id,
            "status": self.status,
            "host": self.host,
            "pid": self.pid,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_seconds": duration,
            "failed_job": failed_job,
            "failed_step": failed_step,
            "error": error if error is not None else self.error,
            "failed_steps": [{"job": j, "step": s, "error": e} for j, s, e in self.failed_steps],
            "waits": [thaw(w) for w in self.waits],
            "message": self.message,
            "resume_command": self.resume_command,
            "store": self.store,
            "sent_at": iso(self.at),
        }

    def subject(self) -> str:
        what = f"run {self.run_id} {self.status}" if self.run_id else self.event.replace("_", " ")
        return f"{self.flow_id or self.flow_file or 'aetherflow'}: {what}"

    def text(self) -> str:
        """The mail body's readable part."""
        d = self.as_dict()
        lines = [f"{self.event}: flow {d['flow_id'] or d['flow_file']} on {self.host}"]
        if self.run_id:
            lines.append(f"run {self.run_id} is {self.status}")
        for j, s, e in self.failed_steps:
            lines.append(f"failed: {j}.{s}: {e}")
        if not self.failed_steps and self.error:
            lines.append(f"error: {self.error}")
        if self.message:
            lines.append(self.message)
        if self.resume_command:
            lines.append(f"resume with: {self.resume_command}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """What became of one notifier: ``target`` says which (masked, without a URL's path)."""

    target: str
    ok: bool
    tries: int = 1
    error: str | None = None


def target_text(spec: NotifySpec) -> str:
    """A notifier for messages and ``config show``: a webhook shows only its scheme and host
    (the path of a chat webhook is its secret), an email its recipients."""
    if spec.command is not None:
        return "command " + (spec.command[0] if spec.command else "")
    if spec.webhook is not None:
        import urllib.parse

        parts = urllib.parse.urlsplit(spec.webhook)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"webhook {parts.scheme}://{host}{port}/***" if "{{" not in spec.webhook else "webhook (templated URL)"
    to = ", ".join(str(t) for t in (spec.email or {}).get("to", ()))
    return f"email to {to}"


class Dispatcher:
    """Sends notices to the config file's notifiers (``targets``, filtered by their ``flows``)
    and to a flow's own. ``env`` renders ``{{ env.X }}``; ``sleep`` waits between tries."""

    def __init__(self, targets: Sequence[NotifySpec], env: Mapping[str, str], *, log: logging.Logger | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.targets = tuple(targets)
        self.env = env
        self.log = log or logging.getLogger("aetherflow")
        self.sleep = sleep

    def wanted(self, event: str, flow_id: str | None, flow_targets: Sequence[NotifySpec] = ()) -> list[NotifySpec]:
        mine = [t for t in self.targets if t.wants(event, flow_id)]
        return mine + [t for t in flow_targets if event in t.on]

    def send(self, notice: Notice, *, flow_targets: Sequence[NotifySpec] = (), scope: Mapping[str, Any] | None = None,
             resources: Mapping[str, Any] | None = None, mask: Callable[[str], str] = lambda s: s) -> list[Delivery]:
        """Send ``notice`` to every notifier that wants it; never raises. ``scope`` renders a
        flow's notifiers (env, params, secrets), ``resources`` resolves their email
        ``resource``, ``mask`` hides the run's secrets in everything sent and reported."""
        out: list[Delivery] = []
        config_scope = {"env": self.env}
        for spec in self.wanted(notice.event, notice.flow_id, flow_targets):
            own = spec in flow_targets
            try:
                out.append(self._deliver(spec, notice, scope if own and scope is not None else config_scope,
                                         resources if own else None, mask))
            except Exception as exc:  # noqa: BLE001 - a notifier never breaks the command
                out.append(Delivery(target=target_text(spec), ok=False, error=mask(f"{type(exc).__name__}: {exc}")))
        for d in out:
            if not d.ok:
                self.log.error("notification %s (%s) failed: %s", notice.event, d.target, d.error)
        return out

    def _deliver(self, spec: NotifySpec, notice: Notice, scope: Mapping[str, Any], resources: Mapping[str, Any] | None,
                 mask: Callable[[str], str]) -> Delivery:
        from aetherflow import template

        target = target_text(spec)
        try:
            rendered = template.render(thaw({"command": spec.command, "webhook": spec.webhook, "email": spec.email}), scope)
        except AetherflowError as exc:
            return Delivery(target=target, ok=False, tries=0, error=mask(f"cannot render the notifier: {exc.message}"))
        body = mask(json.dumps(notice.as_dict(), ensure_ascii=False, sort_keys=True))
        if spec.command is not None:
            return self._command(target, [str(a) for a in rendered["command"]], body, spec.timeout_seconds, scope, mask)
        tries = 1 + max(0, spec.retries)
        last = ""
        attempt = 0
        for attempt in range(1, tries + 1):
            if attempt > 1:
                self.sleep(min(2.0 ** (attempt - 2), 60.0))
            try:
                if spec.webhook is not None:
                    self._webhook(str(rendered["webhook"]), body, spec.timeout_seconds)
                else:
                    self._email(dict(rendered["email"]), notice, body, spec.timeout_seconds, resources, mask)
            except _Failed as exc:
                last = mask(str(exc))
                if not exc.retry:
                    break
            else:
                return Delivery(target=target, ok=True, tries=attempt)
        return Delivery(target=target, ok=False, tries=attempt, error=last)

    # one try of each kind: returns on success, else raises _Failed ------------------------------
    def _command(self, target: str, argv: list[str], body: str, timeout: float, scope: Mapping[str, Any],
                 mask: Callable[[str], str]) -> Delivery:
        import tempfile

        from aetherflow.process import run_process

        env = dict(scope.get("env") or self.env)
        with tempfile.TemporaryFile() as fh:
            fh.write(body.encode("utf-8") + b"\n")
            fh.flush()
            fh.seek(0)
            try:
                res = run_process(argv, cwd=None, env=env, timeout=timeout, stdout_mode="capture", stderr_mode="capture",
                                  max_capture_kb=_COMMAND_CAPTURE_KB, stdin=fh.fileno())
            except OSError as exc:
                return Delivery(target=target, ok=False, error=mask(f"cannot start {argv[0]!r}: {exc.strerror or exc}"))
        if res.timed_out:
            return Delivery(target=target, ok=False, error=f"no exit within {timeout:g} s; its process group was killed")
        if res.returncode != 0:
            tail = "\n".join((res.stderr or "").strip().splitlines()[-5:])
            return Delivery(target=target, ok=False, error=mask(f"exited {res.returncode}" + (f": {tail}" if tail else "")))
        return Delivery(target=target, ok=True)

    def _webhook(self, url: str, body: str, timeout: float) -> None:
        import socket
        import urllib.error
        import urllib.request

        from aetherflow import __version__

        if not url.startswith(("https://", "http://")):
            raise _Failed(f"not an http(s) URL: {url.split(':', 1)[0]}:...", retry=False)
        req = urllib.request.Request(url, data=body.encode("utf-8"), method="POST", headers={
            "Content-Type": "application/json", "User-Agent": f"aetherflow/{__version__}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) only, checked above
                resp.read(65536)
                return None
        except urllib.error.HTTPError as exc:
            retry = exc.code == 429 or exc.code >= 500
            raise _Failed(f"HTTP {exc.code} {exc.reason}", retry=retry) from exc
        except TimeoutError as exc:
            raise _Failed(f"no answer within {timeout:g} s", retry=True) from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Failed(f"no answer within {timeout:g} s", retry=True) from exc
            raise _Failed(f"cannot reach the server: {getattr(reason, 'strerror', None) or reason}", retry=True) from exc
        except OSError as exc:
            raise _Failed(f"connection failed: {exc.strerror or exc}", retry=True) from exc

    def _email(self, settings: dict[str, Any], notice: Notice, body: str, timeout: float,
               resources: Mapping[str, Any] | None, mask: Callable[[str], str]) -> None:
        from email.message import EmailMessage

        from aetherflow.connectors.smtp import SmtpConnector

        to = [str(a) for a in settings.pop("to")]
        prefix = str(settings.pop("subject", "aetherflow"))
        resource = settings.pop("resource", None)
        options: Mapping[str, Any] = {}
        name = "notify"
        if resource is not None:
            found = (resources or {}).get(resource)
            if found is None:
                raise _Failed(f"no mail resource '{resource}'", retry=False)
            settings = {**dict(found.config), **settings}
            options, name = found.options, str(resource)
        settings.setdefault("timeout", timeout)
        try:
            conn = SmtpConnector(name, settings, options)
        except AetherflowError as exc:
            raise _Failed(exc.message, retry=False) from exc
        msg = EmailMessage()
        msg["Subject"] = mask(f"{prefix}: {notice.subject()}")
        msg["To"] = ", ".join(to)
        if conn.sender:
            msg["From"] = conn.sender
        msg.set_content(mask(notice.text()) + "\n\n" + body + "\n")
        try:
            conn.send(msg, to)
        except AetherflowError as exc:
            raise _Failed(exc.message, retry=exc.code in ("mail.connect", "mail.smtp")) from exc


class _Failed(Exception):
    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry
