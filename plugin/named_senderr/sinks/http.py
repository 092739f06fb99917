"""The pooled HTTP client the network sinks share: auth, TLS, compression, and httpx errors mapped.

Secrets (sinks/credentials.py) live only in the client's default headers and
its Credentials. A Reply's ``body`` is for parsing; any text for a human made
of an answer comes from ``Reply.text`` or ``Reply.redact``, which remove every
form of the sink's secrets, so a server echoing the request's headers puts
them in no message, exception or dead letter. ``post`` never raises for a
transport failure; it returns a Reply with status 0 and the cause, so each
sink's classification stays a pure function of a Reply.
"""

from __future__ import annotations

import ssl
import zlib
from dataclasses import dataclass, field

import httpx

from named_senderr.errors import ConfigError
from named_senderr.settings.compression import gzip_level
from named_senderr.settings.ship import SinkConfig, TlsConfig
from named_senderr.sinks.credentials import NO_CREDENTIALS, Credentials, read_credentials

MAX_REASON = 1000  # characters of a server's words kept in a message
SCAN_BYTES = 64 * 1024  # of a body read for a message: far more than MAX_REASON characters, so no secret is cut


@dataclass(frozen=True)
class Reply:
    """A server's answer, or ``status`` 0 and ``error`` when none came; ``fatal`` when retrying cannot help."""

    status: int
    body: bytes = field(default=b"", repr=False)  # for parsing only: messages take text() or redact()
    retry_after: float | None = None
    error: str | None = None
    fatal: str | None = None
    credentials: Credentials = field(default=NO_CREDENTIALS, repr=False, compare=False)

    def text(self, limit: int = MAX_REASON) -> str:
        """The start of the body for a message, secrets redacted before the cut so no piece of one is left."""
        text = self.redact(self.body[:SCAN_BYTES].decode("utf-8", "replace")).strip()
        return text[:limit] or "no reason given"

    def redact(self, text: str) -> str:
        """``text`` (a server's words taken from this answer) without any secret of the sink that asked."""
        return self.credentials.redact(text)


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
        self.credentials = read_credentials(config.auth, config.name)
        self._gzip_level = gzip_level(config.compression)
        self._client = httpx.Client(
            base_url=config.url,
            headers={**self.credentials.headers, **(headers or {})},
            verify=ssl_context(config.tls, config.name),
            timeout=httpx.Timeout(config.timeout),
            limits=httpx.Limits(max_connections=config.workers + 1, max_keepalive_connections=config.workers + 1),
            trust_env=False,  # what the configuration says is all that is sent: no .netrc, no proxy variables
        )

    def post(self, path: str, body: bytes, content_type: str, params: dict | None = None) -> Reply:
        """POST ``body``, gzip-compressed unless the sink's ``compression`` is none."""
        if self._gzip_level is None:
            return self.request("POST", path, body, {"Content-Type": content_type}, params)
        headers = {"Content-Type": content_type, "Content-Encoding": "gzip"}
        return self.request("POST", path, zlib.compress(body, self._gzip_level, wbits=31), headers, params)

    def request(
        self,
        method: str,
        path: str,
        content: bytes | None = None,
        headers: dict | None = None,
        params: dict | None = None,
    ) -> Reply:
        redact = self.credentials.redact  # a transport's words may quote what the server sent
        try:
            response = self._client.request(method, path, content=content, headers=headers, params=params)
        except httpx.TimeoutException as exc:
            return Reply(0, error=f"timed out ({type(exc).__name__}); raise timeout if the server is just slow")
        except httpx.ConnectError as exc:
            cause = _ssl_cause(exc)
            if cause is not None:
                return Reply(0, fatal=redact(_tls_message(cause)))
            return Reply(0, error=redact(f"cannot connect: {exc}"))
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            return Reply(0, error=redact(f"connection cut: {exc or type(exc).__name__}"))
        except httpx.TransportError as exc:
            return Reply(0, error=redact(f"{type(exc).__name__}: {exc}"))
        # httpx's response and its stream refer to each other; that cycle holds the request and its body (megabytes)
        # until the cyclic collector runs, which cli.collect_less_often makes rare. Cut it: the body goes now.
        response.stream = httpx.ByteStream(b"")
        retry_after = _retry_after(response.headers.get("Retry-After"))
        return Reply(response.status_code, response.content, retry_after, credentials=self.credentials)

    def close(self) -> None:
        self._client.close()


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
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
