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

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from named_senderr.event import Event
from named_senderr.normalize.network import client_network
from named_senderr.normalize.timestamp import to_epoch_ns


@dataclass
class _Group:
    exemplar: Event
    count: int
    first_seen: str
    last_seen: str
    first_ns: int


def network_address(address: str | None) -> str | None:
    return None if address is None else str(client_network(address).network_address)


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
        ns = to_epoch_ns(event.timestamp)
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
