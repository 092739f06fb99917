"""The options that bound what remote peers may hold (sources/peers.py), shared by ``serve`` and ``listen``."""

from __future__ import annotations

import argparse

from named_senderr.sources.peers import MIB, PeerLimits


def add_peer_options(parser: argparse.ArgumentParser, max_connections: int) -> argparse._ArgumentGroup:
    """Connection slots, time and bytes per peer; the group is returned for the command's own limits."""
    group = parser.add_argument_group("limits on peers (past one, a connection is closed; each closing is counted)")
    defaults = PeerLimits()
    group.add_argument("--max-connections", type=int, default=max_connections, metavar="N",
                       help="open connections; at the cap the longest idle one makes room (default: %(default)s)")  # fmt: skip
    group.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout, metavar="SECONDS",
                       help="close a connection silent this long between frames (default: %(default)s)")  # fmt: skip
    group.add_argument("--frame-timeout", type=float, default=defaults.frame_timeout, metavar="SECONDS",
                       help="close a connection whose frame (message) is not whole this long after its first byte "
                       "(default: %(default)s)")  # fmt: skip
    group.add_argument("--max-buffer", type=int, default=defaults.max_buffer_bytes // MIB, metavar="MIB",
                       help="bytes of unfinished and undecoded frames of all peers together; past it the peer with "
                       "the largest unfinished frame is closed (default: %(default)s)")  # fmt: skip
    return group


def peer_limits(args: argparse.Namespace) -> PeerLimits:
    return PeerLimits(args.max_connections, args.idle_timeout, args.frame_timeout, args.max_buffer * MIB)
