"""Which case a host shows, from two snapshots and the send-error lines logged between them.

Measured on real BIND (tests/data/real-named/README.md):
(a) <= 9.15 socket code: each "error sending response: would block" line is one
    UDP SndbufErrors: the socket send buffer is full -> raise wmem.
(b) 9.16+ netmgr: "send failed: no pending connections" piles up while
    SndbufErrors stays flat: libuv's queue refuses before the kernel counts.
(c) SndbufErrors rises with no log line at all: qdisc drops / ENOBUFS on the
    egress interface, which named never sees as a failed send.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from named_senderr.hostcheck.counters import Snapshot
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser

LINUX_DEFAULT_WMEM = 212_992  # bytes: a kernel never tuned for a busy resolver
ONE_FOR_ONE = 0.1  # |delta - lines| within 10 % (or 2) counts as one-for-one
FLAT = 0.1  # kernel rose by under 10 % of the netmgr lines: it did not see them


@dataclass(frozen=True)
class LogCounts:
    would_block: int = 0  # "error sending response: would block" (socket code, <= 9.15)
    netmgr: int = 0  # "send failed: no pending connections" / "Sending UDP messages failed" (9.16+)
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
                "(flat). BIND 9.16+ refused the sends in libuv's queue before the kernel saw them; raising wmem does "
                "not help: look at the egress rate, query load and named's UDP listeners."
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
    for name in ("UdpRcvbufErrors", "Udp6RcvbufErrors", "UdpInErrors", "Udp6InErrors"):
        if moved.get(name, 0) > 0:
            findings.append(f"{name} +{moved[name]}: queries are dropped on the way in too (rmem, CPU)")
    return findings
