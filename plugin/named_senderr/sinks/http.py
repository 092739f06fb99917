"""The pooled HTTP client the network sinks share: auth, TLS, gzip, and httpx errors mapped.

Secrets are read once, at start, from the environment variable or file the
configuration names, and live only in the client's default headers: no
message, repr or dead letter carries them. ``post`` never raises for a
transport failure; it returns a Reply with status 0 and the cause, so each
sink's classification stays a pure function of a Reply.
"""

from __future__ import annotations

import base64
import os
import ssl
import zlib
from dataclasses import dataclass
from pathlib import Path

import httpx

from named_senderr.errors import ConfigError
from named_senderr.ship_config import AuthConfig, SinkConfig, TlsConfig

GZIP_LEVEL = 1  # level 1 already shrinks NDJSON ~8x; higher levels cost CPU the reader needs


@dataclass(frozen=True)
class Reply:
    """A server's answer, or ``status`` 0 and ``error`` when none came; ``fatal`` when retrying cannot help."""

    status: int
    body: bytes = b""
    retry_after: float | None = None
    error: str | None = None
    fatal: str | None = None


def read_secret(env: str | None, file: Path | None, what: str, sink: str) -> str | None:
    """The secret named by ``env`` or ``file``; the message on failure names where, never the value."""
    if env:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"{sink}: {what}_env names {env}, which is not set; export {env} or use {what}_file")
        return value
    if file:
        try:
            value = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{sink}: {what}_file {file}: {exc.strerror}; make it readable by this user") from None
        if not value:
            raise ConfigError(f"{sink}: {what}_file {file} is empty; write the {what} into it")
        return value
    return None


def auth_headers(auth: AuthConfig, sink: str) -> dict[str, str]:
    password = read_secret(auth.password_env, auth.password_file, "password", sink)
    if auth.username and password is not None:
        token = base64.b64encode(f"{auth.username}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}
    api_key = read_secret(auth.api_key_env, auth.api_key_file, "api_key", sink)
    if api_key is not None:
        return {"Authorization": f"ApiKey {api_key}"}
    bearer = read_secret(auth.bearer_token_env, auth.bearer_token_file, "bearer_token", sink)
    return {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}


def ssl_context(tls: TlsConfig, sink: str) -> ssl.SSLContext:
    """System CAs, or ``ca_file``; a client certificate when given; no check only when asked."""
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.client_cert:
            context.load_cert_chain(str(tls.client_cert), str(tls.client_key) if tls.client_key else None)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{sink}: TLS file {exc.filename or tls.ca_file}: no such file; fix ca_file/client_cert/client_key"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"{sink}: TLS files unusable ({exc}); give PEM files in ca_file, client_cert, client_key"
        ) from None
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class HttpClient:
    """One keep-alive pool per sink, sized to its worker threads."""

    def __init__(self, config: SinkConfig, headers: dict[str, str] | None = None) -> None:
        self.name = config.name
        self._client = httpx.Client(
            base_url=config.url,
            headers={**auth_headers(config.auth, config.name), **(headers or {})},
            verify=ssl_context(config.tls, config.name),
            timeout=httpx.Timeout(config.timeout),
            limits=httpx.Limits(max_connections=config.workers + 1, max_keepalive_connections=config.workers + 1),
            trust_env=False,  # what the configuration says is all that is sent: no .netrc, no proxy variables
        )

    def post(self, path: str, body: bytes, content_type: str, params: dict | None = None) -> Reply:
        """POST ``body`` gzip-compressed."""
        headers = {"Content-Type": content_type, "Content-Encoding": "gzip"}
        return self.request("POST", path, zlib.compress(body, GZIP_LEVEL, wbits=31), headers, params)

    def request(
        self,
        method: str,
        path: str,
        content: bytes | None = None,
        headers: dict | None = None,
        params: dict | None = None,
    ) -> Reply:
        try:
            response = self._client.request(method, path, content=content, headers=headers, params=params)
        except httpx.TimeoutException as exc:
            return Reply(0, error=f"timed out ({type(exc).__name__}); raise timeout if the server is just slow")
        except httpx.ConnectError as exc:
            cause = _ssl_cause(exc)
            if cause is not None:
                return Reply(0, fatal=_tls_message(cause))
            return Reply(0, error=f"cannot connect: {exc}")
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            return Reply(0, error=f"connection cut: {exc or type(exc).__name__}")
        except httpx.TransportError as exc:
            return Reply(0, error=f"{type(exc).__name__}: {exc}")
        return Reply(response.status_code, response.content, _retry_after(response.headers.get("Retry-After")))

    def close(self) -> None:
        self._client.close()


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _tls_message(cause: ssl.SSLError) -> str:
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate not trusted ({cause.verify_message}); give the server's CA bundle with ca_file "
            "(verify = false turns the check off, for tests only)"
        )
    return f"TLS handshake failed ({cause.reason or cause}); check the scheme (http/https) and client_cert"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the backoff applies
