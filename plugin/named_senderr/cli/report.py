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
  FILE ...                                   named logs, read with the parse reader
  elasticsearch+http://host:9200/INDEX       aggregations only (also opensearch+http...)
  loki+http://host:3100?job=named-senderr    LogQL metric queries
  victorialogs+http://host:9428?job=named-senderr  LogsQL stats queries (format=flat if shipped so)

output:
  stdout  the summary (or JSON with --json); --plot PNG and --html FILE write files

examples:
  named-senderr report --from /var/log/named/named.log --since 6h
  named-senderr report --from elasticsearch+http://127.0.0.1:9200/named-senderr --by client-net
  named-senderr report --from loki+http://127.0.0.1:3100 --json --plot errors.png
"""
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="summarize send errors per server, reason and client network",
        description="Sum the send errors of a window per server (rate, reason mix, peak minute), "
        "client network (/24, /56), qname and view.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--from", dest="source", nargs="+", required=True, metavar="URL|FILE")
    parser.add_argument("--since", default="24h", metavar="DURATION", help="window length, e.g. 90m, 24h, 7d")
    parser.add_argument("--until", metavar="TIME", help="window end, RFC 3339 (default: now)")
    parser.add_argument("--by", choices=("host", "reason", "client-net", "qname", "view"))
    parser.add_argument("--json", action="store_true", help="the summary as one JSON object on stdout")
    parser.add_argument("--plot", metavar="FILE.png", help="chart: events per minute by reason, events per server")
    parser.add_argument("--html", metavar="FILE", help="self-contained page: servers, reasons, hints")
    parser.add_argument("--timezone", metavar="TZ", help="files: zone of times logged without one")
    parser.set_defaults(run=run)


def parse_since(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match or int(match[1]) == 0:
        raise ConfigError(f"--since {text!r} is not a duration; use a number and s, m, h or d, e.g. 24h")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def parse_until(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--until {text!r} is not an RFC 3339 time; e.g. 2026-11-20T11:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def summarize(sources: list[str], since: timedelta, until: datetime, timezone: str | None = None):
    """The Summary of ``sources``: one store URL, or log files."""
    from named_senderr.report.summary import build, window_ending

    window = window_ending(until, since)
    first = sources[0]
    if "+http" in first.split("://", 1)[0]:
        from named_senderr.report import stores
        from named_senderr.settings.loading import sink_from_url

        if len(sources) > 1:
            raise ConfigError("--from: one store URL at a time; run report once per store")
        config = sink_from_url(first, {}, "--from", None)
        if config.kind == "loki":
            return build(config.name, window, stores.tally_loki(config, window))
        if config.kind == "victorialogs":
            return build(config.name, window, stores.tally_victorialogs(config, window))
        return build(config.name, window, stores.tally_elasticsearch(config, window))
    from dataclasses import replace

    from named_senderr.report.counters import tally_counters
    from named_senderr.report.files import tally_files

    warn = lambda message: print(f"named-senderr: {message}", file=sys.stderr)  # noqa: E731
    label = first if len(sources) == 1 else f"{len(sources)} files"
    summary = build(label, window, tally_files(sources, window, warn, timezone))
    return replace(summary, inputs=list(sources), counters=tally_counters(sources, window, warn))


def run(args: argparse.Namespace) -> int:
    from named_senderr.report import html, render

    summary = summarize(args.source, parse_since(args.since), parse_until(args.until), args.timezone)
    if args.plot:
        render.plot(summary, args.plot)
    if args.html:
        html.write_page(summary, args.html)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(summary.as_dict(), option=orjson.OPT_APPEND_NEWLINE))
    else:
        print(render.terminal(summary, args.by))
    return 0
