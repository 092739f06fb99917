"""``named-senderr parse``: log lines in, NDJSON events out, a summary on stderr."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from named_senderr.cli.options import add_privacy_options, rollup_window
from named_senderr.cli.progress import progress_factory
from named_senderr.engine.printing import run_parse
from named_senderr.settings.parse import FORMATS, ParseConfig
from named_senderr.sources.files import SAMPLE_LOG
from named_senderr.telemetry import Stats

EPILOG = """\
output:
  stdout  one JSON event per line (ECS for Elasticsearch, or flat)
  stderr  warnings; with --stats a summary: lines read, events by reason,
          rejected candidates by cause, undecodable and over-long lines

exit status:
  0  every input was read (rejected lines do not change this)
  1  an input could not be opened or read (the others were still parsed)
  2  bad usage, e.g. an unknown --timezone

examples:
  named-senderr parse --sample --stats
  named-senderr parse /var/log/named/named.log /var/log/named/named.log.1.gz
  journalctl -u named -o json | named-senderr parse - --format flat
  named-senderr parse named.log --timezone Europe/Berlin --rejects rejects.ndjson
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "parse",
        help="parse log files to NDJSON events",
        description="Parse named log lines (files, gzip'd rotations, or - for stdin) into send-error events.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="*", metavar="FILE", help="log files, plain or gzip; '-' reads stdin (default)")
    parser.add_argument("--sample", action="store_true", help="parse the bundled sample named log")
    parser.add_argument("--format", choices=FORMATS, default="ecs", help="event shape (default: ecs)")
    parser.add_argument(
        "--timezone",
        metavar="TZ",
        help="zone of times logged without one, e.g. Europe/Berlin or UTC (default: this machine's zone)",
    )
    parser.add_argument("--host", metavar="NAME", help="host name for lines that carry none (default: none)")
    parser.add_argument("--stats", action="store_true", help="print a summary on stderr at the end")
    parser.add_argument(
        "--rejects", type=Path, metavar="FILE", help="write rejected candidate lines here, as NDJSON with the cause"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    add_privacy_options(parser)
    parser.set_defaults(run=run)


def sample_path() -> str:
    return str(SAMPLE_LOG)


def tell_if_reading_a_terminal(inputs: list[str]) -> None:
    """Reading stdin from a terminal waits for typed lines: say so, or it looks like a hang."""
    if (not inputs or "-" in inputs) and sys.stdin.isatty():
        print(
            "named-senderr: reading named log lines from the terminal (stdin); end with Ctrl-D, "
            "or name a FILE (--sample: the bundled log)",
            file=sys.stderr,
            flush=True,
        )


def run(args: argparse.Namespace) -> int:
    inputs = list(args.inputs) + ([sample_path()] if args.sample else [])
    tell_if_reading_a_terminal(inputs)
    config = ParseConfig(
        inputs=tuple(inputs or ["-"]),
        format=args.format,
        timezone=args.timezone,
        host=args.host,
        stats=args.stats,
        rejects=args.rejects,
        progress=not args.no_progress,
        client_ip=args.client_ip,
        qname=args.qname,
        rollup=rollup_window(args),
        count_lines=args.stats,
    )
    started = time.perf_counter()
    stats = run_parse(
        config,
        sys.stdout.buffer,
        warn=lambda message: print(f"named-senderr: {message}", file=sys.stderr),
        progress=progress_factory() if config.progress else None,
    )
    elapsed = time.perf_counter() - started
    if config.stats:
        print(format_summary(stats, elapsed), file=sys.stderr)
    elif stats.rejected and config.rejects is None:
        print(
            f"named-senderr: {stats.rejected} candidate line(s) rejected; --rejects FILE keeps them, --stats shows why",
            file=sys.stderr,
        )
    return 1 if stats.unreadable_inputs else 0


def format_summary(stats: Stats, elapsed: float, inputs: str = "") -> str:
    """``inputs`` says what was read where "N input(s)" would not (files of globs, syslog endpoints)."""
    rate = stats.lines / elapsed if elapsed > 0 else 0.0
    inputs = inputs or f"{stats.inputs} input(s)"
    lines = [
        f"named-senderr: {stats.lines:,} lines ({stats.bytes / 1_048_576:.1f} MiB) from {inputs} "
        f"in {elapsed:.2f} s ({rate:,.0f} lines/s)",
        f"  events              {stats.events:,}",
    ]
    lines += [f"    {reason:<18}{count:,}" for reason, count in stats.events_by_reason.most_common()]
    lines.append(f"  rejected candidates {stats.rejected:,}")
    lines += [f"    {reason:<18}{count:,}" for reason, count in stats.rejected_by_reason.most_common()]
    lines.append(f"  undecodable lines   {stats.undecodable_lines:,} (kept, invalid bytes escaped)")
    lines.append(f"  lines over 64 KiB   {stats.oversize_lines:,} (counted, not parsed)")
    if stats.unreadable_inputs:
        lines.append(f"  unreadable inputs   {stats.unreadable_inputs}")
    return "\n".join(lines)
