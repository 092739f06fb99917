"""Coverage-guided fuzzing (atheris) of the three decoders that take hostile bytes.

    pip install atheris
    python bench/fuzz_parser.py -atheris_runs=200000            # the line parser
    python bench/fuzz_parser.py --target queue -max_total_time=60
    python bench/fuzz_parser.py --target syslog -max_total_time=60

A crash (an exception escaping, or a result of the wrong type) stops the run and
writes the input to crash-*; the numbers at the end are libFuzzer's own.
"""

from __future__ import annotations

import contextlib
import sys
import time

import atheris

with atheris.instrument_imports():
    from named_senderr.event import Event
    from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
    from named_senderr.parse.named import NamedLineParser, Rejection
    from named_senderr.protocol.syslog_frame import FrameError, StreamDeframer
    from named_senderr.queue.disk import HEADER, decode_records

PARSER = NamedLineParser(TimestampNormalizer(resolve_zone("UTC")))
SEEDS = [
    b"21-Nov-2026 04:48:37.067 client @0x7f 192.0.2.1#53 (example.com): view external: error sending response: "
    b"would block",
    b'{"MESSAGE":"client @0x1 192.0.2.1#53 (a.b): error sending response: connection reset"}',
]
SLOWEST = [0.0]


def fuzz_parser(data: bytes) -> None:
    started = time.perf_counter()
    result = PARSER.parse_bytes(data)
    SLOWEST[0] = max(SLOWEST[0], time.perf_counter() - started)
    if result is not None and not isinstance(result, Event | Rejection):
        raise TypeError(f"parse_bytes returned {type(result).__name__}")


def fuzz_queue(data: bytes) -> None:
    records, end = decode_records(data)
    if not 0 <= end <= len(data) or sum(HEADER.size + len(r) for r in records) != end:
        raise AssertionError("decode_records overread or miscounted")


def fuzz_syslog(data: bytes) -> None:
    deframer = StreamDeframer(1024)
    for i in range(0, len(data), 97):
        deframer.feed(data[i : i + 97])
    with contextlib.suppress(FrameError):
        deframer.finish()


TARGETS = {"parser": fuzz_parser, "queue": fuzz_queue, "syslog": fuzz_syslog}


def main() -> None:
    target = "parser"
    if "--target" in sys.argv:
        at = sys.argv.index("--target")
        target = sys.argv[at + 1]
        del sys.argv[at : at + 2]
    atheris.Setup(sys.argv, TARGETS[target])
    started = time.perf_counter()
    try:
        atheris.Fuzz()
    finally:
        print(f"fuzz {target}: {time.perf_counter() - started:.1f} s, slowest parse {SLOWEST[0] * 1000:.2f} ms",
              file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
