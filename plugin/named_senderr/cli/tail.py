"""``named-senderr tail``: follow named's logs across rotation, NDJSON events on stdout.

Runs until SIGTERM or SIGINT. Events go to stdout in writes of at most
PRINT_EVERY, each flushed before the checkpoint moves past its lines: after
SIGTERM or SIGINT a restart with the same ``--checkpoint`` resumes exactly
after the last line printed. A kill -9 that lands between a write and its
checkpoint (the time of one fsync) prints that write's events again: at most
PRINT_EVERY duplicates, since a write to a pipe and the rename of a file
cannot be made one atomic step.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson

from named_senderr.cli.parse import format_summary
from named_senderr.config import FORMATS
from named_senderr.engine.printing import ingest_now
from named_senderr.event import Event, to_ecs, to_flat
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import MAX_LINE_BYTES, NamedLineParser, Rejection
from named_senderr.sinks.stdout import NdjsonWriter
from named_senderr.sources.file_tail import FileTail, TailConfig
from named_senderr.telemetry import Stats

PRINT_EVERY = 256  # events per write to stdout; below NdjsonWriter's own batch, so it never writes on its own

EPILOG = """\
Files present at the first start are followed from their end (--read-from-head:
from their start); files that appear later, also while tail was stopped, are
read from their start, and every file named in the checkpoint from where it
was left. Rotation by rename and by copytruncate are both followed, also
across a restart; gzip'd rotations are skipped (use 'parse'). A checkpoint
whose folder is missing gets one; a checkpoint that is a symbolic link is
refused unless --allow-checkpoint-symlink.

examples:
  named-senderr tail '/var/log/named/*.log' --checkpoint /var/lib/named-senderr/tail.json
  named-senderr tail /var/log/named/send-errors.log --format flat --read-from-head
"""


@dataclass
class EventPrinter:
    """Raw lines in, NDJSON events out; rejections counted and, with a rejects stream, kept."""

    parser: NamedLineParser
    out: BinaryIO
    stats: Stats
    format: str = "ecs"
    host: str | None = None
    rejects: BinaryIO | None = None
    unflushed: int = field(default=0, init=False)  # events written since the last flush
    _writer: NdjsonWriter = field(init=False)
    _render: Callable[[Event], dict] = field(init=False)

    def __post_init__(self) -> None:
        self._writer = NdjsonWriter(self.out)
        if self.format == "flat":
            self._render = to_flat
        else:
            ingest_time = ingest_now()
            self._render = lambda event: to_ecs(event, ingest_time)

    def take(self, raw: bytes, file: str | None = None, offset: int | None = None, oversize: bool = False) -> None:
        if oversize or len(raw) > MAX_LINE_BYTES:
            text = raw[:MAX_LINE_BYTES].decode("utf-8", "backslashreplace")
            result: Event | Rejection | None = Rejection("line_too_long", f"over {MAX_LINE_BYTES} bytes", text)
        else:
            result = self.parser.parse_bytes(raw)
        if result is None:
            return
        self.stats.candidates += 1
        if isinstance(result, Event):
            result.file, result.offset = file, offset
            result.host = result.host or self.host
            self.stats.events_by_reason[result.reason] += 1
            self._writer.write(self._render(result))
            self.unflushed += 1
            return
        self.stats.rejected_by_reason[result.reason] += 1
        if self.rejects is not None:
            record = {"reason": result.reason, "detail": result.detail, "file": file, "offset": offset}
            self.rejects.write(orjson.dumps(record | {"line": result.line}, option=orjson.OPT_APPEND_NEWLINE))

    def flush(self) -> None:
        self._writer.flush()
        self.unflushed = 0
        if self.rejects is not None:
            self.rejects.flush()


def add_event_options(parser: argparse.ArgumentParser) -> None:
    """The options every streaming command shares with ``parse``."""
    parser.add_argument("--format", choices=FORMATS, default="ecs", help="event shape (default: ecs)")
    parser.add_argument("--timezone", metavar="TZ", help="zone of times logged without one (default: this machine's)")
    parser.add_argument("--host", metavar="NAME", help="host name for lines that carry none")
    parser.add_argument("--rejects", type=Path, metavar="FILE", help="append rejected candidate lines here as NDJSON")
    parser.add_argument("--stats", action="store_true", help="print a summary on stderr when stopped")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "tail",
        help="follow log files across rotation, NDJSON events on stdout",
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
    parser.set_defaults(run=run)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so the loop ends between batches, never inside one."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def warn(message: str) -> None:
    print(f"named-senderr: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    config = TailConfig(
        globs=tuple(args.globs),
        checkpoint=args.checkpoint,
        poll_interval=args.poll_interval,
        rotate_wait=args.rotate_wait,
        read_from_head=args.read_from_head,
        allow_checkpoint_symlink=args.allow_checkpoint_symlink,
    )
    stats = Stats(inputs=len(config.globs))
    parser = NamedLineParser(TimestampNormalizer(resolve_zone(args.timezone)))
    stop = stop_on_signals()
    rejects = open(args.rejects, "ab") if args.rejects else None  # noqa: SIM115 - closed below
    tail = FileTail(config, stats, warn)
    started = time.perf_counter()
    try:
        printer = EventPrinter(parser, sys.stdout.buffer, stats, args.format, args.host, rejects)
        while not stop.is_set():
            batch = tail.poll()
            for taken, line in enumerate(batch.lines, 1):
                printer.take(line.raw, line.path, line.offset, line.oversize)
                if printer.unflushed >= PRINT_EVERY:
                    printer.flush()
                    batch.commit_through(taken)
            printer.flush()
            batch.commit()
            if not batch.more:
                stop.wait(config.poll_interval)
    finally:
        tail.close()
        if rejects is not None:
            rejects.close()
    if args.stats:
        print(format_summary(stats, time.perf_counter() - started), file=sys.stderr)
    return 0
