"""Generate a realistic named log: query and debug noise around send errors.

Lines follow named's file channel (print-time, print-category, print-severity)
as in the real BIND 9.11/9.18 logs of shared/fixtures; the ratio of send errors
and the BIND generation are parameters, the output is reproducible per seed.

    python bench/generate_log.py --lines 1000000 --error-rate 0.01 -o /tmp/named-1m.log
"""

from __future__ import annotations

import argparse
import random
import sys
from datetime import datetime, timedelta

QNAMES = [
    "www.example.com",
    "big.example.test",
    "mail.example.org",
    "cdn.example.net",
    "example.com",
    "api.example.org",
]
RTYPES = ["A", "AAAA", "TXT", "MX", "NS", "DNSKEY"]
NOISE = [
    "queries: info: client @0x{ptr} {client} ({qname}): view {view}: query: {qname} IN {rtype} +E(0)K ({server})",
    "queries: info: client @0x{ptr} {client} ({qname}): view {view}: query: {qname} IN {rtype} -E(0)DC ({server})",
    "lame-servers: info: network unreachable resolving '{qname}/{rtype}/IN': 2001:db8::53#53",
    "resolver: debug 1: createfetch: {qname} {rtype}",
    "general: debug 1: zone_settimer: managed-keys-zone/{view}: enter",
    "query-errors: info: client @0x{ptr} {client} ({qname}): view {view}: query failed (SERVFAIL) for {qname}/IN/{rtype} at query.c:7290",
    "security: info: client @0x{ptr} {client} ({qname}): view {view}: query (cache) '{qname}/{rtype}/IN' denied",
    "client: debug 3: client @0x{ptr} {client}: UDP request",
    "edns-disabled: info: success resolving '{qname}/{rtype}' after reducing the advertised EDNS UDP packet size to 512 octets",
]
SEND_ERRORS_918 = [
    ("security: debug 3: client @0x{ptr} {client} ({qname}): view {view}: send failed: no pending connections", 90),
    ("security: debug 3: client @0x{ptr} {client} ({qname}): view {view}: send failed: host unreachable", 3),
    ("security: debug 3: client @0x{ptr} {client} ({qname}): view {view}: send failed: connection reset", 3),
    ("security: debug 3: client @0x{ptr} {client} ({qname}): view {view}: send failed: permission denied", 2),
    ("general: error: Sending UDP messages failed: no pending connections", 2),
]
SEND_ERRORS_911 = [
    ("client: warning: client @0x{ptr} {client} ({qname}): view {view}: error sending response: would block", 90),
    ("client: warning: client @0x{ptr} {client} ({qname}): view {view}: error sending response: host unreachable", 4),
    ("client: warning: client @0x{ptr} {client} ({qname}): view {view}: error sending response: connection reset", 3),
    ("client: warning: client @0x{ptr} {client} ({qname}): view {view}: error sending response: unset", 3),
]


def client(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"2001:db8:{rng.randrange(1, 0xFFFF):x}::{rng.randrange(1, 0xFFFF):x}#{rng.randrange(1024, 65535)}"
    return f"198.51.100.{rng.randrange(1, 255)}#{rng.randrange(1024, 65535)}"


def generate(lines: int, error_rate: float, bind: str, seed: int, out) -> None:
    rng = random.Random(seed)
    errors = SEND_ERRORS_918 if bind == "9.18" else SEND_ERRORS_911
    templates = [t for t, _ in errors]
    weights = [w for _, w in errors]
    now = datetime(2026, 11, 21, 4, 48, 37)
    write = out.write
    for _ in range(lines):
        now += timedelta(microseconds=rng.randrange(0, 4000))
        is_error = rng.random() < error_rate
        template = rng.choices(templates, weights)[0] if is_error else rng.choice(NOISE)
        text = template.format(
            ptr=f"{rng.randrange(0x7F0000000000, 0x7FFFFFFFFFFF):x}",
            client=client(rng),
            qname=rng.choice(QNAMES),
            rtype=rng.choice(RTYPES),
            view=rng.choice(("external", "internal")),
            server="2001:db8:53::1",
        )
        write(f"{now:%d-%b-%Y %H:%M:%S}.{now.microsecond // 1000:03d} {text}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--error-rate", type=float, default=0.01, help="share of send-error lines (0..1)")
    parser.add_argument("--bind", choices=("9.11", "9.18"), default="9.18", help="BIND generation to imitate")
    parser.add_argument("--seed", type=int, default=53)
    parser.add_argument("-o", "--output", help="file to write (default: stdout)")
    args = parser.parse_args()
    if args.output:
        with open(args.output, "w", encoding="ascii", buffering=1 << 20) as out:
            generate(args.lines, args.error_rate, args.bind, args.seed, out)
    else:
        generate(args.lines, args.error_rate, args.bind, args.seed, sys.stdout)


if __name__ == "__main__":
    main()
