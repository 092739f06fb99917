"""Rollup stage: one event per server x message kind x reason x client network x time window.

A would-block storm is thousands of identical lines a second; a store needs the
count, not every line. A rolled-up event keeps one exemplar line (``original``,
``message``, file and offset of the first event: so Elasticsearch ids stay
deterministic and a re-run adds nothing), ``timestamp`` = ``first_seen``,
``last_seen``, the window, and the count in ``repeat_count`` (the field BIND's
own "repeated N times" fills); the client address is the network address.
ECS renders them as ``event.start``/``event.end`` and ``bind.rollup``.

The message kind is part of the key: a ``udp_send_failed`` line (no client, at most one a
second) names the same drops as the per-client ``send failed`` lines, so folding it into a
client group, one without an address (the ``(no-peer)`` form) in the same window, would count
those drops twice and could make the UDP line that group's exemplar. It stays its own group,
whose count is seconds with drops (see report/summary.py).

Windows close one window late: events may arrive out of order by up to a window.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import NamedTuple

from named_senderr.event import Event
from named_senderr.normalize.network import network_text
from named_senderr.normalize.timestamp import to_epoch_ns


class _Key(NamedTuple):
    host: str | None
    message_kind: str
    reason: str
    network: str | None
    start: int  # the window's start, ns


@dataclass
class _Group:
    exemplar: Event
    count: int
    first_seen: str
    last_seen: str
    first_ns: int
    seq: int = 0  # the smallest source batch number among the grouped events


def network_address(address: str | None) -> str | None:
    return None if address is None else network_text(address)


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


class Windows:
    """Open rollup windows; ``add`` returns what an event closes, ``close`` the rest.

    Each group remembers the smallest source batch number (``seq``) it holds, so the engine acknowledges a
    batch only once the events rolled up from it have left.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._width = int(window * 1_000_000_000)
        self._groups: dict[_Key, _Group] = {}
        self._newest: int | None = None
        # Since ``begin``: each group the batch touched as it was before (None: new), and the newest start.
        self._saved: dict[_Key, _Group | None] | None = None
        self._saved_newest: int | None = None

    def begin(self) -> None:
        """Remember what the next adds change, so that ``undo`` can take them back."""
        self._saved, self._saved_newest = {}, self._newest

    def undo(self) -> None:
        """The groups as they were at ``begin``: the batch added since was refused and will come again."""
        for key, group in (self._saved or {}).items():
            if group is None:
                self._groups.pop(key, None)
            else:
                self._groups[key] = group
        if self._saved is not None:
            self._newest = self._saved_newest
        self._saved = None

    def add(self, event: Event, seq: int = 0) -> list[Event]:
        """The events ``event`` completes: itself when it has no time, windows time has moved past."""
        if event.timestamp is None:
            return [event]
        ns = to_epoch_ns(event.timestamp)
        start = ns - ns % self._width
        key = _Key(event.host, event.message_kind, event.reason, network_address(event.client_ip), start)
        group = self._groups.get(key)
        if self._saved is not None and key not in self._saved:
            self._saved[key] = replace(group) if group is not None else None
        if group is None:
            self._groups[key] = _Group(event, event.repeat_count, event.timestamp, event.timestamp, ns, seq)
        else:
            group.count += event.repeat_count
            group.seq = min(group.seq, seq)
            if ns < group.first_ns:
                group.first_seen, group.first_ns = event.timestamp, ns
            elif event.timestamp > group.last_seen:
                group.last_seen = event.timestamp
        if self._newest is None or start > self._newest:  # time moved on: close what is more than a window behind
            self._newest = start
            return self._flush([k for k in self._groups if k.start < start - self._width])
        return []

    def close(self) -> list[Event]:
        """Every open window, oldest first (not taken back by ``undo``)."""
        self._saved = None
        return self._flush(list(self._groups))

    def oldest_seq(self) -> int | None:
        return min((group.seq for group in self._groups.values()), default=None)

    def _flush(self, keys: list[_Key]) -> list[Event]:
        groups = self._groups
        done = []
        for key in sorted(keys, key=lambda k: (k.start, groups[k].first_ns)):
            group = groups.pop(key)
            if self._saved is not None:
                self._saved.setdefault(key, group)
            done.append(
                replace(
                    group.exemplar,
                    client_ip=key.network,
                    client_port=None,
                    scope=None,
                    timestamp=group.first_seen,
                    repeat_count=group.count,
                    first_seen=group.first_seen,
                    last_seen=group.last_seen,
                    rollup_window=self.window,
                )
            )
        return done


def rollup(events: Iterable[Event], window: float) -> Iterator[Event]:
    """The rolled-up events; events without a time pass through alone."""
    windows = Windows(window)
    for event in events:
        yield from windows.add(event)
    yield from windows.close()
