"""The Summary every report source produces, and the pure counting that builds it.

Every source (files, Elasticsearch, Loki) hands over the same raw tallies:
counts per host x reason, per minute x reason, per host x minute, per client
address, per qname and per view, and how many events lie outside the window.
``build`` turns them into the Summary, so networks, peaks, rates over each
server's active span and top lists are computed once, the same way for all,
and "same numbers from every source" is a property of the tallies alone.

Drops are counted once. ``Sending UDP messages failed`` (message_kind ``udp_send_failed``) is
logged at most once a second per named process, whatever the number of answers dropped
(``can_log_udp_sends``, lib/isc/netmgr/udp.c:813-826@v9.18.49, udp.c:644-655@v9.21.2), and each
of those answers is also logged per client as ``send failed`` (udp.c:866-877@v9.18.49 returns the
error, udp.c:785-788 hands it to the client's callback, lib/ns/client.c:333-336@v9.18.49, at
debug 3). So its lines are a "drops happened this second" signal: every source tallies them
apart, per server (``udp_host``), and the Summary shows them beside the event count
(``udp_drop_seconds``), never in it; a server without debug 3 logging shows drops there only.
``internal_send: A#P: <strerror>`` (``internal_send_failed``, the socket code to 9.16) is the
errno behind a failure named reports on another line (lib/isc/unix/socket.c:1745@v9.16.50,
logged through bin/named/main.c:329-334@v9.16.50 after ``FILE:LINE: unexpected error:``; the
client's ``error sending response`` follows from the send's result): counted there, not again.
These two are the ``COMPANION_KINDS``; every other message kind is an event.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from math import ceil

from named_senderr.normalize import network

NONE = "(none)"  # the key for events without a host, qname or view
TOP = 10


@dataclass(frozen=True)
class Window:
    """Events with ``start <= @timestamp < end`` are counted; ``basis`` says how the bounds were chosen."""

    start: datetime
    end: datetime
    basis: str = "--since/--until"


@dataclass(frozen=True)
class Outside:
    """Events the window leaves out, so a report of 0 can say where the data is and how to see it."""

    before: int = 0
    after: int = 0
    first: str | None = None  # minute of the earliest event before the window
    last: str | None = None  # minute of the latest event after it
    options: str | None = None  # the --since/--until that would show them all (set by ``build``)


@dataclass
class Tallies:
    """Raw counts as a source finds them; ``bounded`` names tallies cut at a source's bucket limit."""

    host_reason: Counter[tuple[str, str]] = field(default_factory=Counter)
    minute_reason: Counter[tuple[str, str]] = field(default_factory=Counter)
    host_minute: Counter[tuple[str, str]] = field(default_factory=Counter)
    client_ip: Counter[str] = field(default_factory=Counter)
    qname: Counter[str] = field(default_factory=Counter)
    view: Counter[str] = field(default_factory=Counter)
    udp_host: Counter[str] = field(default_factory=Counter)  # host -> udp_send_failed lines: seconds with drops
    bounded: list[str] = field(default_factory=list)
    outside: Outside = field(default_factory=Outside)


@dataclass(frozen=True)
class HostSummary:
    """One server; its rate is over its active span (first to last minute with an event), not the window."""

    host: str
    events: int
    per_minute: float
    reasons: dict[str, int]
    peak_minute: str | None
    peak_events: int
    first_minute: str | None
    last_minute: str | None
    active_minutes: int
    udp_drop_seconds: int = 0  # seconds named logged "Sending UDP messages failed": beside ``events``, not in it


@dataclass(frozen=True)
class HostCounters:
    """One server's ``hostcheck --emit`` samples in the window: counter deltas summed, cases counted."""

    host: str
    samples: int
    start: str  # the first sample's interval start, RFC 3339
    end: str  # the last sample's time
    deltas: dict[str, int]  # UdpSndbufErrors, Udp6SndbufErrors, UDP4SendErr, ... summed over the samples
    log: dict[str, int]  # hostcheck's own --log counts (would_block, netmgr, other) over the same intervals
    cases: dict[str, int]  # hostcheck's case (a, b, c, quiet, ...) -> samples


@dataclass(frozen=True)
class Summary:
    """What ``report`` prints, as JSON with ``--json``; equal across sources on the same events."""

    source: str
    sources: list[str]  # the files read (globs expanded), or the store's name
    start: str
    end: str
    basis: str  # how the window was chosen: the events' span, --since/--until, or the default
    events: int
    reasons: dict[str, int]
    hosts: list[HostSummary]
    client_networks: list[tuple[str, int]]
    qnames: list[tuple[str, int]]
    views: list[tuple[str, int]]
    minutes: dict[str, dict[str, int]]  # minute -> reason -> events: the chart's series
    bounded: list[str]
    outside: Outside
    host_minutes: dict[str, dict[str, int]] = field(default_factory=dict)  # host -> minute -> events
    counters: list[HostCounters] = field(default_factory=list)  # hostcheck --emit series among the inputs
    udp_drop_seconds: int = 0  # the fleet's seconds with a "Sending UDP messages failed" line; not in ``events``

    def as_dict(self) -> dict:
        data = asdict(self)
        for key in ("client_networks", "qnames", "views"):
            data[key] = [{"key": k, "events": n} for k, n in data[key]]
        return data


def minute_key(moment: datetime) -> str:
    """``2026-11-20T10:17Z``: the minute an event falls in, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time (``Z`` or offset); naive times are UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def client_network(address: str) -> str:
    """The client's /24 or /56 in CIDR form, the key the report counts by."""
    return str(network.client_network(address))


def window_ending(end: datetime, since: timedelta, basis: str = "--since/--until") -> Window:
    return Window(end - since, end, basis)


def minute_start(key: str) -> datetime:
    """The start of a ``minute_key`` minute."""
    return datetime.strptime(key, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)


def duration(span: timedelta) -> str:
    """``span`` rounded up to a ``--since`` value in the largest unit that stays close: m, h up to 3 d, then d."""
    minutes = max(1, ceil(span.total_seconds() / 60))
    if minutes % 60 and minutes <= 180:
        return f"{minutes}m"
    hours = ceil(minutes / 60)
    return f"{hours}h" if hours % 24 and hours <= 72 else f"{ceil(hours / 24)}d"


def widening(window: Window, outside: Outside) -> str | None:
    """The ``--since``/``--until`` whose window holds the events ``outside`` counts as well as this one's."""
    if not outside.before and not outside.after:
        return None
    start = min(window.start, minute_start(outside.first)) if outside.first else window.start
    end = max(window.end, minute_start(outside.last) + timedelta(minutes=1)) if outside.last else window.end
    return f"--since {duration(end - start)} --until {_iso(end)}"


def build(source: str, window: Window, tallies: Tallies, top: int = TOP, sources: list[str] | None = None) -> Summary:
    reasons: Counter[str] = Counter()
    per_host: dict[str, Counter[str]] = {}
    for (host, reason), n in tallies.host_reason.items():
        reasons[reason] += n
        per_host.setdefault(host, Counter())[reason] += n
    for host in tallies.udp_host:
        per_host.setdefault(host, Counter())  # a server whose drops named logged only as the UDP line
    hosts = []
    udp = tallies.udp_host
    for host in sorted(per_host, key=lambda h: (-sum(per_host[h].values()), -udp[h], h)):
        events = sum(per_host[host].values())
        minutes = [(m, n) for (h, m), n in tallies.host_minute.items() if h == host and n]
        peak = min(minutes, key=lambda pair: (-pair[1], pair[0]), default=(None, 0))
        first, last = min(minutes, default=(None, 0))[0], max(minutes, default=(None, 0))[0]
        active = _active_minutes(first, last)
        rate = round(events / active, 3) if active else 0.0
        ranked = _ranked(per_host[host])
        hosts.append(HostSummary(host, events, rate, ranked, peak[0], peak[1], first, last, active, udp[host]))
    networks: Counter[str] = Counter()
    for address, n in tallies.client_ip.items():
        networks[client_network(address)] += n
    series: dict[str, dict[str, int]] = {}
    for (minute, reason), n in sorted(tallies.minute_reason.items()):
        if n:
            series.setdefault(minute, {})[reason] = n
    host_minutes: dict[str, dict[str, int]] = {}
    for (host, minute), n in sorted(tallies.host_minute.items()):
        if n:
            host_minutes.setdefault(host, {})[minute] = n
    return Summary(
        source=source,
        sources=list(sources) if sources is not None else [source],
        start=_iso(window.start),
        end=_iso(window.end),
        basis=window.basis,
        events=sum(reasons.values()),
        reasons=_ranked(reasons),
        hosts=hosts,
        client_networks=_top(networks, top),
        qnames=_top(tallies.qname, top),
        views=_top(tallies.view, top),
        minutes=series,
        bounded=sorted(tallies.bounded),
        outside=replace(tallies.outside, options=widening(window, tallies.outside)),
        host_minutes=host_minutes,
        udp_drop_seconds=sum(udp.values()),
    )


def _active_minutes(first: str | None, last: str | None) -> int:
    """Minutes from the start of ``first`` to the end of ``last``: a server's active span."""
    if first is None or last is None:
        return 0
    return int((minute_start(last) - minute_start(first)).total_seconds() // 60) + 1


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ranked(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(((k, n) for k, n in counts.items() if n), key=lambda kv: (-kv[1], kv[0])))


def _top(counts: Counter[str], top: int) -> list[tuple[str, int]]:
    return list(_ranked(counts).items())[:top]
