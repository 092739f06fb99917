"""Rollup stage: one event per server x reason x client network x time window.

A would-block storm is thousands of identical lines a second; a store needs the
count, not every line. A rolled-up event keeps one exemplar line (``original``,
``message``, file and offset of the first event: so Elasticsearch ids stay
deterministic and a re-run adds nothing), ``timestamp`` = ``first_seen``,
``last_seen``, the window, and the count in ``repeat_count`` (the field BIND's
own "repeated N times" fills); the client address is the network address.
ECS renders them as ``event.start``/``event.end`` and ``bind.rollup``.

Windows close one window late: events may arrive out of order by up to a window.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from named_senderr.event import Event

IPV4_PREFIX, IPV6_PREFIX = 24, 56


@dataclass
class _Group:
    exemplar: Event
    count: int
    first_seen: str
    last_seen: str
    first_ns: int


def to_ns(timestamp: str) -> int:
    """Nanoseconds of an RFC 3339 time; microsecond precision is all a named log has."""
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def network_address(address: str | None) -> str | None:
    if address is None:
        return None
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    prefix = IPV4_PREFIX if ip.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def parse_window(text: str) -> float:
    """``60s``, ``5m`` or plain seconds."""
    from named_senderr.errors import ConfigError

    scale = {"s": 1, "m": 60, "h": 3600}.get(text[-1:])
    number = text[:-1] if scale else text
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise ConfigError(f"--rollup {text!r}: give a window of at least 1 s, e.g. 60s or 5m")
    return seconds


def rollup(events: Iterable[Event], window: float) -> Iterator[Event]:
    """The rolled-up events; events without a time pass through alone."""
    width = int(window * 1_000_000_000)
    open_groups: dict[tuple, _Group] = {}
    newest = None
    for event in events:
        if event.timestamp is None:
            yield event
            continue
        ns = to_ns(event.timestamp)
        start = ns - ns % width
        key = (event.host, event.reason, network_address(event.client_ip), start)
        group = open_groups.get(key)
        if group is None:
            open_groups[key] = _Group(event, event.repeat_count, event.timestamp, event.timestamp, ns)
        else:
            group.count += event.repeat_count
            if ns < group.first_ns:
                group.first_seen, group.first_ns = event.timestamp, ns
            elif event.timestamp > group.last_seen:
                group.last_seen = event.timestamp
        if newest is None or start > newest:  # time moved on: close what is more than a window behind
            newest = start
            yield from _flush(open_groups, [k for k in open_groups if k[3] < start - width], window)
    yield from _flush(open_groups, list(open_groups), window)


def _flush(groups: dict[tuple, _Group], keys: list[tuple], window: float) -> Iterator[Event]:
    for key in sorted(keys, key=lambda k: (k[3], groups[k].first_ns)):
        group = groups.pop(key)
        yield replace(
            group.exemplar,
            client_ip=key[2],
            client_port=None,
            scope=None,
            timestamp=group.first_seen,
            repeat_count=group.count,
            first_seen=group.first_seen,
            last_seen=group.last_seen,
            rollup_window=window,
        )


def stages(events: Iterable[Event], privacy: Callable[[Event], Event] | None, window: float | None) -> Iterator[Event]:
    """Privacy first (so rollup groups by the reduced address), then rollup; ``parse`` and ``ship`` share this."""
    if privacy is not None:
        events = (privacy(event) for event in events)
    if window is not None:
        events = rollup(events, window)
    yield from events
