"""``/metrics`` and ``/healthz`` for the long-running modes, through prometheus_client.

Imported only for ``--metrics`` (metrics.py holds what every run counts).

Each run has its own ``CollectorRegistry``, never the global one, so two
pipelines in one process (or two tests) never mix numbers. It holds one
collector that turns the live counters into metric families at each scrape
(nothing is counted twice), whatever collectors the caller adds (the batch
latency histograms), and the process collector. prometheus_client's handler
answers in the format the scraper asks for: text 0.0.4 by default,
OpenMetrics when Prometheus asks for it.

The server is ours, not prometheus_client's, whose server gives every
connection a thread for as long as the peer likes: here a connection gets a
thread for at most ``client_timeout`` seconds of silence, and at most
``max_clients`` connections are open at once (a new one shuts the oldest
silent one down), so idle sockets can neither pile threads up nor lock a
scraper out for long. A bare port binds to loopback: exposing the endpoint on
a network is a choice spelt out as ``0.0.0.0:PORT``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, MetricsHandler, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from named_senderr.errors import ConfigError
from named_senderr.metrics import Sample, parse_address

CLIENT_TIMEOUT = 10.0  # seconds a connection may stay silent, reading its request or our answer
MAX_CLIENTS = 16  # a scraper or two and a health check; the rest is not worth a thread
# Seconds: a bulk request on loopback takes milliseconds, a retried one the backoff's minutes.
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf"))

Family = CounterMetricFamily | GaugeMetricFamily


def batch_histogram() -> Histogram:
    """One run's batch latencies per sink, served beside the samples."""
    return Histogram("named_senderr_batch_latency_seconds",
                     "Seconds from a batch's hand-off to its sink until stored, already there or dead-lettered.",
                     ["sink"], buckets=BATCH_BUCKETS, registry=None)  # fmt: skip


class SampleCollector:
    """A prometheus_client collector over ``collect()``: the samples are read at each scrape, never copied."""

    def __init__(self, collect: Callable[[], Iterable[Sample]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        families: dict[str, tuple[Family, list[str]]] = {}
        for sample in self._collect():
            if sample.name not in families:
                keys = sorted(sample.labels)
                families[sample.name] = (_family(sample, keys), keys)
            family, keys = families[sample.name]
            family.add_metric([sample.labels[key] for key in keys], sample.value)
        return (family for family, _ in families.values())


def _family(sample: Sample, labels: list[str]) -> Family:
    if sample.kind == "gauge":
        return GaugeMetricFamily(sample.name, sample.help, labels=labels)
    if sample.kind == "counter" and sample.name.endswith("_total"):
        return CounterMetricFamily(sample.name, sample.help, labels=labels)
    raise ValueError(f"metric {sample.name}: expected a gauge or a counter named *_total, not a {sample.kind}")


def new_registry(collect: Callable[[], Iterable[Sample]], *collectors: Collector) -> CollectorRegistry:
    """A registry for one run: the live samples, ``collectors`` (histograms) and the process's CPU, memory, files."""
    registry = CollectorRegistry()
    registry.register(SampleCollector(collect))
    for collector in collectors:
        registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


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
        registry: CollectorRegistry,
        client_timeout: float = CLIENT_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        host, port = parse_address(address)
        try:
            self._httpd = _BoundedHTTPServer((host, port), _handler(registry, client_timeout), max_clients)
        except OSError as exc:
            raise ConfigError(f"--metrics {address}: cannot listen: {exc.strerror}; choose another port") from None
        bound_host, bound_port = self._httpd.socket.getsockname()[:2]  # an (address, port) pair: an IP socket
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
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


def serve_metrics(
    address: str, collect: Callable[[], Iterable[Sample]], *collectors: Collector, **bounds: Any
) -> MetricsServer:
    """Start the endpoint over a new registry; the caller closes it (or uses it as a context manager)."""
    return MetricsServer(address, new_registry(collect, *collectors), **bounds)


def _handler(source: CollectorRegistry, client_timeout: float) -> type[BaseHTTPRequestHandler]:
    class Handler(MetricsHandler):
        registry = source
        timeout = client_timeout  # socketserver applies it to the connection: a silent client times out

        def parse_request(self) -> bool:
            assert isinstance(self.server, _BoundedHTTPServer)
            self.server.answering(self.request)
            return super().parse_request()

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                super().do_GET()  # the format the Accept header asks for, gzip if accepted
            elif path == "/healthz":
                self._answer(200, b"ok\n")
            else:
                self._answer(404, b"not found: try /metrics or /healthz\n")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
