"""Tallies straight from log files, through the same reader ``parse`` and ``ship`` use."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from named_senderr.engine.transforms import ParseLines
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser
from named_senderr.report.summary import NONE, Tallies, Window, minute_key, parse_time
from named_senderr.sources.files import FileSource
from named_senderr.telemetry import Stats

Warn = Callable[[str], None]


def tally_files(
    inputs: Iterable[str], window: Window, warn: Warn, timezone: str | None = None, host: str | None = None
) -> Tallies:
    """Count every event of ``inputs`` inside ``window``; lines without a time are outside every window."""
    stats = Stats()
    parse = ParseLines(NamedLineParser(TimestampNormalizer(resolve_zone(timezone))), stats, host)
    tallies = Tallies()
    events = (event for batch in FileSource(tuple(inputs), stats, warn).batches() for event in parse(batch.lines))
    for event in events:
        if event.timestamp is None:
            continue
        moment = parse_time(event.timestamp)
        if not window.start <= moment < window.end:
            continue
        name = event.host or NONE
        minute = minute_key(moment)
        tallies.host_reason[name, event.reason] += 1
        tallies.minute_reason[minute, event.reason] += 1
        tallies.host_minute[name, minute] += 1
        if event.client_ip:
            tallies.client_ip[event.client_ip] += 1
        tallies.qname[event.qname or NONE] += 1
        tallies.view[event.view or NONE] += 1
    return tallies
