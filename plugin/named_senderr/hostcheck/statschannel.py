"""BIND's statistics channel: the UDP send-error socket counters and named's version, from XML (v3) or JSON (v1).

named counts a refused send in ``UDP4SendErr``/``UDP6SendErr`` whether or not the
kernel saw it, so on 9.18.31+ it rises with the log lines while SndbufErrors stays flat.
Every answer names the version (bin/named/statschannel.c: JSON ``"version"`` beside
``"json-stats-version"``, XML ``<statistics><server><version>``), which tells whether
this named logs a full send buffer at all.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

import httpx
import orjson

from named_senderr.errors import InputError

NAMES = ("UDP4SendErr", "UDP6SendErr")


@dataclass(frozen=True)
class Stats:
    """One statistics-channel answer: the UDP send-error counters, and named's version when it gave one."""

    send_errors: dict[str, int]
    version: str | None


def fetch(url: str, timeout: float = 5.0) -> Stats:
    try:
        reply = httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        raise InputError(
            f"--stats-url {url}: {type(exc).__name__}: {exc}; is statistics-channels {{ inet ... }} set in named.conf?"
        ) from None
    if reply.status_code != 200:
        raise InputError(f"--stats-url {url}: {reply.status_code}; use .../json/v1/net or .../xml/v3/net")
    return parse(reply.content, url)


def parse(body: bytes, where: str) -> Stats:
    """Socket counters and version from either format; a counter BIND has not incremented yet is absent, read as 0."""
    text = body.lstrip()
    try:
        if text.startswith(b"{"):
            document = orjson.loads(text)
            sockstats = document.get("sockstats", {})
            version = document.get("version")
            return Stats({name: int(sockstats.get(name, 0)) for name in NAMES}, str(version) if version else None)
        root = ElementTree.fromstring(text)
    except (orjson.JSONDecodeError, ElementTree.ParseError) as exc:
        raise InputError(f"{where}: neither BIND statistics JSON nor XML ({exc})") from None
    found = {name: 0 for name in NAMES}
    for counters in root.iter("counters"):
        if counters.get("type") == "sockstat":
            for counter in counters.iter("counter"):
                if (name := counter.get("name")) in found:
                    found[name] = int(counter.text or 0)
    version = root.findtext("server/version")
    return Stats(found, version.strip() if version and version.strip() else None)
