"""``named-senderr listen``: receive syslog over UDP and TCP; NDJSON events on stdout, or any ``--to`` sink."""

from __future__ import annotations

import argparse
import sys
import time

from named_senderr.cli.options import add_delivery_options
from named_senderr.cli.peer_options import add_peer_options, peer_limits
from named_senderr.cli.tail import add_event_options, stop_on_signals, stream_config, summarize, warn
from named_senderr.engine.streaming import run_listen
from named_senderr.parse.named import MAX_LINE_BYTES
from named_senderr.sources.syslog import MAX_CONNECTIONS, SyslogConfig, SyslogEndpoint

EPILOG = """\
Messages may be RFC 3164 or RFC 5424; on TCP, octet-counted (LEN SP MSG) or
one per line. Bound to 127.0.0.1 unless an address is given: listening on all
interfaces takes an explicit udp://0.0.0.0:PORT. An event's host is the
message's HOSTNAME, else the sender's address.

where events go:
  stdout  without --to, each batch flushed as it comes
  --to    the sinks ('ship --help' lists the URLs), with --queue-dir through the disk queue:
          SIGTERM/SIGINT keeps there what the sinks did not take yet, the next start delivers it
  when the pipeline is full (a slow sink, a full queue) TCP senders are made to wait;
  UDP cannot wait: those messages are dropped, counted (--stats, /metrics) and said

examples:
  named-senderr listen --syslog udp://127.0.0.1:5514 --syslog tcp://127.0.0.1:5514
  named-senderr listen --syslog tcp://127.0.0.1:5514 --queue-dir /var/lib/named-senderr/syslog-queue \\
      --to elasticsearch+http://127.0.0.1:9200/named-senderr --metrics 9109
  rsyslog:  *.* @@127.0.0.1:5514;RSYSLOG_SyslogProtocol23Format
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "listen",
        help="receive syslog (UDP, TCP), NDJSON events on stdout or to any sink",
        description="Receive named's messages over syslog and deliver send-error events until SIGTERM/SIGINT.",
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
    add_delivery_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    endpoints = tuple(SyslogEndpoint.parse(url) for url in args.syslog)
    syslog = SyslogConfig(endpoints, args.max_message_bytes, args.udp_receive_buffer, peer_limits(args))
    config = stream_config(args)
    started = time.perf_counter()
    result, counters = run_listen(config, syslog, warn, stop_on_signals(), sys.stdout.buffer,
                                  on_ready=lambda urls: warn(f"listening on {', '.join(urls)}"))  # fmt: skip
    details = (
        f"\n  syslog              {counters.messages:,} messages, {counters.dropped:,} dropped (pipeline full "
        f"or stopping), {counters.oversize} over the size limit, {counters.malformed} malformed frames, "
        f"{counters.refused_connections} refused and {counters.evicted_connections} idle evicted connections, "
        f"{counters.idle_timeouts} idle and {counters.frame_timeouts} message timeouts, "
        f"{counters.kernel_drops:,} UDP datagrams dropped by the kernel"
    )
    return summarize(args, result, time.perf_counter() - started, f"{len(endpoints)} syslog endpoint(s)", details)
