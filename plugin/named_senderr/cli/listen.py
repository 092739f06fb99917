"""``named-senderr listen``: receive syslog over UDP and TCP, NDJSON events on stdout."""

from __future__ import annotations

import argparse
import sys
import time

from named_senderr.cli.parse import format_summary
from named_senderr.cli.peer_options import add_peer_options, peer_limits
from named_senderr.cli.tail import EventPrinter, add_event_options, stop_on_signals, warn
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import MAX_LINE_BYTES, NamedLineParser
from named_senderr.sources.syslog import MAX_CONNECTIONS, SyslogConfig, SyslogEndpoint, SyslogStats, serve
from named_senderr.telemetry import Stats

EPILOG = """\
Messages may be RFC 3164 or RFC 5424; on TCP, octet-counted (LEN SP MSG) or
one per line. Bound to 127.0.0.1 unless an address is given: listening on all
interfaces takes an explicit udp://0.0.0.0:PORT.

examples:
  named-senderr listen --syslog udp://127.0.0.1:5514 --syslog tcp://127.0.0.1:5514
  rsyslog:  *.* @@127.0.0.1:5514;RSYSLOG_SyslogProtocol23Format
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "listen",
        help="receive syslog (UDP, TCP), NDJSON events on stdout",
        description="Receive named's messages over syslog and print send-error events until SIGTERM/SIGINT.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--syslog", action="append", required=True, metavar="URL", help="udp://HOST:PORT or tcp://HOST:PORT, repeatable"
    )
    parser.add_argument("--max-message-bytes", type=int, default=MAX_LINE_BYTES, metavar="N", help="larger is dropped")
    parser.add_argument(
        "--udp-receive-buffer", type=int, default=4 * 1024 * 1024, metavar="BYTES", help="kernel buffer for bursts"
    )
    add_peer_options(parser, MAX_CONNECTIONS)
    add_event_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    endpoints = tuple(SyslogEndpoint.parse(url) for url in args.syslog)
    config = SyslogConfig(endpoints, args.max_message_bytes, args.udp_receive_buffer, peer_limits(args))
    stats, syslog_stats = Stats(), SyslogStats()
    parser = NamedLineParser(TimestampNormalizer(resolve_zone(args.timezone)))
    rejects = open(args.rejects, "ab") if args.rejects else None  # noqa: SIM115 - closed below
    printer = EventPrinter(parser, sys.stdout.buffer, stats, args.format, args.host, rejects)

    def deliver(messages: list[bytes]) -> None:
        stats.lines += len(messages)
        for message in messages:
            stats.bytes += len(message)
            printer.take(message)
        printer.flush()

    started = time.perf_counter()
    try:
        serve(
            config, deliver, warn, stop_on_signals(), lambda urls: warn(f"listening on {', '.join(urls)}"), syslog_stats
        )
    finally:
        if rejects is not None:
            rejects.close()
    if args.stats:
        print(format_summary(stats, time.perf_counter() - started), file=sys.stderr)
        print(
            f"  syslog              {syslog_stats.messages:,} messages, {syslog_stats.oversize} over the size limit, "
            f"{syslog_stats.malformed} malformed frames, {syslog_stats.refused_connections} refused and "
            f"{syslog_stats.evicted_connections} idle evicted connections, {syslog_stats.idle_timeouts} idle and "
            f"{syslog_stats.frame_timeouts} message timeouts, "
            f"{syslog_stats.kernel_drops:,} UDP datagrams dropped by the kernel",
            file=sys.stderr,
        )
    return 0
