"""``named-senderr ship``: log lines in, events stored in Elasticsearch, OpenSearch, Loki or stdout."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from named_senderr.cli.options import add_delivery_options, delivery_overrides
from named_senderr.cli.parse import sample_path, tell_if_reading_a_terminal
from named_senderr.engine.shipping import ShipResult, run_ship
from named_senderr.settings.loading import URL_FORMS, load_ship_config

EXIT_OK, EXIT_INPUT_ERROR, EXIT_DEAD_LETTERED, EXIT_SINK_FAILED = 0, 1, 3, 4
Report = Callable[[ShipResult], None]

EPILOG = f"""\
sinks (--to, repeatable; replaces the [[sinks]] of --config):
  {URL_FORMS}
  settings ride in the query string or in the TOML file, e.g.
  loki+https://loki:3100?tenant=dns&ca_file=/etc/ssl/loki-ca.pem
  elasticsearch+https://es:9200/named-senderr?username=shipper&password_env=ES_PASSWORD
  victorialogs+http://vl:9428?job=named-senderr&tenant=12:0&format=flat
  secrets never go in a URL or a file of settings: name the variable (*_env) or file (*_file)
  loki+http://HOST:9428/insert is VictoriaLogs' Loki endpoint: the line's fields become its fields,
  _msg_field=FIELD names the message (default there: message), tenant=ACCOUNT[:PROJECT] (numbers);
  it cannot be asked what it kept, so a batch cut off by a crash or a lost answer may be stored twice

output:
  stderr  a live line on a terminal, then per sink: sent, already stored, retried, dead-lettered
  stdout  only with the stdout: sink

exit status:
  0  every event was stored
  1  an input could not be read, or damaged records in the queue were skipped (the rest was shipped)
  2  bad usage or configuration (nothing was sent)
  3  some events were refused for good: see the dead-letter file, one JSON line each with the reason
  4  a sink failed permanently (credentials, URL, retries exhausted); run the same command again
     to resume: events already stored are not stored twice (VictoriaLogs, which keeps every copy:
     only with --queue-dir, whose cursor resumes where the last run stopped)

searchable (Elasticsearch, OpenSearch):
  a ship that ends (no --follow) refreshes the index it wrote: a query right after it sees every
  event; --follow, tail, listen and serve leave it to the index's refresh_interval (5 s in the
  template that `named-senderr setup elasticsearch` installs)

examples:
  named-senderr ship --sample --to stdout:
  named-senderr ship /var/log/named/named.log --to elasticsearch+http://127.0.0.1:9200/named-senderr
  named-senderr ship named.log named.log.1.gz --to loki+http://127.0.0.1:3100 --host ns1
  named-senderr ship --config /etc/named-senderr.toml
  named-senderr ship --follow '/var/log/named/*.log' --queue-dir /var/lib/named-senderr/queue \
      --to elasticsearch+http://127.0.0.1:9200/named-senderr --metrics 9108

disk queue (--queue-dir, or [queue] dir, max_bytes, when_full, shutdown_timeout in the TOML file):
  events are written and fsync'd to the queue before any sink sees them and leave it only once
  every sink stored them; with --follow the file checkpoint (DIR/tail-checkpoint.json) moves only
  after that. SIGTERM/SIGINT: reading stops, sinks get --shutdown-timeout s to catch up, the rest
  waits in the queue for the next start (exit 0). A full queue, or a disk that refuses the write
  (full, I/O error), holds reading back until it takes events again (--when-full drop: drops,
  counted and warned). Damaged queue records are skipped, reported with where and how many bytes.
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "ship",
        help="send events to Elasticsearch, OpenSearch or Loki",
        description="Parse named log lines (files, gzip'd rotations, or - for stdin) and ship the "
        "send-error events, batched, compressed and retried, to one or more sinks.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="*", metavar="FILE", help="log files, plain or gzip; '-' reads stdin (default)")
    parser.add_argument("--sample", action="store_true", help="ship the bundled sample named log")
    parser.add_argument("--timezone", metavar="TZ", help="zone of times logged without one (default: this machine's)")
    parser.add_argument("--host", metavar="NAME", help="host name for lines that carry none")
    parser.add_argument("--rejects", type=Path, metavar="FILE", help="write rejected candidate lines here")
    parser.add_argument("--no-progress", action="store_true", help="no live line, even on a terminal")
    parser.add_argument("--follow", action="store_true", help="follow FILE globs across rotation (needs --queue-dir)")
    parser.add_argument("--read-from-head", action="store_true", help="with --follow: read files found at start from 0")
    add_delivery_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    inputs = list(args.inputs) + ([sample_path()] if args.sample else [])
    overrides = {
        "inputs": tuple(inputs) or None,
        "timezone": args.timezone,
        "host": args.host,
        "rejects": args.rejects,
        "progress": False if args.no_progress else None,
        "follow": args.follow or None,
        "read_from_head": args.read_from_head or None,
        **delivery_overrides(args),
    }
    config = load_ship_config(args.config, args.to, overrides)
    if not config.follow:
        tell_if_reading_a_terminal(list(config.inputs))
    with stop_on_signals(config.queue.dir is not None) as stop:
        return deliver(config.progress, lambda warn, report: run_ship(config, warn, report, stop=stop))


@contextlib.contextmanager
def stop_on_signals(install: bool) -> Iterator[threading.Event]:
    """SIGTERM/SIGINT set the event (reading stops, the queue keeps the rest); the old handlers come back after."""
    stop = threading.Event()
    if not install or threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def deliver(progress: bool, execute: Callable[[Callable[[str], None], Report | None], ShipResult]) -> int:
    """Around one delivering run (``execute(warn, report)``): warnings, the live line, the summary, the exit status."""
    live = progress and sys.stderr.isatty()
    started = time.perf_counter()
    result = execute(
        lambda message: print(
            f"\r\x1b[Knamed-senderr: {message}" if live else f"named-senderr: {message}", file=sys.stderr
        ),
        (lambda r: print(f"\r\x1b[K{progress_line(r)}", end="", file=sys.stderr, flush=True)) if live else None,
    )
    if live:
        print("\r\x1b[K", end="", file=sys.stderr)
    print(format_summary(result, time.perf_counter() - started), file=sys.stderr)
    return exit_status(result)


def exit_status(result: ShipResult) -> int:
    if result.queue is not None and result.queue.damaged_bytes:
        return EXIT_INPUT_ERROR  # events were lost to damage in the queue: never a plain success
    if result.signalled and not result.dead_lettered:
        return EXIT_OK  # stopped on request; what was not delivered waits in the queue
    if result.failures:
        return EXIT_SINK_FAILED
    if result.dead_lettered:
        return EXIT_DEAD_LETTERED
    return EXIT_INPUT_ERROR if result.stats.unreadable_inputs else EXIT_OK


def progress_line(result: ShipResult) -> str:
    parts = [f"named-senderr: {result.stats.events:,} events read"]
    for name, c in result.sinks.items():
        parts.append(
            f"{name}: {c.sent + c.duplicates:,} sent, {c.retried:,} retried, {c.dead_lettered:,} dead-lettered"
        )
    return " | ".join(parts)


def format_summary(result: ShipResult, elapsed: float) -> str:
    stats = result.stats
    rate = stats.events / elapsed if elapsed > 0 else 0.0
    lines = [
        f"named-senderr: {stats.events:,} events from {stats.lines:,} lines of {stats.inputs} input(s) "
        f"in {elapsed:.2f} s ({rate:,.0f} events/s)",
        *delivery_summary(result),
    ]
    if stats.rejected:
        lines.append(f"named-senderr: {stats.rejected:,} candidate line(s) rejected; --rejects FILE keeps them")
    return "\n".join(lines)


def delivery_summary(result: ShipResult) -> list[str]:
    """Per sink what it took, then what failed, was dead-lettered, dropped, damaged or still waits in the queue."""
    lines: list[str] = []
    width = max((len(name) for name in result.sinks), default=0)
    for name, c in result.sinks.items():
        lines.append(
            f"  {name:<{width}}  sent {c.sent + c.duplicates:,} ({c.duplicates:,} already stored), "
            f"retried {c.retried:,}, dead-lettered {c.dead_lettered:,}"
        )
    for failure in result.failures:
        lines.append(f"named-senderr: {failure}")
    if result.failures:
        stopped = "reading stopped early; " if result.stopped else ""
        lines.append(
            f"named-senderr: {stopped}fix the cause and run the same command again: "
            "events already stored are not stored twice"
        )
    if result.dead_lettered:
        lines.append(
            f"named-senderr: {result.dead_lettered:,} event(s) written to {result.dead_letter}, "
            "one JSON line each with the server's reason"
        )
    for name, c in result.sinks.items():
        if c.undelivered:
            lines.append(f"named-senderr: {undelivered(name, c.undelivered)}")
    queue = result.queue
    if queue is not None and queue.dropped:
        lines.append(f"named-senderr: {queue.dropped:,} event(s) dropped because the queue was full (--when-full drop)")
    if queue is not None and queue.damaged_bytes:
        lines.append(
            f"named-senderr: {queue.damaged_bytes:,} damaged byte(s) of the queue skipped or cut; their events are "
            "lost (where: see the warnings above)"
        )
    if queue is not None and any(queue.pending.values()):
        waiting = ", ".join(name for name, pending in queue.pending.items() if pending)
        lines.append(f"named-senderr: events for {waiting} wait in the queue; the next start delivers them")
    return lines


def undelivered(name: str, count: int) -> str:
    """What a shutdown without a disk queue left undelivered, and where those events still are."""
    return (f"{count:,} event(s) not delivered to {name}: the shutdown timeout ended its retries; their input "
            "was not acknowledged (a checkpoint stays before them, a Forward sender sends them again)")  # fmt: skip
