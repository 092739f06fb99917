"""What the long-running modes count for ``/metrics``, without prometheus_client.

The sources, the queue and the sinks describe their live counters as
``Sample`` values, read at each scrape (nothing is counted twice);
``--metrics`` is checked here. The endpoint itself (metrics_endpoint.py)
and prometheus_client are imported only when ``--metrics`` asks for them:
every other start is the shorter for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from named_senderr.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Sample:
    """One metric value, read live; ``kind`` is counter (named ``*_total``) or gauge."""

    name: str
    kind: str
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Measured(Protocol):
    """A part of a pipeline with counters of its own for /metrics (a receiver's connections, frames, acks)."""

    def samples(self) -> Iterable[Sample]: ...


def parse_address(text: str) -> tuple[str, int]:
    """``PORT`` (loopback), ``HOST:PORT`` or ``[IPv6]:PORT``."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535 or (sep and not host):
        raise ConfigError(f"--metrics {text!r}: expected PORT or HOST:PORT, e.g. 127.0.0.1:9108")
    return host, int(port)
