"""``named-senderr serve``: Fluentd / Fluent Bit Forward frames -> the engine -> stdout or any sink.

The Forward receiver is the pipeline's source (sources/forward_server.py);
the transforms, the disk queue and the sinks are those of every command
(engine/shipping.py). Logs go to stderr; stdout carries events only.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from urllib.parse import quote

from named_senderr.cli.options import add_delivery_options, delivery_overrides
from named_senderr.cli.peer_options import add_peer_options, peer_limits
from named_senderr.cli.ship import exit_status, stop_on_signals, undelivered
from named_senderr.engine.shipping import ShipResult, new_result, run_pipeline
from named_senderr.errors import ConfigError
from named_senderr.protocol.fluent_forward import Limits
from named_senderr.settings.loading import URL_FORMS, load_ship_config
from named_senderr.settings.parse import FORMATS
from named_senderr.settings.ship import DEFAULT_TAG, ShipConfig
from named_senderr.sources.forward_server import DEFAULT_KEYS, ForwardServerConfig, ForwardSource
from named_senderr.sources.peers import PeerLimits

SHARED_KEY_ENV = "NAMED_SENDERR_SHARED_KEY"
KIB = 1024
MIB = 1024 * KIB

EPILOG = f"""\
input:
  Forward protocol v1 frames (Message, Forward, PackedForward, gzip), as sent by
  Fluentd's out_forward, Fluent Bit's forward output and fluent-logger. The log
  line is read from the first --key present; the record's host, host name or
  _HOSTNAME field is the event's host, and the entry's time is the event's time
  when the line has none. Then the same transforms as every command: parsing
  (rejected candidates counted, kept with --rejects), --client-ip, --qname, --rollup.

acknowledgements (frames asking for one with "chunk", as require_ack_response does):
  a chunk is acknowledged only once its events are durably held:
  with --queue-dir  once fsync'd in the queue (a kill -9 after the ack loses nothing);
  without           once every sink settled them: stored (or already there),
                    dead-lettered, or printed and flushed on stdout
  with --rollup     also only once the window holding them left (up to two windows:
                    keep it well below the sender's ack timeout, 190 s in Fluentd)
  A full pipeline (a slow sink, a full queue, a disk that refuses the write)
  refuses the chunk whole: no ack, the connection closes, the sender keeps the
  chunk and resends it; serve takes chunks again by itself once there is room.

output:
  stdout          one JSON event per line (default; --format ecs by default)
  --to URL        any sink (repeatable): {URL_FORMS}
  --to-forward    a Fluentd / Fluent Bit in_forward, the same as --to forward://HOST:PORT
                  (--format flat by default, --tag): a chunk is acknowledged once
                  the peer acknowledged the events (it must answer acks, as
                  Fluentd's and Fluent Bit's in_forward do)
  stderr          the log: listening address, refused connections, a summary

shared key (Fluentd <security>, Fluent Bit Shared_Key): --shared-key-file PATH,
or the environment variable {SHARED_KEY_ENV}, or --shared-key KEY (visible in ps).

examples:
  named-senderr serve                                    127.0.0.1:24224 -> stdout
  named-senderr serve --forward 0.0.0.0:24224 --shared-key-file /etc/named-senderr/key
  named-senderr serve --to elasticsearch+http://127.0.0.1:9200/named-senderr --queue-dir /var/lib/named-senderr
  named-senderr serve --to-forward 127.0.0.1:24225 --tag named.send_error --rollup 60s
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve",
        help="receive Forward frames (Fluentd, Fluent Bit) and emit events",
        description="Listen for Fluentd Forward protocol frames and turn their log lines into send-error events.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--forward", default="127.0.0.1:24224", metavar="HOST:PORT", help="where to listen (default: 127.0.0.1:24224)"
    )
    parser.add_argument(
        "--key",
        action="append",
        metavar="KEY",
        help="record field of the log line; repeatable (default: log, then message)",
    )
    parser.add_argument("--format", choices=FORMATS, help="event shape (default: ecs on stdout, flat to a Fluent peer)")
    parser.add_argument("--to-forward", metavar="HOST:PORT", help="send events to this Fluentd / Fluent Bit in_forward")
    parser.add_argument(
        "--tag", default=DEFAULT_TAG, help=f"tag of the events sent with --to-forward (default: {DEFAULT_TAG})"
    )
    parser.add_argument(
        "--shared-key", metavar="KEY", help=f"enable the handshake (prefer --shared-key-file or ${SHARED_KEY_ENV})"
    )
    parser.add_argument("--shared-key-file", type=Path, metavar="PATH", help="read the shared key from this file")
    parser.add_argument("--hostname", help="our name in the handshake (default: this machine's host name)")
    parser.add_argument("--timezone", metavar="TZ", help="zone of times logged without one (default: local)")
    parser.add_argument("--host", metavar="NAME", help="host for lines and records that carry none")
    parser.add_argument("--rejects", type=Path, metavar="FILE", help="write rejected candidate lines here (appended)")
    add_frame_options(parser)
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    add_delivery_options(parser)
    parser.set_defaults(run=run)


def add_frame_options(parser: argparse.ArgumentParser) -> None:
    """What one peer may make serve hold and decode: past a limit the frame is refused, the connection closed."""
    group = add_peer_options(parser, PeerLimits().max_connections)
    limits = Limits()
    group.add_argument("--max-frame-size", type=int, default=limits.max_frame_bytes // MIB, metavar="MIB",
                       help="largest frame accepted (default: %(default)s)")  # fmt: skip
    group.add_argument("--max-decompressed-size", type=int, default=limits.max_decompressed_bytes // MIB,
                       metavar="MIB", help="largest gunzipped frame (default: %(default)s)")  # fmt: skip
    group.add_argument("--max-entries", type=int, default=limits.max_entries, metavar="N",
                       help="entries in one frame (default: %(default)s)")  # fmt: skip
    group.add_argument("--max-entry-size", type=int, default=limits.max_entry_bytes // KIB, metavar="KIB",
                       help="largest entry of a frame (default: %(default)s)")  # fmt: skip


def parse_address(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{option} {text!r} is not HOST:PORT; e.g. 127.0.0.1:24224 or [::1]:24224")
    return host.strip("[]"), int(port)


def read_shared_key(args: argparse.Namespace) -> str | None:
    given = [
        name
        for name, value in (("--shared-key", args.shared_key), ("--shared-key-file", args.shared_key_file))
        if value
    ]
    if len(given) > 1:
        raise ConfigError("--shared-key and --shared-key-file are both given; keep one")
    if args.shared_key_file:
        try:
            key = args.shared_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"--shared-key-file {args.shared_key_file}: cannot read it ({exc.strerror})") from exc
        if not key:
            raise ConfigError(f"--shared-key-file {args.shared_key_file} is empty; write the key into it")
        return key
    return args.shared_key or os.environ.get(SHARED_KEY_ENV) or None


def build(args: argparse.Namespace) -> tuple[ForwardServerConfig, ShipConfig, bool]:
    """The receiver's settings, the pipeline's, and whether events print straight onto stdout (no sink named)."""
    host, port = parse_address(args.forward, "--forward")
    server = ForwardServerConfig(
        host=host,
        port=port,
        keys=tuple(args.key or DEFAULT_KEYS),
        shared_key=read_shared_key(args),
        limits=Limits(
            max_frame_bytes=args.max_frame_size * MIB,
            max_decompressed_bytes=args.max_decompressed_size * MIB,
            max_entries=args.max_entries,
            max_entry_bytes=args.max_entry_size * KIB,
        ),
        peers=peer_limits(args),
        **({"self_hostname": args.hostname} if args.hostname else {}),
    )
    if args.to and args.to_forward:
        raise ConfigError("--to and --to-forward are both given; choose one output")
    if args.when_full == "drop":
        raise ConfigError("--when-full drop does not apply to serve: a full queue withholds the ack and the "
                          "sender keeps the chunk; remove the option")  # fmt: skip
    urls = list(args.to)
    if args.to_forward:
        peer_host, peer_port = parse_address(args.to_forward, "--to-forward")
        shown = f"[{peer_host}]" if ":" in peer_host else peer_host
        urls = [f"forward://{shown}:{peer_port}?tag={quote(args.tag, safe='')}&format={args.format or 'flat'}"]
    printing = not urls and args.config is None
    if printing:
        urls = [f"stdout:?format={args.format or 'ecs'}"]
    overrides = {"timezone": args.timezone, "host": args.host, "rejects": args.rejects, **delivery_overrides(args)}
    return server, load_ship_config(args.config, urls, overrides), printing


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(stream=sys.stderr, format="named-senderr serve: %(levelname)s %(message)s")
    log = logging.getLogger("named_senderr.serve")
    log.setLevel(args.log_level.upper())
    server, config, printing = build(args)
    result = new_result(config)
    source = ForwardSource(server, result.stats, log)
    with stop_on_signals(True) as stop:
        run_pipeline([source], config, result, log.warning, stop=stop, endless=True,
                     stream=sys.stdout.buffer if printing else None)  # fmt: skip
    log_summary(result, log)
    return exit_status(result)


def log_summary(result: ShipResult, log: logging.Logger) -> None:
    """Per sink what became of the events; what a restart will deliver from the queue; rejected candidates."""
    pending = result.queue.pending if result.queue is not None else {}
    for name, c in result.sinks.items():
        log.info(
            "%s sent %d, already stored %d, retried %d, dead-lettered %d%s%s",
            name, c.sent, c.duplicates, c.retried, c.dead_lettered,
            f", failed: {c.failed}" if c.failed else "", ", the rest stays queued" if pending.get(name) else "",
        )  # fmt: skip
        if c.undelivered:
            log.warning("%s", undelivered(name, c.undelivered))
    if result.dead_lettered:
        log.warning("%d event(s) written to %s, one JSON line each with the reason", result.dead_lettered,
                    result.dead_letter)  # fmt: skip
    if result.stats.rejected:
        log.warning("%d candidate line(s) rejected; --rejects FILE keeps them", result.stats.rejected)
