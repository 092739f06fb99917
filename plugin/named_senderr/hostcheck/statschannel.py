"""BIND's statistics channel: the UDP send-error socket counters, from XML (v3) or JSON (v1).

named counts a refused send in ``UDP4SendErr``/``UDP6SendErr`` whether or not the
kernel saw it, so on 9.16+ it rises with the log lines while SndbufErrors stays flat.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import httpx
import orjson

from named_senderr.errors import InputError

NAMES = ("UDP4SendErr", "UDP6SendErr")


def fetch(url: str, timeout: float = 5.0) -> dict[str, int]:
    try:
        reply = httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        raise InputError(
            f"--stats-url {url}: {type(exc).__name__}: {exc}; is statistics-channels {{ inet ... }} set in named.conf?"
        ) from None
    if reply.status_code != 200:
        raise InputError(f"--stats-url {url}: {reply.status_code}; use .../json/v1/net or .../xml/v3/net")
    return parse(reply.content, url)


def parse(body: bytes, where: str) -> dict[str, int]:
    """Socket counters from either format; a counter BIND has not incremented yet is absent, read as 0."""
    text = body.lstrip()
    try:
        if text.startswith(b"{"):
            sockstats = orjson.loads(text).get("sockstats", {})
            return {name: int(sockstats.get(name, 0)) for name in NAMES}
        root = ElementTree.fromstring(text)
    except (orjson.JSONDecodeError, ElementTree.ParseError) as exc:
        raise InputError(f"{where}: neither BIND statistics JSON nor XML ({exc})") from None
    found = {name: 0 for name in NAMES}
    for counters in root.iter("counters"):
        if counters.get("type") == "sockstat":
            for counter in counters.iter("counter"):
                if (name := counter.get("name")) in found:
                    found[name] = int(counter.text or 0)
    return found
