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
import socket
import sys
import threading
from pathlib import Path

from named_senderr.cli.options import add_delivery_options, delivery_overrides
from named_senderr.engine.filtering import DEFAULT_KEYS, FilterConfig, run_fluentd_filter
from named_senderr.errors import ConfigError, NamedSenderrError
from named_senderr.settings.parse import FORMATS
from named_senderr.sources.exec_filter import IN_FORMATS, NON_MATCHING, TAG_FIELD

SYSLOG_SOCKET = "/dev/log"
EXIT_SINK_FAILED = 4
SINK_ONLY = {"dead_letter": "--dead-letter", "metrics": "--metrics", "queue.dir": "--queue-dir",
             "queue.max_bytes": "--queue-max-bytes", "queue.when_full": "--when-full",
             "queue.shutdown_timeout": "--shutdown-timeout"}  # fmt: skip

EPILOG = """\
input and output:
  stdin   records from Fluentd: concatenated msgpack maps (<format> @type msgpack),
          or one JSON object per line with --in-format json
  stdout  msgpack maps only (<parse> @type msgpack), written and flushed after each
          chunk: one event record per send error (after --client-ip, --qname and
          --rollup); with --non-matching pass, other records unchanged in their place
  --to    URL: the events go to that store instead, as `ship` sends them (retries,
          --dead-letter, --queue-dir for a disk queue, --metrics); stdout then
          carries only the records passed back
  log     --log-file (default: %(default_log)s), never stdout:
          bad records, rejected lines and a summary every --stats-interval s; if it
          cannot be opened, stderr and syslog (/dev/log, where there is one) instead

rejected candidates (a send-error phrase, but not a line that parses: over 64 KiB,
NUL bytes, a bad port, ...) are counted, logged and written to --rejects FILE; they
never come back under the event tag. --rejected-tag TAG passes each back unchanged,
plus "named_senderr_error" (reason, detail) and "%(tag_field)s": TAG, which
Fluentd turns into the record's tag with <extract> tag_key %(tag_field)s.
An input record longer than --max-record-size is stepped over whole (its msgpack
header gives its length), counted and logged; the next record is read where it starts.

exit status: 0 on end of input, SIGTERM or SIGINT; 2 on bad usage; 4 when a --to sink
failed for good (Fluentd's respawn of the child then tries again).
A bad record never stops the filter; it is counted and logged.

Fluentd (see conf/fluentd/exec-filter.conf):
  <match named.**>
    @type exec_filter
    command named-senderr fluentd-filter --key message --rejected-tag named.rejected
    tag named.send_error
    <format>
      @type msgpack
    </format>
    <parse>
      @type msgpack
    </parse>
    <extract>
      tag_key %(tag_field)s
    </extract>
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
        epilog=EPILOG % {"default_log": default_log_file(), "tag_field": TAG_FIELD},
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
    parser.add_argument("--rejects", type=Path, metavar="FILE", help="append rejected candidate lines here (NDJSON)")
    parser.add_argument(
        "--rejected-tag",
        metavar="TAG",
        help=f"pass rejected candidates back under this tag (in {TAG_FIELD}); default: never pass them back",
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
        help="larger input records are stepped over whole, counted and logged (default: 1 MiB)",
    )
    parser.add_argument(
        "--stats-interval",
        type=float,
        default=300.0,
        metavar="S",
        help="log the counters every S seconds (default: 300)",
    )
    add_delivery_options(parser)
    parser.set_defaults(run=run)


def setup_logging(target: str | None, level: str, syslog_socket: str = SYSLOG_SOCKET) -> logging.Logger:
    """The log file (or syslog); one that cannot be opened falls back to stderr and syslog, and says why.

    Exiting instead would make Fluentd respawn the child again and again, with the reason on a stderr
    that Fluentd discards.
    """
    log = logging.getLogger("named_senderr.fluentd_filter")
    log.setLevel(level.upper())
    log.propagate = False
    for old in list(log.handlers):
        log.removeHandler(old)
    try:
        log.addHandler(syslog_handler(syslog_socket) if target == "syslog" else file_handler(target))
    except ConfigError as exc:
        log.addHandler(logging.StreamHandler(sys.stderr))
        log.handlers[-1].setFormatter(logging.Formatter("named-senderr fluentd-filter[%(process)d]: %(message)s"))
        where = "stderr"
        try:
            log.addHandler(syslog_handler(syslog_socket))
            where += f" and syslog ({syslog_socket})"
        except ConfigError:
            pass
        log.error("%s; logging to %s instead, and filtering goes on", exc, where)
    return log


def file_handler(target: str | None) -> logging.Handler:
    path = Path(target) if target else default_log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--log-file {path}: cannot open it ({exc.strerror}); give a writable path") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s fluentd-filter[%(process)d]: %(message)s"))
    return handler


def syslog_handler(socket_path: str) -> logging.Handler:
    if not _listening(socket_path):  # SysLogHandler would only complain at each message
        raise ConfigError(f"--log-file syslog: cannot reach {socket_path} (no syslog daemon?); give a file path")
    handler = logging.handlers.SysLogHandler(address=socket_path)
    handler.setFormatter(logging.Formatter("named-senderr[%(process)d]: fluentd-filter: %(message)s"))
    return handler


def _listening(socket_path: str) -> bool:
    """A syslog daemon reads ``socket_path`` (datagrams, or a stream as some daemons take)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, kind) as probe:
            try:
                probe.connect(socket_path)
            except OSError:
                continue
            return True
    return False


def private_stdout() -> int:
    """A private copy of stdout for the data; fd 1 and sys.stdout then point at stderr."""
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out_fd


def stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT end reading; what was read is written out first, then the filter exits 0."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def run(args: argparse.Namespace) -> int:
    log = setup_logging(args.log_file, args.log_level)
    try:
        config = filter_config(args)
        stop = stop_on_signals()
        log.info(
            "started: keys %s, %s in, %s out, non-matching records %s, rejected candidates %s",
            ", ".join(config.keys),
            config.in_format,
            ", ".join(s.name for s in config.ship.sinks) if config.ship else f"{config.format} on stdout",
            "passed" if config.non_matching == "pass" else "dropped",
            f"passed under tag {config.rejected_tag}" if config.rejected_tag else "not passed on",
        )
        result = run_fluentd_filter(config, sys.stdin.fileno(), private_stdout(), log, stop)
    except NamedSenderrError as exc:
        log.error("cannot start: %s", exc)
        raise
    log.info("stopped (%s): %s", result.ended, result.summary())
    for failure in result.failures:
        log.error("%s; Fluentd's next respawn of the filter tries again", failure)
    return EXIT_SINK_FAILED if result.failures else 0


def filter_config(args: argparse.Namespace) -> FilterConfig:
    """The options as one checked configuration; with --to (or --config) a shipping one inside it."""
    delivery = delivery_overrides(args)
    ship = None
    if args.to or args.config:
        from named_senderr.settings.loading import load_ship_config

        overrides = {"timezone": args.timezone, "host": args.host, "rejects": args.rejects, **delivery}
        ship = load_ship_config(args.config, args.to, overrides)  # privacy, rollup and rejects are its own then
    elif given := [option for key, option in SINK_ONLY.items() if delivery[key] is not None]:
        raise ConfigError(f"{', '.join(given)}: only with --to URL; without it the events are answered on stdout")
    own, rollup = ship is None, delivery["rollup"]
    assert rollup is None or isinstance(rollup, float)
    return FilterConfig(
        keys=tuple(args.key or DEFAULT_KEYS),
        in_format=args.in_format,
        format=args.format,
        non_matching=args.non_matching,
        rejected_tag=args.rejected_tag,
        timezone=args.timezone,
        host=args.host,
        rejects=args.rejects if own else None,
        max_record_bytes=args.max_record_size,
        stats_interval=args.stats_interval,
        client_ip=args.client_ip if own else None,
        qname=args.qname if own else None,
        rollup=rollup if own else None,
        ship=ship,
    )
