"""``named-senderr tail``: follow named's logs across rotation; NDJSON events on stdout, or any ``--to`` sink.

Runs until SIGTERM or SIGINT (or a sink failing for good). The pipeline is
engine/streaming.py's: followed files -> parse, privacy, rollup -> stdout, the
sinks, or the disk queue first; the checkpoint moves only once the events are
durably held there.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from named_senderr.cli.options import add_delivery_options, delivery_overrides
from named_senderr.cli.parse import format_summary
from named_senderr.cli.ship import delivery_summary, exit_status
from named_senderr.engine.shipping import CHECKPOINT, ShipResult
from named_senderr.engine.streaming import PRINT_EVERY, run_tail
from named_senderr.settings.loading import load_ship_config
from named_senderr.settings.parse import FORMATS
from named_senderr.settings.ship import ShipConfig
from named_senderr.sources.file_tail import TailConfig

EPILOG = f"""\
Files present at the first start are followed from their end (--read-from-head:
from their start); files that appear later, also while tail was stopped, are
read from their start, and every file named in the checkpoint from where it
was left. Rotation by rename and by copytruncate are both followed, also
across a restart; gzip'd rotations are skipped (use 'parse'). A checkpoint
whose folder is missing gets one; a checkpoint that is a symbolic link is
refused unless --allow-checkpoint-symlink.

where events go:
  stdout  without --to: each write of at most {PRINT_EVERY} events is flushed before the
          checkpoint moves past its lines; after SIGTERM/SIGINT a restart with the same
          --checkpoint resumes right after the last event printed, after a kill -9 it
          prints at most {PRINT_EVERY} events again
  --to    the sinks ('ship --help' lists the URLs): the checkpoint moves once they stored
          the events; with --queue-dir once the events are fsync'd to the queue (the
          checkpoint is then DIR/{CHECKPOINT} unless --checkpoint names one)

examples:
  named-senderr tail '/var/log/named/*.log' --checkpoint /var/lib/named-senderr/tail.json
  named-senderr tail /var/log/named/send-errors.log --format flat --read-from-head
  named-senderr tail '/var/log/named/*.log' --queue-dir /var/lib/named-senderr/queue \\
      --to elasticsearch+http://127.0.0.1:9200/named-senderr --metrics 9108
"""


def add_event_options(parser: argparse.ArgumentParser) -> None:
    """The options every streaming command shares with ``parse``."""
    parser.add_argument("--format", choices=FORMATS, default="ecs", help="event shape on stdout (default: ecs)")
    parser.add_argument("--timezone", metavar="TZ", help="zone of times logged without one (default: this machine's)")
    parser.add_argument("--host", metavar="NAME", help="host name for lines that carry none")
    parser.add_argument("--rejects", type=Path, metavar="FILE", help="append rejected candidate lines here as NDJSON")
    parser.add_argument("--stats", action="store_true", help="print a summary on stderr when stopped")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "tail",
        help="follow log files across rotation, NDJSON events on stdout or to any sink",
        description="Follow named log files (globs), across rename and copytruncate rotation, until SIGTERM/SIGINT.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("globs", nargs="+", metavar="GLOB", help="files or globs; quote globs so new files are found")
    parser.add_argument("--checkpoint", type=Path, metavar="FILE", help="where to keep offsets (JSON) across restarts")
    parser.add_argument(
        "--allow-checkpoint-symlink", action="store_true", help="write through a --checkpoint that is a symbolic link"
    )
    parser.add_argument("--read-from-head", action="store_true", help="read files found at the first start from 0")
    parser.add_argument("--poll-interval", type=float, default=0.25, metavar="S", help="seconds between looks")
    parser.add_argument("--rotate-wait", type=float, default=5.0, metavar="S", help="read a rotated file this long")
    add_event_options(parser)
    add_delivery_options(parser)
    parser.set_defaults(run=run)


def stream_config(args: argparse.Namespace) -> ShipConfig:
    """The delivery options as a configuration; no sink named (no --to, none in --config): stdout in --format."""
    overrides = {"timezone": args.timezone, "host": args.host, "rejects": args.rejects, **delivery_overrides(args)}
    return load_ship_config(args.config, args.to, overrides, default_urls=(f"stdout:?format={args.format}",))


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: reading ends between batches, never inside one."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def warn(message: str) -> None:
    print(f"named-senderr: {message}", file=sys.stderr, flush=True)


def summarize(args: argparse.Namespace, result: ShipResult, elapsed: float, inputs: str, details: str = "") -> int:
    """The summary on stderr (reading with --stats; delivery always), and the exit status ``ship`` would give."""
    if args.stats:
        print(format_summary(result.stats, elapsed, inputs) + details, file=sys.stderr)
    for line in delivery_summary(result):
        print(line, file=sys.stderr)
    if result.stats.rejected and not args.stats and args.rejects is None:
        warn(f"{result.stats.rejected:,} candidate line(s) rejected; --rejects FILE keeps them, --stats shows why")
    return exit_status(result)


def run(args: argparse.Namespace) -> int:
    config = stream_config(args)
    default_checkpoint = config.queue.dir / CHECKPOINT if config.queue.dir is not None else None
    tail = TailConfig(
        globs=tuple(args.globs),
        checkpoint=args.checkpoint or default_checkpoint,
        poll_interval=args.poll_interval,
        rotate_wait=args.rotate_wait,
        read_from_head=args.read_from_head,
        allow_checkpoint_symlink=args.allow_checkpoint_symlink,
    )
    started = time.perf_counter()
    result = run_tail(config, tail, warn, stop_on_signals(), sys.stdout.buffer)
    inputs = f"{result.stats.inputs} file(s) followed through {len(tail.globs)} glob(s)"
    return summarize(args, result, time.perf_counter() - started, inputs)
