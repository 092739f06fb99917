"""``named-senderr report``: send errors summed per server, reason, network, from files or a store."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta

import orjson

from named_senderr.errors import ConfigError

EPILOG = """\
sources (--from):
  FILE|GLOB ...                              named logs, read with the parse reader; quote globs
  elasticsearch+http://host:9200/INDEX       aggregations only (also opensearch+http...)
  loki+http://host:3100?job=named-senderr    LogQL metric queries
  victorialogs+http://host:9428?job=named-senderr  LogsQL stats queries (format=flat if shipped so)

window (--since/--until):
  files   the events' own span: from the first event to the last; --since alone counts back from the
          last event, --until alone from the first
  stores  the 24h before now; the report says how many events lie outside the window and the
          --since/--until that would show them

servers: a line's host, else --host, else the file's name (file channels log none)
rate: events per minute over the server's active span (its first to its last minute with an event)

output:
  stdout  the summary (or JSON with --json); --plot PNG and --html FILE write files

examples:
  named-senderr report --from '/var/log/named/*.log'
  named-senderr report --from /var/log/named/named.log --since 6h
  named-senderr report --from elasticsearch+http://127.0.0.1:9200/named-senderr --by client-net
  named-senderr report --from loki+http://127.0.0.1:3100 --json --plot errors.png
"""
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
STORE_SINCE = timedelta(hours=24)  # a store's default window: it holds more than any report needs


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="summarize send errors per server, reason and client network",
        description="Sum the send errors of a window per server (rate, reason mix, peak minute), "
        "client network (/24, /56), qname and view.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--from",
        dest="source",
        nargs="+",
        required=True,
        metavar="URL|FILE",
        help="named log files or globs (quoted), or one store URL (see sources below)",
    )
    parser.add_argument(
        "--since",
        metavar="DURATION",
        help="window length, e.g. 90m, 24h, 7d (default: files from their first event, stores 24h)",
    )
    parser.add_argument(
        "--until", metavar="TIME", help="window end, RFC 3339 (default: files their last event, stores now)"
    )
    parser.add_argument("--by", choices=("host", "reason", "client-net", "qname", "view"))
    parser.add_argument("--json", action="store_true", help="the summary as one JSON object on stdout")
    parser.add_argument("--plot", metavar="FILE.png", help="chart: events per minute by reason, events per server")
    parser.add_argument("--html", metavar="FILE", help="self-contained page: servers, reasons, hints")
    parser.add_argument("--timezone", metavar="TZ", help="files: zone of times logged without one")
    parser.add_argument("--host", metavar="NAME", help="files: server for lines that carry none (default: file name)")
    parser.set_defaults(run=run)


def parse_since(text: str | None) -> timedelta | None:
    if text is None:
        return None
    match = _DURATION.match(text)
    if not match or int(match[1]) == 0:
        raise ConfigError(f"--since {text!r} is not a duration; use a number and s, m, h or d, e.g. 24h")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def parse_until(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--until {text!r} is not an RFC 3339 time; e.g. 2026-11-20T11:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def summarize(
    sources: list[str],
    since: timedelta | None,
    until: datetime | None,
    timezone: str | None = None,
    host: str | None = None,
    now: datetime | None = None,
):
    """The Summary of ``sources``: one store URL, or log files (their window defaults to their events' span)."""
    from named_senderr.report.summary import build

    now = now or datetime.now(UTC).replace(microsecond=0)
    first = sources[0]
    if "+http" in first.split("://", 1)[0]:
        from named_senderr.report import stores
        from named_senderr.settings.loading import sink_from_url

        if len(sources) > 1:
            raise ConfigError("--from: one store URL at a time; run report once per store")
        config = sink_from_url(first, {}, "--from", None)
        window = store_window(since, until, now)
        if config.kind == "loki":
            return build(config.name, window, stores.tally_loki(config, window, now))
        if config.kind == "victorialogs":
            return build(config.name, window, stores.tally_victorialogs(config, window))
        return build(config.name, window, stores.tally_elasticsearch(config, window))
    from dataclasses import replace

    from named_senderr.report import files
    from named_senderr.report.counters import tally_counters

    warn = lambda message: print(f"named-senderr: {message}", file=sys.stderr)  # noqa: E731
    paths = files.expand(sources)
    records = files.read(paths, warn, timezone, host)
    window = files.window_of(records, since, until, now)
    label = paths[0] if len(paths) == 1 else f"{len(paths)} files"
    summary = build(label, window, files.tally(records, window), sources=paths)
    return replace(summary, counters=tally_counters(paths, window, warn))


def store_window(since: timedelta | None, until: datetime | None, now: datetime):
    """A store's window: the bounds given, else the 24 h before now."""
    from named_senderr.report.summary import window_ending

    defaults = [text for text, given in (("--since 24h", since), ("--until now", until)) if given is None]
    basis = "--since/--until" + (f" (default {', '.join(defaults)})" if defaults else "")
    return window_ending(until or now, since or STORE_SINCE, basis)


def run(args: argparse.Namespace) -> int:
    from named_senderr.report import html, render

    summary = summarize(args.source, parse_since(args.since), parse_until(args.until), args.timezone, args.host)
    if args.plot:
        render.plot(summary, args.plot)
    if args.html:
        html.write_page(summary, args.html)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(summary.as_dict(), option=orjson.OPT_APPEND_NEWLINE))
    else:
        print(render.terminal(summary, args.by))
    return 0
