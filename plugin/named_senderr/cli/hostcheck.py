"""``named-senderr hostcheck``: is it the socket buffer, netmgr's queue or the egress qdisc?"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from named_senderr.errors import ConfigError
from named_senderr.hostcheck.counters import DATASET

if TYPE_CHECKING:
    from named_senderr.hostcheck.statschannel import Stats

EPILOG = """\
cases (counters sampled twice, send-error lines of --log in the same window):
  (a) SndbufErrors rises one-for-one with "would block" lines    -> socket buffer: raise wmem (BIND <= 9.15)
  (b) "send failed: no pending connections", SndbufErrors flat   -> netmgr/libuv queue, not the kernel (9.18.31+)
  (c) SndbufErrors rises with no send-error line                 -> qdisc drops / ENOBUFS on egress
  with --stats-url, a BIND that never logs a full send buffer (9.15.6-9.18.30, 9.19, 9.20.0-2, 9.21.0-1) is named

examples:
  named-senderr hostcheck --log /var/log/named/named.log --interval 30
  named-senderr hostcheck --proc before/ --proc after/ --log window.log     two saved snapshots
  named-senderr hostcheck --stats-url http://127.0.0.1:8053/json/v1/net --log named.log --interval 60 --emit
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "hostcheck",
        help="kernel UDP counters, buffers and NICs beside the send errors: which case is this host?",
        description="Sample /proc/net/snmp{,6}, net.core buffers, NIC duplex/speed and BIND's statistics "
        "channel twice, count the send-error lines logged between, and name the cause.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--proc", action="append", type=Path, metavar="DIR", help="proc root; twice: before, after")
    parser.add_argument("--sys", type=Path, default=Path("/sys"), metavar="DIR", help="sys root (default /sys)")
    parser.add_argument(
        "--stats-url", metavar="URL", help="BIND statistics channel, e.g. http://127.0.0.1:8053/json/v1/net"
    )
    parser.add_argument("--log", type=Path, metavar="FILE", help="named log whose new lines count in the window")
    parser.add_argument("--interval", type=float, default=10.0, metavar="S", help="seconds between samples (10)")
    parser.add_argument("--emit", action="store_true", help=f"NDJSON event per interval on stdout ({DATASET})")
    parser.add_argument("--count", type=int, metavar="N", help="with --emit: stop after N events")
    parser.add_argument("--json", action="store_true", help="the diagnosis as JSON on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from named_senderr.hostcheck.counters import take
    from named_senderr.hostcheck.diagnose import LogCounts, count_lines, diagnose

    procs = args.proc or [Path("/proc")]
    if len(procs) > 2 or args.interval <= 0 or (args.count is not None and args.count < 1):
        raise ConfigError("hostcheck: give --proc at most twice (before, after), --interval > 0 and --count >= 1")
    if args.log is not None and not args.log.is_file():
        raise ConfigError(f"--log {args.log}: no such file; name the named log with the send errors")

    def stats() -> Stats | None:
        if args.stats_url is None:
            return None
        from named_senderr.hostcheck.statschannel import fetch

        return fetch(args.stats_url)

    if len(procs) == 2:  # two saved snapshots; the whole --log is the window
        before, after = take(procs[0], args.sys, stats()), take(procs[1], args.sys, stats())
        lines = count_lines(args.log) if args.log else LogCounts()
        return _print(diagnose(before, after, lines), args)
    before, offset, emitted = take(procs[0], args.sys, stats()), _size(args.log), 0
    print(sampling_notice(args, procs[0]), file=sys.stderr, flush=True)
    while True:
        time.sleep(args.interval)
        after, end = take(procs[0], args.sys, stats()), _size(args.log)
        lines = count_lines(args.log, offset, end) if args.log and end >= offset else LogCounts()
        result = diagnose(before, after, lines)
        if not args.emit:
            return _print(result, args)
        sys.stdout.buffer.write(orjson.dumps(emit_record(after, result), option=orjson.OPT_APPEND_NEWLINE))
        sys.stdout.flush()
        emitted += 1
        if args.count is not None and emitted >= args.count:
            return 0
        before, offset = after, end


def sampling_notice(args: argparse.Namespace, proc: Path) -> str:
    """What the wait before any output is for: sampled what, over how long, and what then comes."""
    sources = [f"UDP counters of {proc}/net/snmp and snmp6", "net.core buffers", f"NICs under {args.sys}/class/net"]
    if args.stats_url:
        sources.append(f"BIND's statistics channel {args.stats_url}")
    if args.log:
        sources.append(f"send-error lines appended to {args.log}")
    if not args.emit:
        then = "then the diagnosis"
    elif args.count is None:
        then = f"one {DATASET} event on stdout per interval until interrupted"
    else:
        then = f"one {DATASET} event on stdout per interval, {args.count} in all"
    return f"named-senderr: hostcheck: sampling {', '.join(sources)} over {args.interval:g} s; {then}"


def emit_record(after, result) -> dict:
    """One ECS-shaped metric event: plotted beside the send errors (same host.name, same index or job)."""
    return {
        "@timestamp": datetime.fromtimestamp(after.taken, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "event": {"kind": "metric", "dataset": DATASET, "module": "bind"},
        "host": {"name": socket.gethostname()},
        "bind": {
            "host_counters": {
                "interval_s": round(result.seconds, 3),
                "case": result.case,
                "udp": after.udp,
                "udp6": after.udp6,
                "delta": result.deltas,
                "log": {
                    "would_block": result.lines.would_block,
                    "netmgr": result.lines.netmgr,
                    "other": result.lines.other,
                },
                "sysctl": after.sysctl,
                "statschannel": after.bind_send_errors,
                "bind_version": after.bind_version,
            }
        },
    }


def _print(result, args: argparse.Namespace) -> int:
    if args.json:
        data = {"case": result.case, "summary": result.summary, "deltas": result.deltas,
                "lines": vars(result.lines), "findings": result.findings}  # fmt: skip
        sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE))
        return 0
    print(result.summary)
    moved = ", ".join(f"{k} {v:+d}" for k, v in result.deltas.items() if v)
    print(f"  counters: {moved or 'none moved'}")
    print(f"  log: {result.lines.would_block} would-block, {result.lines.netmgr} netmgr, {result.lines.other} other")
    for finding in result.findings:
        print(f"  check: {finding}")
    return 0


def _size(path: Path | None) -> int:
    return path.stat().st_size if path is not None else 0
