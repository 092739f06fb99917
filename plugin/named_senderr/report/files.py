"""Tallies straight from log files, through the same reader ``parse`` and ``ship`` use.

Unlike a store, a file holds its own time span: the window defaults to it, so an old log
reports its events rather than none, and every bound left open on the command line is the
events' own.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from named_senderr.engine.transforms import ParseLines
from named_senderr.errors import InputError
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser
from named_senderr.reasons import COMPANION_KINDS, UDP_SEND_FAILED
from named_senderr.report.summary import NONE, Outside, Tallies, Window, minute_key, minute_start, parse_time
from named_senderr.sources.files import FileSource
from named_senderr.telemetry import Stats

Warn = Callable[[str], None]
SPAN = "the events' own span"


@dataclass(frozen=True)
class Record:
    """What the report counts of one event."""

    moment: datetime
    host: str
    reason: str
    client_ip: str | None
    qname: str
    view: str
    kind: str  # message_kind: the COMPANION_KINDS are not events (see report/summary.py)


def expand(inputs: Iterable[str]) -> list[str]:
    """Files and globs (expanded as ``tail`` does, sorted, regular files only); a missing one is an InputError."""
    paths: list[str] = []
    for name in inputs:
        if name == "-":
            paths.append(name)
        elif glob.has_magic(name):
            found = [path for path in sorted(glob.glob(name)) if os.path.isfile(path)]
            if not found:
                raise InputError(f"--from {name!r}: no file matches this glob; check the directory and the pattern")
            paths += found
        elif not os.path.exists(name):
            raise InputError(f"--from {name}: no such file; check the path")
        else:
            paths.append(name)
    return paths


def read(paths: Iterable[str], warn: Warn, timezone: str | None = None, host: str | None = None) -> list[Record]:
    """Every timed event of ``paths``; a server is the line's host, else ``host``, else the file's name."""
    stats = Stats()
    parse = ParseLines(NamedLineParser(TimestampNormalizer(resolve_zone(timezone))), stats, host)
    records = []
    for batch in FileSource(tuple(paths), stats, warn).batches():
        for event in parse(batch.lines):
            if event.timestamp is None:
                continue  # outside every window
            name = event.host or (os.path.basename(event.file) if event.file else NONE)
            qname, view = event.qname or NONE, event.view or NONE
            moment = parse_time(event.timestamp)
            records.append(Record(moment, name, event.reason, event.client_ip, qname, view, event.message_kind))
    return records


def window_of(records: list[Record], since: timedelta | None, until: datetime | None, now: datetime) -> Window:
    """The window: bounds given as given, open ones from the events' span (whole minutes)."""
    basis = SPAN if since is None and until is None else "--since/--until"
    if (since is None) != (until is None):
        basis += " (the other bound: the events' span)"
    if not records:
        end = until or now
        return Window(end - since if since else end, end, basis)
    first = minute_start(minute_key(min(r.moment for r in records)))
    end = until or minute_start(minute_key(max(r.moment for r in records))) + timedelta(minutes=1)
    return Window(end - since if since else min(first, end), end, basis)


def tally(records: Iterable[Record], window: Window) -> Tallies:
    """Count the records inside ``window``, and those before and after it; UDP lines apart, inside only.

    The other companion lines (internal_send) are left out: each explains an event counted on its own line.
    """
    tallies = Tallies()
    before = after = 0
    first: datetime | None = None
    last: datetime | None = None
    for r in records:
        if r.kind in COMPANION_KINDS:
            if r.kind == UDP_SEND_FAILED and window.start <= r.moment < window.end:
                tallies.udp_host[r.host] += 1
            continue
        if r.moment < window.start:
            before, first = before + 1, min(first or r.moment, r.moment)
            continue
        if r.moment >= window.end:
            after, last = after + 1, max(last or r.moment, r.moment)
            continue
        minute = minute_key(r.moment)
        tallies.host_reason[r.host, r.reason] += 1
        tallies.minute_reason[minute, r.reason] += 1
        tallies.host_minute[r.host, minute] += 1
        if r.client_ip:
            tallies.client_ip[r.client_ip] += 1
        tallies.qname[r.qname] += 1
        tallies.view[r.view] += 1
    tallies.outside = Outside(before, after, minute_key(first) if first else None, minute_key(last) if last else None)
    return tallies


def tally_files(
    inputs: Iterable[str], window: Window, warn: Warn, timezone: str | None = None, host: str | None = None
) -> Tallies:
    """Count every event of ``inputs`` inside ``window``; lines without a time are outside every window."""
    return tally(read(expand(inputs), warn, timezone, host), window)
