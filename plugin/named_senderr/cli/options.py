"""Command-line options shared by several subcommands, kept free of heavy imports."""

from __future__ import annotations

import argparse


def add_privacy_options(parser: argparse.ArgumentParser) -> None:
    """Privacy and rollup (normalize/privacy.py, normalize/rollup.py): applied before any output sees an event."""
    group = parser.add_argument_group("privacy and rollup (applied before anything leaves the host)")
    group.add_argument("--client-ip", metavar="MODE", help="truncate:/24,/56, or hash:KEYFILE / hash:env:VAR (HMAC)")
    group.add_argument("--qname", metavar="MODE", help="drop, hash[:KEYFILE], or suffix:N (keep the last N labels)")
    group.add_argument("--rollup", metavar="WINDOW", help="one event per server x reason x network x WINDOW (e.g. 60s)")
