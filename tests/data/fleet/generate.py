"""Write the fixture fleet: four BIND servers' send errors over one hour, reproducible.

    python tests/data/fleet/generate.py    # rewrites ns1.log .. ns4.log here

Lines are syslog with an ISO UTC time and the host name, so every source (file,
Elasticsearch, Loki) sees the same host and time without --host or --timezone.
Each host has a background rate and one burst minute, so its peak minute is known.
Milliseconds never sit on a minute boundary: per-minute buckets agree across stores.
hostcheck.ndjson is what ``hostcheck --emit --interval 600`` would have written on ns1 (9.11: the kernel's
Udp6SndbufErrors rises one for one with "would block") and ns3 (9.18: the statistics channel's UDP6SendErr
counts every failed send, the kernel almost none), from the same lines.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

START = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
MINUTES = 60
QNAMES = ["www.example.com", "big.example.test", "mail.example.org", "cdn.example.net", "a.b.example.org"]
VIEWS = ["external", "internal"]
CLIENTS = (
    [f"198.51.100.{n}" for n in (7, 9, 23, 200)]
    + [f"203.0.113.{n}" for n in (5, 66)]
    + ["192.0.2.10"]
    + ["2001:db8:1:100::5", "2001:db8:1:1ff::9", "2001:db8:2::53"]
)
# host -> (BIND generation, background events per minute, burst minute, burst size, seed)
HOSTS = {
    "ns1": ("9.11", 6, 17, 90, 1),
    "ns2": ("9.11", 3, 42, 60, 2),
    "ns3": ("9.18", 5, 5, 120, 3),
    "ns4": ("9.18", 2, 33, 45, 4),
}
ERRORS = {
    "9.11": [
        (
            "client: warning: client @0x{ptr} {client}#{port} ({qname}): view {view}: error sending response: would block",
            80,
        ),
        (
            "client: warning: client @0x{ptr} {client}#{port} ({qname}): view {view}: error sending response: host unreachable",
            12,
        ),
        (
            "client: warning: client @0x{ptr} {client}#{port} ({qname}): view {view}: error sending response: connection reset",
            8,
        ),
    ],
    "9.18": [
        (
            "security: debug 3: client @0x{ptr} {client}#{port} ({qname}): view {view}: send failed: no pending connections",
            85,
        ),
        (
            "security: debug 3: client @0x{ptr} {client}#{port} ({qname}): view {view}: send failed: connection reset",
            10,
        ),
        ("security: debug 3: client @0x{ptr} {client}#{port} ({qname}): view {view}: send failed: host unreachable", 5),
    ],
}
NOISE = "queries: info: client @0x{ptr} {client}#{port} ({qname}): view {view}: query: {qname} IN A +E(0)K (192.0.2.53)"


def host_lines(host: str) -> list[str]:
    bind, background, burst_minute, burst, seed = HOSTS[host]
    rng = random.Random(seed)
    templates = [t for t, _ in ERRORS[bind]]
    weights = [w for _, w in ERRORS[bind]]
    stamped = []
    for minute in range(MINUTES):
        n = background + rng.randrange(0, 3) + (burst if minute == burst_minute else 0)
        for _ in range(n):
            ms = rng.randrange(1, 59_999)  # never :00.000, so "which minute" is the same everywhere
            when = START + timedelta(minutes=minute, milliseconds=ms)
            template = rng.choices(templates, weights)[0]
            stamped.append((when, template))
            if rng.random() < 0.2:
                stamped.append((when, NOISE))
    lines = []
    for when, template in sorted(stamped, key=lambda pair: pair[0]):
        message = template.format(
            ptr=f"{rng.getrandbits(48):012x}",
            client=rng.choice(CLIENTS),
            port=rng.randrange(1024, 65535),
            qname=rng.choice(QNAMES),
            view=rng.choice(VIEWS),
        )
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
        lines.append(f"{stamp} {host} named[{800 + seed}]: {message}\n")
    return lines


SAMPLE_MINUTES = 10
# host -> (hostcheck's case, whether the kernel counts the refused sends: 9.11 yes, 9.18's netmgr no)
COUNTERS = {"ns1": ("a", True), "ns3": ("b", False)}


def counter_records(host: str, lines: list[str]) -> list[str]:
    """One host_counters record per SAMPLE_MINUTES, its deltas counted from ``lines`` per address family."""
    case, kernel_counts = COUNTERS[host]
    records = []
    for sample in range(MINUTES // SAMPLE_MINUTES):
        begun = START + timedelta(minutes=sample * SAMPLE_MINUTES)
        taken = begun + timedelta(minutes=SAMPLE_MINUTES)
        span = begun.strftime("%Y-%m-%dT%H:%M"), taken.strftime("%Y-%m-%dT%H:%M")
        inside = [line for line in lines if span[0] <= line[:16] < span[1] and " view " in line]
        failed = [line for line in inside if "sending response" in line or "send failed" in line]
        refused = [line for line in failed if "would block" in line or "no pending connections" in line]
        v6 = sum(":" in line.split(" client @0x", 1)[1].split()[1].rsplit("#", 1)[0] for line in refused)
        kernel = (len(refused) - v6, v6) if kernel_counts else (0, sample % 2)
        named = (len(refused) - v6, v6)
        delta = dict(
            zip(("UdpSndbufErrors", "Udp6SndbufErrors", "UDP4SendErr", "UDP6SendErr"), kernel + named, strict=True)
        )
        log = {"would_block": len(refused) if kernel_counts else 0, "netmgr": 0 if kernel_counts else len(refused)}
        log["other"] = len(failed) - len(refused)
        record = {
            "@timestamp": taken.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "event": {"kind": "metric", "dataset": "bind.host_counters", "module": "bind"},
            "host": {"name": host},
            "bind": {"host_counters": {"interval_s": SAMPLE_MINUTES * 60.0, "case": case, "delta": delta, "log": log}},
        }
        records.append(orjson.dumps(record).decode() + "\n")
    return records


def main() -> None:
    here = Path(__file__).resolve().parent
    series = []
    for host in HOSTS:
        lines = host_lines(host)
        (here / f"{host}.log").write_text("".join(lines))
        if host in COUNTERS:
            series += counter_records(host, lines)
    (here / "hostcheck.ndjson").write_text("".join(series))


if __name__ == "__main__":
    main()
