"""``hostcheck --emit`` series among report's file inputs: the kernel's and named's own counts per server.

A record is one NDJSON line with ``event.dataset: bind.host_counters``: the
counter deltas of one interval (kernel ``Udp*SndbufErrors``, and with
``--stats-url`` the statistics channel's ``UDP4SendErr``/``UDP6SendErr``) and
the lines of its ``--log`` it counted, and the case it named. Summed per
``host.name`` over the samples whose whole interval lies inside the window, they
stand beside the log lines of the same span.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson

from named_senderr.errors import InputError
from named_senderr.hostcheck.counters import DATASET
from named_senderr.report.summary import HostCounters, Window, parse_time
from named_senderr.sources.log_file import InputSource

Warn = Callable[[str], None]


@dataclass
class _Series:
    start: datetime
    end: datetime
    samples: int = 0
    deltas: Counter[str] = field(default_factory=Counter)
    log: Counter[str] = field(default_factory=Counter)
    cases: Counter[str] = field(default_factory=Counter)


def tally_counters(inputs: Iterable[str], window: Window, warn: Warn) -> list[HostCounters]:
    """Every host_counters record of ``inputs`` whose interval lies inside ``window``, summed per host.

    Unreadable inputs and stdin are left to the log reader, which already warned about them;
    a host_counters record without the fields hostcheck writes is warned once per file and counted there.
    """
    series: dict[str, _Series] = {}
    for name in inputs:
        if name == "-":
            continue
        try:
            stream = InputSource(name).open()
        except InputError:
            continue
        with stream:
            bad = 0
            for line in stream:
                if not line.startswith(b"{"):
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # not a record: the log reader judges the line
                event = record.get("event") if isinstance(record, dict) else None
                if not isinstance(event, dict) or event.get("dataset") != DATASET:
                    continue
                bad += not _add(series, record, window)
            if bad:
                warn(f"{name}: {bad:,} {DATASET} record(s) without @timestamp, host.name or interval_s skipped")
    return [
        HostCounters(host, s.samples, _iso(s.start), _iso(s.end), _plain(s.deltas), _plain(s.log), dict(s.cases))
        for host, s in sorted(series.items())
    ]


def _add(series: dict[str, _Series], record: dict, window: Window) -> bool:
    """Fold one record into its host's series; False when it lacks what hostcheck always writes."""
    try:
        counters = record["bind"]["host_counters"]
        host = str(record["host"]["name"])
        taken = parse_time(record["@timestamp"])
        begun = taken - timedelta(seconds=float(counters["interval_s"]))
        deltas = {str(k): int(v) for k, v in counters.get("delta", {}).items()}
        logged = {str(k): int(v) for k, v in counters.get("log", {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    if not (window.start <= begun and taken <= window.end):
        return True
    found = series.setdefault(host, _Series(begun, taken))
    found.start, found.end = min(found.start, begun), max(found.end, taken)
    found.samples += 1
    found.deltas.update(deltas)
    found.log.update(logged)
    found.cases[str(counters.get("case", "?"))] += 1
    return True


def _plain(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items()))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
