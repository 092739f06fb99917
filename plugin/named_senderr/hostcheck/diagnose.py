"""Which case a host shows, from two snapshots and the send-error lines logged between them.

Measured on real BIND (tests/data/real-named/README.md):
(a) <= 9.15 socket code: each "error sending response: would block" line is one
    UDP SndbufErrors: the socket send buffer is full -> raise wmem.
(b) 9.18.31+, 9.20.3+, 9.21.2+ netmgr: "send failed: no pending connections" piles up while
    SndbufErrors stays flat: libuv's queue refuses before the kernel counts.
(c) SndbufErrors rises with no log line at all: qdisc drops / ENOBUFS on the
    egress interface, which named never sees as a failed send.
From 9.15.6 to 9.18.30, in 9.19, 9.20.0-9.20.2 and 9.21.0-9.21.1 named sends every UDP
answer through uv_udp_send (lib/isc/netmgr/udp.c), and libuv 1.15+ keeps a send the
kernel refuses with EAGAIN/ENOBUFS queued and retries it (src/unix/udp.c): a full
buffer is neither logged nor counted in UDP4SendErr/UDP6SendErr, so there (c) may be
named's own answers. The statistics channel's version tells.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from named_senderr.hostcheck.counters import Snapshot
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser

LINUX_DEFAULT_WMEM = 212_992  # bytes: a kernel never tuned for a busy resolver
ONE_FOR_ONE = 0.1  # |delta - lines| within 10 % (or 2) counts as one-for-one
FLAT = 0.1  # kernel rose by under 10 % of the netmgr lines: it did not see them
# BIND versions that log no line for a UDP send refused on a full buffer (first, last, inclusive):
# uv_udp_send only, no uv_udp_try_send / "Sending UDP messages failed" (9.18.31, 9.20.3, 9.21.2 added them).
SILENT_FULL_BUFFER = (((9, 15, 6), (9, 18, 30)), ((9, 19, 0), (9, 20, 2)), ((9, 21, 0), (9, 21, 1)))
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class LogCounts:
    would_block: int = 0  # "error sending response: would block" (socket code, <= 9.15)
    netmgr: int = 0  # "send failed: no pending connections" / "Sending UDP messages failed" (9.18.31+)
    other: int = 0


@dataclass(frozen=True)
class Diagnosis:
    case: str  # a, b, c, mixed, quiet
    summary: str
    seconds: float
    deltas: dict[str, int]
    lines: LogCounts
    findings: list[str] = field(default_factory=list)


def count_lines(path: Path, start: int = 0, end: int | None = None) -> LogCounts:
    """Send errors in bytes ``start..end`` of ``path``: the lines logged between two snapshots."""
    parser = NamedLineParser(TimestampNormalizer(resolve_zone("UTC")))
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read() if end is None else handle.read(max(0, end - start))
    counts: Counter[str] = Counter()
    for raw in data.splitlines():
        event = parser.parse_bytes(raw)
        if event is None or not hasattr(event, "message_kind"):
            continue
        if event.reason == "would_block":
            counts["would_block" if event.message_kind == "error_sending_response" else "netmgr"] += 1
        else:
            counts["other"] += 1
    return LogCounts(counts["would_block"], counts["netmgr"], counts["other"])


def deltas(before: Snapshot, after: Snapshot) -> dict[str, int]:
    found = {}
    for family, a, b in (("Udp", before.udp, after.udp), ("Udp6", before.udp6, after.udp6)):
        for name in sorted(b):
            found[f"{family}{name}"] = b[name] - a.get(name, 0)
    if before.bind_send_errors is not None and after.bind_send_errors is not None:
        for name, value in after.bind_send_errors.items():
            found[name] = value - before.bind_send_errors.get(name, 0)
    return found


def logs_full_buffer(version: str) -> bool | None:
    """False for a BIND that never logs a full UDP send buffer; None for a version text that is not 9.x.y."""
    m = _VERSION.match(version)
    if m is None:
        return None
    number = (int(m[1]), int(m[2]), int(m[3]))
    return not any(first <= number <= last for first, last in SILENT_FULL_BUFFER)


def diagnose(before: Snapshot, after: Snapshot, lines: LogCounts) -> Diagnosis:
    moved = deltas(before, after)
    snd = after.sndbuf_errors - before.sndbuf_errors
    seconds = max(after.taken - before.taken, 0.0)
    if lines.would_block and abs(snd - lines.would_block) <= max(2, ONE_FOR_ONE * lines.would_block):
        case, text = (
            "a",
            (
                f"(a) socket buffer: SndbufErrors +{snd} for {lines.would_block} 'would block' lines, one for one. "
                "The UDP send buffer is full: raise net.core.wmem_default/wmem_max (and check the egress rate)."
            ),
        )
    elif lines.netmgr and snd <= FLAT * lines.netmgr:
        case, text = (
            "b",
            (
                f"(b) netmgr queue: {lines.netmgr} 'send failed: no pending connections' lines, SndbufErrors +{snd} "
                "(flat). BIND (9.18.31+, 9.20.3+, 9.21.2+) refused the sends in libuv's queue before the kernel "
                "saw them; raising wmem does not help: look at the egress rate, query load and named's UDP listeners."
            ),
        )
    elif snd > 0 and not (lines.would_block or lines.netmgr):
        case, text = (
            "c",
            (
                f"(c) egress drops: SndbufErrors +{snd} with no send-error line. The qdisc or driver dropped "
                "(ENOBUFS) on the egress interface after named's send succeeded: check `tc -s qdisc`, txqueuelen, NIC."
            ),
        )
        if after.bind_version is not None and logs_full_buffer(after.bind_version) is False:
            text += (
                f" On BIND {after.bind_version} it may also be named's own answers, waiting in libuv's queue unlogged."
            )
    elif snd == 0 and not (lines.would_block or lines.netmgr or lines.other):
        case, text = "quiet", "no send errors and no SndbufErrors in this window"
    else:
        case, text = (
            "mixed",
            (
                f"mixed: SndbufErrors +{snd}, {lines.would_block} 'would block' and {lines.netmgr} netmgr lines; "
                "more than one cause, or a window too short: sample again over a longer interval"
            ),
        )
    return Diagnosis(case, text, seconds, moved, lines, checklist(after, moved))


def checklist(after: Snapshot, moved: dict[str, int]) -> list[str]:
    """ISC's checklist: full duplex, buffer sizes, receive-side counters."""
    findings = []
    for nic in after.nics:
        if nic.operstate == "up" and nic.duplex == "half":  # virtual NICs say "unknown": nothing to fix
            findings.append(f"{nic.name}: {nic.duplex} duplex at {nic.speed_mbps} Mb/s: fix autonegotiation (full)")
    wmem_max = after.sysctl.get("wmem_max")
    if wmem_max is not None and wmem_max <= LINUX_DEFAULT_WMEM:
        findings.append(f"net.core.wmem_max = {wmem_max}: the kernel default; a busy server needs more (e.g. 8388608)")
    if after.bind_version is not None:
        findings += _version_findings(after.bind_version)
    for name in ("UdpRcvbufErrors", "Udp6RcvbufErrors", "UdpInErrors", "Udp6InErrors"):
        if moved.get(name, 0) > 0:
            findings.append(f"{name} +{moved[name]}: queries are dropped on the way in too (rmem, CPU)")
    return findings


def _version_findings(version: str) -> list[str]:
    logs = logs_full_buffer(version)
    if logs is None:
        return [
            f"statistics channel version {version!r} is not 9.x.y: cannot tell whether this named logs a full send buffer"
        ]
    if logs:
        return []
    return [
        f"BIND {version} logs no line when a UDP answer finds the send buffer full, and does not count it in "
        "UDP4SendErr/UDP6SendErr: libuv queues and retries it. Do not trust a quiet log: watch Udp/Udp6 "
        "SndbufErrors (one per stall, not per answer) and client latency; 9.18.31+, 9.20.3+ and 9.21.2+ log these"
    ]
