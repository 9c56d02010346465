"""Network built-ins: ``http_request`` (a ``rest`` resource or a plain URL) and ``mail_send``
(a ``mail`` resource). Transport failures fail the step; a status outside ``expected_status``
fails it too, with the status and the start of the body in the message (secrets masked by the
engine like every error). Outputs stay small: a JSON body up to 256 KiB is parsed into
``json``; otherwise ``text`` holds at most 64 KiB and ``truncated`` says whether it was cut.
``save_to`` streams the whole body to a file instead (written atomically, only when the status
is expected).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from collections.abc import Mapping, Sequence
from email.utils import formatdate, getaddresses
from typing import Any

from aetherflow.api import (
    STEP_SUCCESS,
    Connector,
    Step,
    StepContext,
    StepError,
    StepResult,
    atomic_open,
    register_step,
)
from aetherflow.steps._paths import workspace_path

JSON_MAX = 256 * 1024
TEXT_MAX = 64 * 1024
SNIPPET = 300
KEPT_HEADERS = ("content-type", "content-length", "content-encoding", "etag", "last-modified", "location",
                "retry-after", "x-request-id")
_STATUS = {"type": "integer", "minimum": 100, "maximum": 599}
_ADDRESSES = {"oneOf": [{"type": "string", "minLength": 1},
                        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}]}


def _expected(spec: Any) -> tuple[Any, str]:
    """(predicate, text) for ``expected_status``: an int, a list of ints, or default 2xx."""
    if spec is None:
        return (lambda s: 200 <= s < 300), "2xx"
    codes = [int(c) for c in (spec if isinstance(spec, (list, tuple)) else [spec])]
    return (lambda s: s in codes), " or ".join(str(c) for c in codes)


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat[:SNIPPET] + ("…" if len(flat) > SNIPPET else "")


def _http_connector(ctx: StepContext, inputs: Mapping[str, Any]) -> tuple[Any, bool]:
    """(connector, owned): the resource's connector, or one built for a plain ``url``."""
    if inputs.get("resource"):
        conn = ctx.connectors[str(inputs["resource"])]
        if not callable(getattr(conn, "request", None)):
            raise StepError(f"resource '{inputs['resource']}' is not an HTTP resource (kind rest)", code="http.not_http")
        return conn, False
    # a plain URL: the built-in rest:http connector, with no credentials and TLS verified
    from aetherflow.connectors.http import HttpConnector

    return HttpConnector("http_request", {"base_url": str(inputs["url"])}, {}), True


@register_step(
    "http_request",
    inputs_schema={
        "type": "object",
        "properties": {
            "resource": {"type": "string", "minLength": 1, "description": "A rest resource (base_url, headers, auth, TLS)."},
            "url": {"type": "string", "minLength": 1, "description": "An absolute http(s) URL, when no resource is used."},
            "method": {"type": "string", "pattern": "^[A-Za-z]+$", "default": "GET"},
            "path": {"type": "string", "description": "Appended to the resource's base_url (or to url)."},
            "params": {"type": "object", "description": "Query string parameters (a list value repeats the key)."},
            "headers": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
            "json": {"description": "Request body, sent as JSON."},
            "body": {"type": "string", "description": "Request body, sent as is (UTF-8)."},
            "expected_status": {"oneOf": [_STATUS, {"type": "array", "items": _STATUS, "minItems": 1}],
                                "description": "Status code(s) that mean success; default any 2xx."},
            "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
            "save_to": {"type": "string", "minLength": 1,
                        "description": "Write the body to this file (relative to the job's artifacts directory)."},
        },
        "oneOf": [{"required": ["resource"]}, {"required": ["url"]}],
        "not": {"required": ["json", "body"]},
        "additionalProperties": False,
    },
)
class HttpRequest(Step):
    """Send one HTTP request; outputs status, ok, url, headers (a safe subset), bytes and json
    or text (+ truncated), or path/sha256 with save_to."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        conn, owned = _http_connector(ctx, inputs)
        try:
            return self._send(ctx, conn, inputs)
        finally:
            if owned:
                conn.close()

    def _send(self, ctx: StepContext, conn: Any, inputs: Mapping[str, Any]) -> StepResult:
        method = str(inputs.get("method", "GET")).upper()
        ok, expected_text = _expected(inputs.get("expected_status"))
        timeout = inputs.get("timeout_seconds")
        remaining = ctx.remaining()
        if remaining is not None:  # the step's own timeout_seconds bounds the request too
            remaining = max(remaining, 0.1)
            timeout = min(float(timeout), remaining) if timeout is not None else remaining
        kwargs: dict[str, Any] = {
            "params": inputs.get("params"),
            "headers": inputs.get("headers"),
            "json_body": inputs.get("json"),
            "has_json": "json" in inputs,
            "body": inputs.get("body"),
            "timeout": float(timeout) if timeout is not None else None,
        }
        path = str(inputs.get("path") or "")
        if inputs.get("save_to"):
            target = workspace_path(ctx, str(inputs["save_to"]), what="save_to")
            with atomic_open(target, "wb") as fh:
                resp = conn.request(method, path, sink=fh, max_body=SNIPPET * 4, **kwargs)
                if not ok(resp.status):
                    raise self._unexpected(method, resp, expected_text)  # the temp file is discarded
            outputs = self._meta(resp)
            outputs.update({"path": str(target), "sha256": resp.sha256, "bytes": resp.size})
            return StepResult(STEP_SUCCESS, outputs)
        resp = conn.request(method, path, max_body=JSON_MAX, **kwargs)
        if not ok(resp.status):
            raise self._unexpected(method, resp, expected_text)
        outputs = self._meta(resp)
        outputs.update(self._body(resp))
        return StepResult(STEP_SUCCESS, outputs)

    @staticmethod
    def _meta(resp: Any) -> dict[str, Any]:
        return {
            "status": resp.status,
            "ok": True,
            "url": resp.url,
            "headers": {k: resp.headers[k] for k in KEPT_HEADERS if k in resp.headers},
            "bytes": resp.size,
        }

    @staticmethod
    def _body(resp: Any) -> dict[str, Any]:
        ctype = resp.content_type
        if resp.complete and (ctype == "application/json" or ctype.endswith("+json")) and resp.body.strip():
            parsed = _parse_json(resp)
            if parsed is not _NOT_JSON:
                return {"json": parsed, "truncated": False}
        try:
            text = resp.body[:TEXT_MAX].decode(resp.charset(), "replace")
        except LookupError:
            text = resp.body[:TEXT_MAX].decode("utf-8", "replace")
        return {"text": text, "truncated": (not resp.complete) or len(resp.body) > TEXT_MAX}

    @staticmethod
    def _unexpected(method: str, resp: Any, expected_text: str) -> StepError:
        body = resp.body.decode("utf-8", "replace")
        detail = f": {_snippet(body)}" if body.strip() else ""
        return StepError(
            f"{method} {resp.url} returned {resp.status} {resp.reason}".rstrip() + f" (expected {expected_text}){detail}",
            code="http.unexpected_status",
        )


_NOT_JSON = object()


def _parse_json(resp: Any) -> Any:
    """The parsed body, or ``_NOT_JSON`` when it is not valid JSON after all (shown as text)."""
    try:
        return json.loads(resp.body.decode(resp.charset(), "replace"))
    except (ValueError, LookupError):
        return _NOT_JSON


def _addresses(value: Any) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else [str(v) for v in value]
    out = []
    for name, addr in getaddresses(items):
        if "@" not in addr:
            raise StepError(f"'{addr or name}' is not an e-mail address", code="mail.bad_address")
        out.append(addr)
    return out


def _parts(inputs: Mapping[str, Any]) -> tuple[str, str | None]:
    """(plain-text part, HTML part or None). ``html`` is either our HTML alternative (a string)
    or aetherflow-core's flag (a boolean: ``body`` is HTML, ``text`` the plain part)."""
    html = inputs.get("html")
    body = str(inputs.get("body", ""))
    if isinstance(html, str) and html.strip().lower() in ("true", "false"):
        html = html.strip().lower() == "true"  # a templated flag rendered as text
    if isinstance(html, bool):
        if html:
            return str(inputs.get("text") or ""), body
        return body, None
    return body, (str(html) if html else None)


def _formatted(value: Any) -> str:
    items = [value] if isinstance(value, str) else [str(v) for v in value]
    return ", ".join(items)


@register_step(
    "mail_send",
    inputs_schema={
        "type": "object",
        "properties": {
            "resource": {"type": "string", "minLength": 1, "description": "A mail resource (mail:smtp)."},
            "to": _ADDRESSES,
            "cc": _ADDRESSES,
            "bcc": _ADDRESSES,
            "from": {"type": "string", "minLength": 1, "description": "Sender; default the resource's config.from."},
            "from_addr": {"type": "string", "minLength": 1, "description": "aetherflow-core name of from."},
            "reply_to": {"type": "string", "minLength": 1},
            "subject": {"type": "string"},
            "body": {"type": "string", "default": ""},
            "html": {"type": ["string", "boolean"],
                     "description": "A string: an HTML alternative to body. true (aetherflow-core): body is HTML."},
            "text": {"type": "string", "description": "aetherflow-core: the plain-text part when html is true."},
            "attachments": {"type": "array", "items": {"type": "string", "minLength": 1},
                            "description": "Files to attach, relative to the job's artifacts directory."},
        },
        "required": ["resource", "to", "subject"],
        "not": {"required": ["from", "from_addr"]},
        "additionalProperties": False,
    },
)
class MailSend(Step):
    """Send one e-mail (text, optional HTML alternative, attachments from the workspace).
    The Message-ID derives from the idempotency key, so a resend after a crash is recognisable.
    aetherflow-core inputs: ``html: true`` makes ``body`` the HTML part (``text``, if given,
    the plain-text part), ``from_addr`` is ``from``. A plugin mail connector written for
    aetherflow-core (``send_plaintext`` / ``send_html``) is called the way aetherflow-core did."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        from email.message import EmailMessage

        resource = str(inputs["resource"])
        conn = ctx.connectors[resource]
        if not isinstance(conn, Connector) and callable(getattr(conn, "send_plaintext", None)):
            return self._core_connector(conn, inputs)
        if not callable(getattr(conn, "send", None)):
            raise StepError(f"resource '{resource}' is not a mail resource (kind mail)", code="mail.not_mail")
        to, cc, bcc = (_addresses(inputs.get(k)) for k in ("to", "cc", "bcc"))
        if not to:
            raise StepError("to names no recipient", code="mail.bad_address")
        sender = str(inputs.get("from") or inputs.get("from_addr") or getattr(conn, "sender", None) or "")
        if not sender and "@" in str(getattr(conn, "username", None) or ""):
            sender = str(conn.username)  # aetherflow-core's default sender: the login name
        if not sender:
            raise StepError("no sender: set from, or config.from on the mail resource", code="mail.no_sender")
        text, html = _parts(inputs)
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = _formatted(inputs["to"])
        if cc:
            msg["Cc"] = _formatted(inputs["cc"])
        if inputs.get("reply_to"):
            msg["Reply-To"] = str(inputs["reply_to"])
        msg["Subject"] = str(inputs["subject"])
        msg["Date"] = formatdate(ctx.clock(), localtime=True)
        domain = sender.rsplit("@", 1)[-1].strip(">").strip() or "aetherflow.invalid"
        msg["Message-ID"] = f"<{hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:32]}@{domain}>"
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        self._attach(ctx, msg, inputs.get("attachments") or [])
        refused = conn.send(msg, [*to, *cc, *bcc]) or {}
        if refused:
            ctx.log.warning("the server refused %d recipient(s): %s", len(refused), ", ".join(sorted(refused)))
        return StepResult(STEP_SUCCESS, {
            "message_id": msg["Message-ID"],
            "to": to,
            "cc": cc,
            "recipients": len(to) + len(cc) + len(bcc) - len(refused),
            "refused": dict(refused),
            "attachments": len(inputs.get("attachments") or []),
            # aetherflow-core's outputs
            "sent": True,
            "subject": str(inputs["subject"]),
            "html": html is not None,
        })

    @staticmethod
    def _core_connector(conn: Any, inputs: Mapping[str, Any]) -> StepResult:
        """A mail connector with aetherflow-core's contract: ``send_plaintext`` / ``send_html``
        (keyword arguments to, subject, body or html and text, cc, bcc, from_addr)."""
        if inputs.get("attachments"):
            raise StepError(f"resource '{inputs['resource']}': its connector (send_plaintext/send_html) takes no attachments",
                            code="mail.attachment_unsupported")
        to, cc, bcc = (_addresses(inputs.get(k)) for k in ("to", "cc", "bcc"))
        if not to:
            raise StepError("to names no recipient", code="mail.bad_address")
        sender = inputs.get("from") or inputs.get("from_addr")
        text, html = _parts(inputs)
        subject = str(inputs["subject"])
        if html is not None:
            conn.send_html(to=to, subject=subject, html=html, text=text or None, cc=cc, bcc=bcc, from_addr=sender)
        else:
            conn.send_plaintext(to=to, subject=subject, body=text, cc=cc, bcc=bcc, from_addr=sender)
        return StepResult(STEP_SUCCESS, {"to": to, "cc": cc, "recipients": len(to) + len(cc) + len(bcc), "attachments": 0,
                                         "sent": True, "subject": subject, "html": html is not None})

    @staticmethod
    def _attach(ctx: StepContext, msg: Any, paths: Sequence[str]) -> None:
        for p in paths:
            path = workspace_path(ctx, str(p), what="attachment")
            if not path.is_file():
                raise StepError(f"attachment '{p}' is not a file", code="mail.attachment_missing")
            ctype, encoding = mimetypes.guess_type(path.name)
            if ctype is None or encoding is not None:
                ctype = "application/octet-stream"
            maintype, subtype = ctype.split("/", 1)
            msg.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name)
