"""Hostile input, property-based: whatever arrives, the decoders answer, never raise, and stay fast.

Inputs are arbitrary text and bytes plus mutations of real lines (hypothesis finds the edges),
and line bombs far above the limits.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from named_senderr.event import Event
from named_senderr.parse.named import MAX_LINE_BYTES, Rejection
from named_senderr.protocol.syslog_frame import FrameError, StreamDeframer
from named_senderr.queue.disk import HEADER, MAX_RECORD, DiskQueue, decode_records, encode_record
from tests.parsing import make_parser

PARSER = make_parser()
REAL = [
    "21-Nov-2026 04:48:37.067 client @0x7f 192.0.2.1#53 (example.com): view external: error sending response: "
    "would block",
    "21-Nov-2026 04:48:37.006 security: debug 3: client @0x7ffffa4066b0 2001:db8:21e3::42d1#58753 "
    "(api.example.org): view external: send failed: host unreachable",
    '{"MESSAGE":"client @0x1 192.0.2.1#53 (a.b): error sending response: connection reset"}',
]
LINE_BUDGET = 0.5  # seconds for one line, however hostile: the regexes are anchored and bounded
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def mutated() -> st.SearchStrategy[str]:
    """Real lines with a slice replaced by arbitrary text: close enough to reach deep into the patterns."""
    return st.builds(
        lambda line, start, length, junk: line[:start] + junk + line[start + length :],
        st.sampled_from(REAL),
        st.integers(0, 200),
        st.integers(0, 40),
        st.text(max_size=60),
    )


def check_parse(result: object) -> None:
    assert result is None or isinstance(result, Event | Rejection)


@FAST
@given(st.one_of(st.text(max_size=2000), mutated()))
def test_parse_never_raises_and_answers_an_event_a_rejection_or_none(text: str) -> None:
    started = time.perf_counter()
    check_parse(PARSER.parse(text))
    assert time.perf_counter() - started < LINE_BUDGET


@FAST
@given(st.one_of(st.binary(max_size=2000), mutated().map(lambda s: s.encode("utf-8", "surrogatepass"))))
def test_parse_bytes_never_raises_on_invalid_utf8(raw: bytes) -> None:
    started = time.perf_counter()
    check_parse(PARSER.parse_bytes(raw))
    assert time.perf_counter() - started < LINE_BUDGET


def test_a_line_bomb_is_refused_at_the_limit_within_the_budget() -> None:
    bomb = REAL[0] + " " + "A" * (64 * MAX_LINE_BYTES)
    started = time.perf_counter()
    result = PARSER.parse(bomb)
    assert isinstance(result, Rejection) and result.reason == "line_too_long" and len(result.line) == MAX_LINE_BYTES
    assert time.perf_counter() - started < LINE_BUDGET


@FAST
@given(st.binary(max_size=4096))
def test_the_queue_record_decoder_never_raises_and_never_overreads(data: bytes) -> None:
    records, end = decode_records(data)
    assert 0 <= end <= len(data) and sum(HEADER.size + len(r) for r in records) == end


@FAST
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=20), st.integers(0, 10_000), st.integers(0, 255))
def test_a_corrupted_record_stream_keeps_every_record_before_the_damage(
    payloads: list[bytes], where: int, flip: int
) -> None:
    data = bytearray(b"".join(encode_record(p) for p in payloads))
    if data:
        data[where % len(data)] ^= flip or 1
    records, _ = decode_records(bytes(data))
    intact = 0
    offset = 0
    for payload in payloads:
        offset += HEADER.size + len(payload)
        if offset > where % max(len(data), 1):
            break
        intact += 1
    assert records[:intact] == payloads[:intact]
    assert all(zlib.crc32(r) == zlib.crc32(p) for r, p in zip(records, payloads, strict=False))


def test_a_record_length_above_the_limit_is_corruption_not_an_allocation() -> None:
    bomb = HEADER.pack(MAX_RECORD + 1, 0) + b"x" * 100
    assert decode_records(bomb) == ([], 0)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=3000))
def test_any_garbage_tail_on_a_segment_is_cut_at_restart_never_a_crash(tmp_path_factory, garbage: bytes) -> None:
    directory: Path = tmp_path_factory.mktemp("queue")
    queue = DiskQueue(directory, 1 << 20, ("es",))
    queue.append([b"kept"])
    queue.close()
    segment = next(directory.glob("*.seg"))
    segment.write_bytes(segment.read_bytes() + garbage)
    queue = DiskQueue(directory, 1 << 20, ("es",))
    records, _ = queue.read("es", 100, 1 << 20)
    queue.close()
    assert records[0] == b"kept"


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=20), st.integers(0, 10_000), st.integers(1, 32)
)
def test_damage_anywhere_in_a_segment_costs_exactly_the_records_it_touched(
    tmp_path_factory, payloads: list[bytes], where: int, width: int
) -> None:
    directory: Path = tmp_path_factory.mktemp("queue")
    queue = DiskQueue(directory, 1 << 20, ("es",))
    queue.append(payloads)
    queue.close()
    segment = next(directory.glob("*.seg"))
    data = bytearray(segment.read_bytes())
    start = where % len(data)
    stop = min(len(data), start + width)
    data[start:stop] = bytes(b ^ 0xFF for b in data[start:stop])
    segment.write_bytes(bytes(data))
    spans, offset = [], 0
    for payload in payloads:
        spans.append((offset, offset + HEADER.size + len(payload)))
        offset = spans[-1][1]
    untouched = [p for p, (a, b) in zip(payloads, spans, strict=True) if b <= start or a >= stop]
    queue = DiskQueue(directory, 1 << 20, ("es",))
    records, _ = queue.read("es", 100, 1 << 20)
    queue.close()
    assert records == untouched
    assert queue.damaged_bytes + queue.torn_bytes == sum(b - a for a, b in spans if a < stop and b > start)


@FAST
@given(st.lists(st.binary(max_size=500), max_size=10))
def test_the_syslog_deframer_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    deframer = StreamDeframer(1024)
    for chunk in chunks:
        for message in deframer.feed(chunk):
            assert len(message) <= 1024 + 1
        assert len(deframer._buffer) <= 1024 + 16
    with contextlib.suppress(FrameError):
        deframer.finish()


def test_a_syslog_line_bomb_is_refused_as_oversize_without_buffering_it() -> None:
    deframer = StreamDeframer(1024)
    for _ in range(1000):
        deframer.feed(b"<13>" + b"A" * 4096)
    assert deframer.error is not None and deframer.error.oversize and len(deframer._buffer) == 0
