"""Command-line options shared by several subcommands, kept free of heavy imports."""

from __future__ import annotations

import argparse
from pathlib import Path

DEAD_LETTER = "named-senderr-dead-letter.ndjson"  # settings.ship.DEFAULT_DEAD_LETTER, without importing the settings


def add_privacy_options(parser: argparse.ArgumentParser) -> None:
    """Privacy and rollup (normalize/privacy.py, normalize/rollup.py): applied before any output sees an event."""
    group = parser.add_argument_group("privacy and rollup (applied before anything leaves the host)")
    group.add_argument("--client-ip", metavar="MODE", help="truncate:/24,/56, or hash:KEYFILE / hash:env:VAR (HMAC)")
    group.add_argument("--qname", metavar="MODE", help="drop, hash[:KEYFILE], or suffix:N (keep the last N labels)")
    group.add_argument("--rollup", metavar="WINDOW", help="one event per server x reason x network x WINDOW (e.g. 60s)")


def add_delivery_options(parser: argparse.ArgumentParser) -> None:
    """Where events go and how durably: the same options for every command that delivers (engine/shipping.py)."""
    parser.add_argument("--to", action="append", default=[], metavar="URL", help="a sink URL (repeatable)")
    parser.add_argument("--config", type=Path, metavar="FILE.toml", help="settings file (see conf/named-senderr.toml)")
    parser.add_argument(
        "--dead-letter",
        type=Path,
        metavar="FILE",
        help="where events go that a store refused for good or, without --queue-dir, that retries gave up on "
        f"(NDJSON, appended; default: {DEAD_LETTER} in the working directory, created when needed)",
    )
    durable = parser.add_argument_group("disk queue and long runs")
    durable.add_argument("--queue-dir", type=Path, metavar="DIR", help="keep events on disk until every sink took them")
    durable.add_argument("--queue-max-bytes", type=int, metavar="N", help="size bound of the queue (default 256 MiB)")
    durable.add_argument("--when-full", choices=("wait", "drop"), help="queue full: reading waits (default) or drops")
    durable.add_argument(
        "--shutdown-timeout", type=float, metavar="S", help="on SIGTERM, seconds to flush (default 10)"
    )
    durable.add_argument("--metrics", metavar="[HOST:]PORT", help="serve /metrics and /healthz (loopback by default)")
    add_privacy_options(parser)


def rollup_window(args: argparse.Namespace) -> float | None:
    """``--rollup`` in seconds; the rollup module is imported only when the option is given."""
    if not args.rollup:
        return None
    from named_senderr.normalize.rollup import parse_window

    return parse_window(args.rollup)


def delivery_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The values of ``add_delivery_options`` as overrides for ``settings.loading.load_ship_config``."""
    return {
        "dead_letter": args.dead_letter,
        "client_ip": args.client_ip,
        "qname": args.qname,
        "rollup": rollup_window(args),
        "metrics": args.metrics,
        "queue.dir": args.queue_dir,
        "queue.max_bytes": args.queue_max_bytes,
        "queue.when_full": args.when_full,
        "queue.shutdown_timeout": args.shutdown_timeout,
    }
