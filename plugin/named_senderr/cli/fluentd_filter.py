"""``named-senderr fluentd-filter``: the child process of Fluentd's ``out_exec_filter``.

Fluentd discards the child's stderr and parses everything on its stdout, so
this command logs to a file (or syslog) and keeps stdout for msgpack only: the
real stdout is moved to a private descriptor and fd 1 is pointed at stderr, so
that even a stray print cannot corrupt the stream.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import sys
from pathlib import Path

from named_senderr.config import FORMATS
from named_senderr.errors import ConfigError, NamedSenderrError
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser
from named_senderr.sources.exec_filter import (
    IN_FORMATS,
    NON_MATCHING,
    ExecFilter,
    RecordParser,
    renderer,
    run_exec_filter,
)

DEFAULT_KEYS = ("message", "log")
SYSLOG_SOCKET = "/dev/log"

EPILOG = """\
input and output:
  stdin   records from Fluentd: concatenated msgpack maps (<format> @type msgpack),
          or one JSON object per line with --in-format json
  stdout  msgpack maps only (<parse> @type msgpack): one event record per send
          error; with --non-matching pass, other records unchanged; rejected
          candidate lines unchanged plus a "named_senderr_error" field
  log     --log-file (default: %(default_log)s), never stdout or stderr:
          bad records, rejected lines and a summary every --stats-interval s

exit status: 0 on end of input, SIGTERM or SIGINT; 2 on bad usage.
A bad record never stops the filter; it is counted and logged.

Fluentd (see conf/fluentd/exec-filter.conf):
  <match named.**>
    @type exec_filter
    command named-senderr fluentd-filter --key message
    <format>
      @type msgpack
    </format>
    <parse>
      @type msgpack
    </parse>
    tag named.send_error
  </match>
"""


def default_log_file() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "named-senderr" / "fluentd-filter.log"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "fluentd-filter",
        help="run as Fluentd's exec_filter child (msgpack on stdin and stdout)",
        description="Turn records from Fluentd's out_exec_filter into send-error event records.",
        epilog=EPILOG % {"default_log": default_log_file()},
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--key",
        action="append",
        metavar="KEY",
        help="record field holding the log line; repeat to try several in order (default: message, then log)",
    )
    parser.add_argument("--in-format", choices=IN_FORMATS, default="msgpack", help="input records (default: msgpack)")
    parser.add_argument("--format", choices=FORMATS, default="flat", help="event record shape (default: flat)")
    parser.add_argument(
        "--non-matching",
        choices=NON_MATCHING,
        default="drop",
        help="records that are not send errors: drop them, or pass them through unchanged (default: drop)",
    )
    parser.add_argument("--timezone", metavar="TZ", help="zone of times logged without one (default: local)")
    parser.add_argument("--host", metavar="NAME", help="host for lines and records that carry none")
    parser.add_argument(
        "--log-file", metavar="PATH", help="where to log, or 'syslog' for /dev/log (default: see below)"
    )
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    parser.add_argument(
        "--max-record-size",
        type=int,
        default=1024 * 1024,
        metavar="BYTES",
        help="larger input records are dropped and counted; also what a lying length header can cost (default: 1 MiB)",
    )
    parser.add_argument(
        "--stats-interval",
        type=float,
        default=300.0,
        metavar="S",
        help="log the counters every S seconds (default: 300)",
    )
    parser.set_defaults(run=run)


def setup_logging(target: str | None, level: str) -> logging.Logger:
    log = logging.getLogger("named_senderr.fluentd_filter")
    log.setLevel(level.upper())
    log.propagate = False
    if target == "syslog":
        if not Path(SYSLOG_SOCKET).exists():  # SysLogHandler would only complain at the first message
            raise ConfigError(f"--log-file syslog: cannot reach {SYSLOG_SOCKET} (no syslog daemon?); give a file path")
        handler: logging.Handler = logging.handlers.SysLogHandler(address=SYSLOG_SOCKET)
        handler.setFormatter(logging.Formatter("named-senderr[%(process)d]: fluentd-filter: %(message)s"))
    else:
        path = Path(target) if target else default_log_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--log-file {path}: cannot open it ({exc.strerror}); give a writable path") from exc
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s fluentd-filter[%(process)d]: %(message)s"))
    log.addHandler(handler)
    return log


def private_stdout() -> int:
    """A private copy of stdout for the data; fd 1 and sys.stdout then point at stderr."""
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out_fd


def stop_pipe() -> int:
    """A descriptor that becomes readable on SIGTERM or SIGINT, for the select loop."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)  # the wakeup byte does the work
    return read_fd


def run(args: argparse.Namespace) -> int:
    if args.max_record_size < 1024:
        raise ConfigError(f"--max-record-size {args.max_record_size} is too small; give at least 1024 bytes")
    log = setup_logging(args.log_file, args.log_level)
    out_fd = private_stdout()
    try:
        zone = resolve_zone(args.timezone)
        records = RecordParser(NamedLineParser(TimestampNormalizer(zone)), tuple(args.key or DEFAULT_KEYS), args.host)
    except NamedSenderrError as exc:
        log.error("cannot start: %s", exc)
        raise
    filter_ = ExecFilter(
        records,
        renderer(args.format),
        log,
        in_format=args.in_format,
        non_matching=args.non_matching,
        max_record_bytes=args.max_record_size,
    )
    log.info(
        "started: keys %s, %s in, %s out, non-matching records %s",
        ", ".join(records.keys),
        args.in_format,
        args.format,
        "passed" if args.non_matching == "pass" else "dropped",
    )
    try:
        why = run_exec_filter(filter_, sys.stdin.fileno(), out_fd, stop_pipe(), args.stats_interval)
    except BrokenPipeError:
        why = "Fluentd closed our stdout"
    log.info("stopped (%s): %s", why, filter_.stats.summary())
    return 0
