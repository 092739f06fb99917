"""``/metrics`` (Prometheus text format 0.0.4) and ``/healthz`` for the long-running modes.

Written by hand: a dozen counters do not need prometheus_client and its
global registry. ``serve_metrics`` takes any ``render`` callable, so ``ship
--follow`` and ``serve`` share it. A bare port binds to loopback: exposing
the endpoint on a network is a choice spelt out as ``0.0.0.0:PORT``. A
connection gets a thread for at most ``client_timeout`` seconds of silence,
and at most ``max_clients`` connections are open at once (a new one shuts the
oldest silent one down), so idle sockets can neither pile threads up nor lock
a scraper out for long.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from named_senderr.errors import ConfigError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_HOST = "127.0.0.1"
CLIENT_TIMEOUT = 10.0  # seconds a connection may stay silent, reading its request or our answer
MAX_CLIENTS = 16  # a scraper or two and a health check; the rest is not worth a thread


@dataclass(frozen=True)
class Sample:
    """One metric value; ``kind`` is counter or gauge."""

    name: str
    kind: str
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


def render(samples: Iterable[Sample]) -> str:
    """The text exposition format: HELP and TYPE once per name, then its samples."""
    lines: list[str] = []
    seen: set[str] = set()
    for sample in samples:
        if sample.name not in seen:
            seen.add(sample.name)
            lines.append(f"# HELP {sample.name} {sample.help}")
            lines.append(f"# TYPE {sample.name} {sample.kind}")
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
        value = int(sample.value) if float(sample.value).is_integer() else sample.value
        lines.append(f"{sample.name}{{{labels}}} {value}" if labels else f"{sample.name} {value}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_address(text: str) -> tuple[str, int]:
    """``PORT`` (loopback), ``HOST:PORT`` or ``[IPv6]:PORT``."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535 or (sep and not host):
        raise ConfigError(f"--metrics {text!r}: expected PORT or HOST:PORT, e.g. 127.0.0.1:9108")
    return host, int(port)


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_clients`` at once.

    Past that, the oldest connection that has not sent its request yet is shut
    down for the new one (a scrape sends its request as soon as it connects);
    when every one is being answered, the new one is closed unanswered.
    """

    daemon_threads = True
    request_queue_size = 64  # socketserver's 5 would leave a burst of connections waiting for SYN retries

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_clients: int) -> None:
        super().__init__(address, handler)
        self.max_clients = max_clients
        self.evicted = self.refused = 0
        self._open: set[socket.socket] = set()
        self._silent: dict[socket.socket, None] = {}  # no request yet, oldest first
        self._lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = len(self._open) >= self.max_clients
            victim = next(iter(self._silent), None) if full else None
            if victim is not None:
                self._forget(victim)
                self.evicted += 1
            if not full or victim is not None:
                self._open.add(request)
                self._silent[request] = None
        if victim is not None:
            with contextlib.suppress(OSError):
                victim.shutdown(socket.SHUT_RDWR)  # its thread's read returns at once, and the thread ends
        elif full:
            self.refused += 1
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def answering(self, request: socket.socket) -> None:
        """The request line came: this connection is no longer one to shut down for a new one."""
        with self._lock:
            self._silent.pop(request, None)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._forget(request)
        super().shutdown_request(request)

    def _forget(self, request: socket.socket) -> None:
        self._open.discard(request)
        self._silent.pop(request, None)


class MetricsServer:
    """A daemon HTTP thread; ``url`` is where it listens (port 0 picks a free one)."""

    def __init__(
        self,
        address: str,
        collect: Callable[[], Iterable[Sample]],
        client_timeout: float = CLIENT_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        host, port = parse_address(address)
        try:
            self._httpd = _BoundedHTTPServer((host, port), _handler(collect, client_timeout), max_clients)
        except OSError as exc:
            raise ConfigError(f"--metrics {address}: cannot listen: {exc.strerror}; choose another port") from None
        bound_host, bound_port = self._httpd.server_address[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        self.url = f"http://{shown}:{bound_port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    @property
    def evicted(self) -> int:
        """Silent connections shut down to make room, ``max_clients`` being open."""
        return self._httpd.evicted

    @property
    def refused(self) -> int:
        """New connections closed unanswered, ``max_clients`` being answered."""
        return self._httpd.refused

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_metrics(address: str, collect: Callable[[], Iterable[Sample]], **bounds: Any) -> MetricsServer:
    """Start the endpoint; the caller closes it (or uses it as a context manager)."""
    return MetricsServer(address, collect, **bounds)


def _handler(collect: Callable[[], Iterable[Sample]], client_timeout: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = client_timeout  # socketserver applies it to the connection: a silent client times out

        def log_message(self, *args: object) -> None:
            """Quiet: a scrape every few seconds is not news."""

        def parse_request(self) -> bool:
            assert isinstance(self.server, _BoundedHTTPServer)
            self.server.answering(self.request)
            return super().parse_request()

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, render(collect()).encode(), CONTENT_TYPE)
            elif path == "/healthz":
                self._answer(200, b"ok\n", "text/plain; charset=utf-8")
            else:
                self._answer(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
