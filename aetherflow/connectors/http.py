"""``rest:http`` (aliases ``rest:httpx``, ``rest:requests``): HTTP(S) with the stdlib (urllib).

Config (options may set ``timeout``, ``verify`` and ``headers`` too; config wins):

* ``base_url`` — requests take a path relative to it; absolute URLs are refused, so the
  resource's credentials never go to another host. Without ``base_url`` every request needs
  an absolute ``http://`` or ``https://`` URL.
* ``headers`` — sent with every request (a request's own headers win).
* ``timeout`` — seconds per request (connect and each read), default 30.
* ``verify`` — TLS certificates and host names are verified by default; ``false`` turns this
  off, a string names a CA bundle file.
* ``auth`` — ``{type: bearer, token: …}`` or ``{type: basic, username: …, password: …}``;
  the shorthands ``token`` (bearer) and ``username``/``password`` (basic) do the same and work
  with ``decode:``. Credentials are never re-sent when a server redirects.
* ``user:password@`` in ``base_url`` (or in a request's absolute URL) is taken out of the URL
  and sent as basic auth (percent-escapes decoded), as httpx does; configured ``auth`` wins.
  The password never appears in a URL shown in messages or outputs.
* ``proxy`` — ``http://host:port`` proxy URL. Proxy variables of the process environment are
  not read: pass them explicitly (``proxy: "{{ env.HTTPS_PROXY: }}"``); empty means none.
* ``user_agent`` — default ``aetherflow``.

aetherflow-core's keys are accepted with its meaning: ``bearer_token`` (config: bearer auth),
``verify_ssl`` (``verify``), ``timeouts: {total: N}`` and ``timeout_seconds`` (``timeout``).

Errors (refused connection, DNS, TLS, timeout) become ``ConnectorError`` naming the method and
the URL without its query string. A non-2xx status is *not* an error here: the caller decides.

``request(method, path, ...)`` is what ``http_request`` uses. aetherflow-core's calls work too:
``request(method, url, params=, headers=, json=, data=, content=, timeout=)`` and ``get``,
``post``, ``put``, ``delete`` return an :class:`HttpResponse`, which answers ``status_code``,
``text``, ``content``, ``json()``, ``raise_for_status()`` and ``is_success`` as an httpx response
does (a body over 64 MiB is an error, never cut silently); ``client()`` returns the connector
itself, which answers those calls as an ``httpx.Client`` would (there is no httpx here).
"""

from __future__ import annotations

import base64
import hashlib
import json as _json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from aetherflow.api import Connector, ConnectorError, register_connector
from aetherflow.connectors.base import check_keys, tls_context

if TYPE_CHECKING:
    import ssl
    import urllib.request

CONFIG_KEYS = frozenset({"base_url", "headers", "timeout", "verify", "auth", "token", "username", "password", "proxy", "user_agent",
                         "bearer_token"})
OPTION_KEYS = frozenset({"timeout", "verify", "headers", "user_agent", "verify_ssl", "timeouts", "timeout_seconds"})
CHUNK = 64 * 1024
#: the largest body aetherflow-core's calls (get, post, ...) read into memory
COMPAT_MAX_BODY = 64 * 1024 * 1024
_UNSET: Any = object()


@dataclass(slots=True)
class HttpResponse:
    status: int
    reason: str
    url: str  # final URL, query string removed
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""  # at most max_body bytes
    size: int = 0  # bytes read (the whole body when complete)
    complete: bool = True  # False when reading stopped at max_body
    sha256: str | None = None  # of the whole body, when it was written to a sink

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def charset(self) -> str:
        for part in self.headers.get("content-type", "").split(";")[1:]:
            k, _, v = part.strip().partition("=")
            if k.lower() == "charset" and v:
                return v.strip('"')
        return "utf-8"

    # what aetherflow-core's callers use of an httpx response ----------------------------------
    @property
    def status_code(self) -> int:
        return self.status

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content(self) -> bytes:
        if not self.complete:
            raise ConnectorError(f"{self.url}: the response body is over {len(self.body)} bytes; "
                                 "use http_request with save_to for large bodies", code="http.body_too_large")
        return self.body

    @property
    def text(self) -> str:
        try:
            return self.content.decode(self.charset(), "replace")
        except LookupError:
            return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return _json.loads(self.text)

    def raise_for_status(self) -> HttpResponse:
        if not self.is_success:
            raise ConnectorError(f"{self.url} returned {self.status} {self.reason}".rstrip(), code="http.unexpected_status")
        return self


def public_url(url: str) -> str:
    """The URL without query, fragment or user:password — safe to show."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def split_userinfo(url: str) -> tuple[str, str | None]:
    """(``url`` without ``user:password@``, a basic ``Authorization`` value or None)."""
    if not url:
        return url, None
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    bare = urllib.parse.urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    if not userinfo:
        return bare, None
    user, _, password = userinfo.partition(":")
    raw = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
    return bare, "Basic " + base64.b64encode(raw).decode("ascii")


@register_connector("rest", "http", aliases=["httpx", "requests"])
class HttpConnector(Connector):
    """HTTP(S) client on urllib: base URL, headers, auth, TLS verification."""

    def __init__(self, name: str, config: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        super().__init__(name, config, options)
        check_keys(name, "config", config, CONFIG_KEYS)
        check_keys(name, "options", options, OPTION_KEYS)
        merged = {**_core_options(name, options), **dict(options), **dict(config)}
        self.base_url, url_auth = split_userinfo(str(merged.get("base_url") or ""))
        if self.base_url:
            self._check_scheme(self.base_url)
        self.headers: dict[str, str] = {}
        for src in (options.get("headers"), config.get("headers")):
            if src is None:
                continue
            if not isinstance(src, Mapping):
                raise ConnectorError(f"resource '{name}': headers must be a mapping", code="connector.bad_config")
            self.headers.update({str(k): str(v) for k, v in src.items()})
        try:
            self.timeout = float(merged.get("timeout", 30))
        except (TypeError, ValueError) as exc:
            raise ConnectorError(f"resource '{name}': timeout must be a number of seconds", code="connector.bad_config") from exc
        self.verify = _verify_value(name, merged.get("verify", True))
        self.user_agent = str(merged.get("user_agent") or "aetherflow")
        self._auth_header = self._auth(config) or url_auth
        self._opener = self._build_opener(str(config.get("proxy") or ""))

    # -- setup ----------------------------------------------------------------------------------
    def _auth(self, config: Mapping[str, Any]) -> str | None:
        auth = config.get("auth")
        if auth is None:
            if config.get("token") or config.get("bearer_token"):
                auth = {"type": "bearer", "token": config.get("token") or config["bearer_token"]}
            elif config.get("username") is not None:
                auth = {"type": "basic", "username": config["username"], "password": config.get("password", "")}
            else:
                return None
        if not isinstance(auth, Mapping):
            raise ConnectorError(f"resource '{self.name}': auth must be a mapping with a type", code="connector.bad_config")
        kind = str(auth.get("type", "")).lower()
        if kind == "bearer" and auth.get("token"):
            return f"Bearer {auth['token']}"
        if kind == "basic" and auth.get("username") is not None:
            raw = f"{auth['username']}:{auth.get('password', '')}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        raise ConnectorError(
            f"resource '{self.name}': auth must be {{type: bearer, token: …}} or {{type: basic, username: …, password: …}}",
            code="connector.bad_config",
        )

    def ssl_context(self) -> ssl.SSLContext:
        return tls_context(self.name, self.verify)

    def _build_opener(self, proxy: str) -> urllib.request.OpenerDirector:
        import urllib.request

        proxies = {"http": proxy, "https": proxy} if proxy else {}
        return urllib.request.build_opener(
            urllib.request.ProxyHandler(proxies),
            urllib.request.HTTPSHandler(context=self.ssl_context()),
        )

    def _check_scheme(self, url: str) -> None:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            # the scheme only: the rest of the URL may hold a password
            shown = f"'{scheme}'" if scheme else "a URL without a scheme"
            raise ConnectorError(f"resource '{self.name}': only http:// and https:// URLs are supported, not {shown}",
                                 code="http.bad_url")

    def url_for(self, path: str = "", params: Mapping[str, Any] | None = None) -> str:
        path = path or ""
        has_scheme = bool(urllib.parse.urlsplit(path).scheme)
        if self.base_url:
            if has_scheme:
                raise ConnectorError(
                    f"resource '{self.name}': path must be relative to base_url, not an absolute URL "
                    "(the resource's credentials must not go to another host)",
                    code="http.bad_url",
                )
            url = self.base_url if not path else self.base_url.rstrip("/") + "/" + path.lstrip("/")
        else:
            if not has_scheme:
                raise ConnectorError(f"resource '{self.name}': no base_url, so an absolute http(s) URL is needed", code="http.bad_url")
            url = path
        self._check_scheme(url)
        if params:
            query = urllib.parse.urlencode(
                [(str(k), _param_text(x)) for k, v in params.items()
                 for x in (v if isinstance(v, (list, tuple)) else [v]) if x is not None]
            )
            if query:
                url += ("&" if urllib.parse.urlsplit(url).query else "?") + query
        return url

    # -- aetherflow-core's calls --------------------------------------------------------------
    def get(self, url: str, **kw: Any) -> HttpResponse:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> HttpResponse:
        return self.request("POST", url, **kw)

    def put(self, url: str, **kw: Any) -> HttpResponse:
        return self.request("PUT", url, **kw)

    def delete(self, url: str, **kw: Any) -> HttpResponse:
        return self.request("DELETE", url, **kw)

    def client(self) -> HttpConnector:
        """aetherflow-core returned an ``httpx.Client``; this connector answers the same
        ``get``/``post``/``put``/``delete``/``request`` calls, so it is its own client."""
        return self

    def __enter__(self) -> HttpConnector:
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to release: the connector is closed at run end."""

    # -- requests -------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str = "",
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        json_body: Any = None,
        has_json: bool = False,
        body: str | bytes | None = None,
        timeout: float | None = None,
        sink: IO[bytes] | None = None,
        max_body: int | None = None,
        json: Any = _UNSET,
        data: Any = None,
        content: str | bytes | None = None,
        files: Any = None,
    ) -> HttpResponse:
        """Send one request. The response body is kept up to ``max_body`` bytes (default 64 MiB:
        an incomplete body is an error when read as ``content``/``text``/``json()``); with ``sink`` the whole body is written there (and
        hashed) while the first ``max_body`` bytes are kept. ``json=``, ``data=`` (a mapping is
        form-encoded) and ``content=`` are aetherflow-core's (httpx's) spellings of the body."""
        import http.client
        import ssl
        import urllib.error
        import urllib.request

        if files is not None:
            raise ConnectorError(f"resource '{self.name}': files= (multipart upload) is not supported by rest:http",
                                 code="http.bad_request")
        if json is not _UNSET:
            json_body, has_json = json, True
        elif isinstance(data, Mapping):
            body = urllib.parse.urlencode([(str(k), _param_text(v)) for k, v in data.items()])
        elif data is not None or content is not None:
            body = data if data is not None else content
        if max_body is None:  # a caller that reads the body itself (aetherflow-core's calls)
            max_body = COMPAT_MAX_BODY
        method = method.upper()
        url, url_auth = split_userinfo(self.url_for(path, params))
        payload: bytes | None = None
        hdrs = {"User-Agent": self.user_agent, "Accept": "application/json, */*;q=0.5", **self.headers}
        if has_json:
            payload = _json.dumps(json_body, ensure_ascii=False, default=_json_default).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        elif body is not None:
            payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
            if isinstance(data, Mapping):
                hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        for k, v in (headers or {}).items():
            hdrs[str(k)] = str(v)
        req = urllib.request.Request(url, data=payload, method=method)
        for k, v in hdrs.items():
            if k.lower() == "authorization":
                req.add_unredirected_header(k, v)
            else:
                req.add_header(k, v)
        auth_header = self._auth_header or url_auth
        if auth_header and not any(k.lower() == "authorization" for k in hdrs):
            req.add_unredirected_header("Authorization", auth_header)
        where = f"{method} {public_url(url)}"
        limit = self.timeout if timeout is None else timeout
        try:
            resp = self._opener.open(req, timeout=limit)
        except urllib.error.HTTPError as err:
            resp = err  # a status the caller judges, not a transport failure
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise ConnectorError(f"resource '{self.name}': {where} timed out after {limit:g}s", code="http.timeout") from exc
            hint = None
            if isinstance(reason, ssl.SSLCertVerificationError):
                hint = "fix the server certificate, name a CA bundle with verify: /path/ca.pem, or (not for production) verify: false"
            raise ConnectorError(f"resource '{self.name}': {where} failed: {_reason_text(reason)}", code="http.transport",
                                 hint=hint) from exc
        except TimeoutError as exc:
            raise ConnectorError(f"resource '{self.name}': {where} timed out after {limit:g}s", code="http.timeout") from exc
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise ConnectorError(f"resource '{self.name}': {where} failed: {type(exc).__name__}: {exc}", code="http.transport") from exc
        try:
            return self._read(resp, where, limit, sink, max_body)
        finally:
            resp.close()

    def _read(self, resp: Any, where: str, limit: float, sink: IO[bytes] | None, max_body: int) -> HttpResponse:
        import http.client

        out = HttpResponse(
            status=int(resp.status if getattr(resp, "status", None) is not None else resp.code),
            reason=str(getattr(resp, "reason", "") or ""),
            url=public_url(resp.geturl() if hasattr(resp, "geturl") else ""),
            headers={k.lower(): v for k, v in resp.headers.items()} if resp.headers is not None else {},
        )
        digest = hashlib.sha256() if sink is not None else None
        kept = bytearray()
        try:
            while True:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                out.size += len(chunk)
                if len(kept) < max_body:
                    kept.extend(chunk[: max_body - len(kept)])
                if sink is not None and digest is not None:
                    sink.write(chunk)
                    digest.update(chunk)
                elif out.size > max_body:
                    out.complete = False
                    break
        except TimeoutError as exc:
            raise ConnectorError(f"resource '{self.name}': {where}: reading the response timed out after {limit:g}s",
                                 code="http.timeout") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectorError(f"resource '{self.name}': {where}: reading the response failed: {type(exc).__name__}: {exc}",
                                 code="http.transport") from exc
        out.body = bytes(kept)
        if digest is not None:
            out.sha256 = digest.hexdigest()
        return out

    def close(self) -> None:
        """Nothing stays open between requests (each response is closed after reading)."""


def _core_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """aetherflow-core's option names as ours: ``verify_ssl`` → ``verify``, ``timeouts.total`` or
    ``timeout_seconds`` → ``timeout`` (our own names win when both are given)."""
    out: dict[str, Any] = {}
    if "verify_ssl" in options:
        out["verify"] = options["verify_ssl"]
    timeouts = options.get("timeouts")
    if timeouts is not None:
        if not isinstance(timeouts, Mapping) or "total" not in timeouts:
            raise ConnectorError(f"resource '{name}': options.timeouts must be {{total: SECONDS}}", code="connector.bad_config")
        out["timeout"] = timeouts["total"]
    if "timeout_seconds" in options:
        out["timeout"] = options["timeout_seconds"]
    return out


def _reason_text(reason: Any) -> str:
    if isinstance(reason, BaseException):
        text = str(reason)
        return f"{type(reason).__name__}: {text}" if text else type(reason).__name__
    return str(reason)


def _param_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _verify_value(name: str, value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("", "true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        return value
    raise ConnectorError(f"resource '{name}': verify must be true, false or a CA bundle path", code="connector.bad_config")


def _json_default(obj: Any) -> Any:
    """Read-only mappings (how flow inputs arrive) serialise as objects."""
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
