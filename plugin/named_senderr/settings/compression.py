"""How an HTTP sink compresses its request bodies: the ``compression`` key of elasticsearch+, opensearch+, loki+
and victorialogs+ sinks.

``none``, ``gzip`` (level 1) or ``gzip:N`` (N from 1 to 9). Left out, it fits the link: nothing on a loopback
host, where gzip would only spend the CPU that the server beside us needs too (on 200,000 events into a local
Elasticsearch, gzip level 1 cost the client about 4 µs an event); gzip level 1 anywhere else, where it shrinks
the NDJSON about 8 times for the cost of that one pass.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from named_senderr.errors import ConfigError

HTTP_KINDS = frozenset({"elasticsearch", "opensearch", "loki", "victorialogs"})
GZIP_LEVELS = {"gzip": 1} | {f"gzip:{level}": level for level in range(1, 10)}
CHOICES = "none, gzip (level 1) or gzip:1 .. gzip:9"


def http_compression(name: str, url: str, value: str) -> str:
    """``value`` checked, or the default for the host of ``url`` when it is empty."""
    if not value:
        return "none" if is_loopback(urlsplit(url).hostname or "") else "gzip"
    if value != "none" and value not in GZIP_LEVELS:
        raise ConfigError(f"{name}: compression {value!r} is not one of {CHOICES}")
    return value


def gzip_level(compression: str) -> int | None:
    """The gzip level of a checked ``compression``; None for none."""
    return GZIP_LEVELS.get(compression)


def is_loopback(host: str) -> bool:
    """``localhost`` or an address of 127.0.0.0/8 or ::1: this machine, where bytes on the wire cost nothing."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
