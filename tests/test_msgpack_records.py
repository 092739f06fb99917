"""The exec_filter stdin decoders (protocol/msgpack_records.py), fed from bytes built here, split every way."""

from __future__ import annotations

import tracemalloc

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from named_senderr.protocol.msgpack_records import BadRecord, JsonRecords, MsgpackRecords, ObjectWalker

LIMIT = 1024
# Every msgpack header form: fix/8/16/32 str, bin, ext, array and map, ints, floats, nil, bools, nesting.
RECORDS = [
    {"message": "short"},
    {"message": b"b" * 300, "n": -(2**40), "f": 1.5, "t": True, "none": None},
    {"message": "s" * 200, "ext": msgpack.ExtType(5, b"12345678"), "fix": msgpack.ExtType(1, b"\x00\x01\x02\x03")},
    {"nested": {"a": [1, 2, [3, {"b": b""}]], "e": {}, "l": []}, "u": 2**63},
    {"message": "x" * 70, "list": list(range(20)), "ext8": msgpack.ExtType(2, b"e" * 20)},
    {"ints": [-100, 200, 300, -2000, 70_000, -40_000], "bin8": b"q" * 10, "map16": {str(i): i for i in range(20)}},
    {"fixext": [msgpack.ExtType(4, b"1"), msgpack.ExtType(6, b"12"), msgpack.ExtType(7, b"h" * 16)]},
]


def pack(record: object) -> bytes:
    return msgpack.packb(record, use_bin_type=True)


def feed_in_chunks(decoder: MsgpackRecords | JsonRecords, data: bytes, size: int) -> list:
    out = []
    for at in range(0, len(data), size):
        out.extend(decoder.feed(data[at : at + size]))
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 4093, 1 << 20])
def test_records_split_anywhere_decode_as_msgpack_does(size: int):
    data = b"".join(pack(r) for r in RECORDS)
    decoder = MsgpackRecords(LIMIT)
    assert feed_in_chunks(decoder, data, size) == [msgpack.unpackb(pack(r)) for r in RECORDS]
    assert decoder.finish() is None


OVERSIZE = [
    pytest.param({"message": b"c" * 5000 + pack({"message": "forged"})}, id="bin16-with-a-map-inside"),
    pytest.param({"message": "s" * 70_000 + "\xda\xff\xff"}, id="str32-ending-in-a-str16-header"),
    pytest.param({"a": [b"x" * 600, {"b": b"y" * 600}], "e": msgpack.ExtType(3, b"z" * 3000)}, id="nested-and-ext"),
    pytest.param([{"message": "m" * 400}] * 4, id="array-of-maps"),
]


@pytest.mark.parametrize("big", OVERSIZE)
@pytest.mark.parametrize("size", [1, 5, 333, 1500, 1 << 20])
def test_an_oversize_record_is_stepped_over_exactly_once(big: object, size: int):
    before, after = pack(RECORDS[0]), b"".join(pack(r) for r in RECORDS[1:])
    decoder = MsgpackRecords(LIMIT)
    out = feed_in_chunks(decoder, before + pack(big) + after, size)
    [bad] = [o for o in out if isinstance(o, BadRecord)]
    assert bad.reason == "oversize" and f"at input byte {len(before)} is " in bad.detail
    assert [o for o in out if not isinstance(o, BadRecord)] == [msgpack.unpackb(pack(r)) for r in RECORDS]
    assert out.index(bad) == 1
    assert decoder.finish() is None


def test_a_long_record_costs_no_memory_beyond_the_limit_and_one_read():
    data = pack({"message": b"c" * (16 * 1024 * 1024)}) + pack(RECORDS[0])
    chunks = [data[at : at + 65536] for at in range(0, len(data), 65536)]
    decoder = MsgpackRecords(LIMIT)
    tracemalloc.start()
    try:
        out = [o for chunk in chunks for o in decoder.feed(chunk)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [o.reason if isinstance(o, BadRecord) else o for o in out] == ["oversize", RECORDS[0]]
    assert peak < 4 * 65536


def test_end_of_input_inside_an_oversize_record_is_reported_as_truncated():
    decoder = MsgpackRecords(LIMIT)
    decoder.feed(pack({"message": b"c" * 5000})[:3000])
    bad = decoder.finish()
    assert bad is not None and bad.reason == "truncated"
    assert "inside the oversize record at input byte 0, 3000 of its at least 5012 bytes" in bad.detail


def test_end_of_input_inside_a_record_is_reported_as_truncated():
    decoder = MsgpackRecords(LIMIT)
    assert decoder.feed(pack({"message": "cut"})[:5]) == []
    bad = decoder.finish()
    assert bad is not None and bad.reason == "truncated" and "5 bytes" in bad.detail


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\xc1", id="never-used-byte"),
        pytest.param(b"\x81\xa7message\xdf\xff\xff\xff\xff", id="map-claiming-4G-pairs"),
        pytest.param(b"\x91" * 2000, id="nested-2000-deep"),
    ],
)
def test_bytes_that_are_not_msgpack_drop_the_rest_of_the_read_and_decoding_goes_on(garbage: bytes):
    decoder = MsgpackRecords(LIMIT)
    [bad] = decoder.feed(garbage + pack({"message": "lost with the garbage"}))
    assert bad.reason == "undecodable_msgpack" and "decoder restarted" in bad.detail
    assert decoder.feed(pack(RECORDS[0])) == [RECORDS[0]]


def test_a_record_over_a_limit_but_of_known_length_is_stepped_over():
    """An ext longer than 1 KiB is refused by msgpack, but its header gives its length: only it is lost."""
    decoder = MsgpackRecords(64 * 1024)
    out = decoder.feed(pack({"e": msgpack.ExtType(1, b"x" * 2000)}) + pack(RECORDS[0]))
    assert out[0].reason == "undecodable_msgpack" and "was stepped over" in out[0].detail
    assert out[1:] == [RECORDS[0]]


@pytest.mark.parametrize("packed", [*map(pack, [*RECORDS, [1, [2, [3]]], 5, None, "text", b"bin" * 100]),
                                    msgpack.packb([1.5, 2.5, 3.5], use_single_float=True)])  # fmt: skip
def test_the_walker_finds_the_end_of_any_object_fed_byte_by_byte(packed: bytes):
    data = packed + b"\x01"
    walker = ObjectWalker()
    ends = [walker.feed(data[i : i + 1]) for i in range(len(data) - 1)]
    assert ends[:-1] == [None] * (len(ends) - 1) and ends[-1] == 1
    assert walker.seen == len(data) - 1


def test_json_lines_longer_than_the_limit_are_skipped_to_their_newline():
    decoder = JsonRecords(LIMIT)
    out = feed_in_chunks(decoder, b'{"message": "' + b"x" * 5000 + b'"}\n{"message": "next"}\n', 700)
    assert [o.reason if isinstance(o, BadRecord) else o for o in out] == ["oversize", {"message": "next"}]


def test_bytes_that_are_not_msgpack_inside_an_oversize_record_drop_the_read_and_decoding_goes_on():
    broken = b"\xdc\x00\x03" + pack(b"x" * 2000) + b"\xc1" + pack(RECORDS[0])  # the array's 2nd item starts wrong
    decoder = MsgpackRecords(LIMIT)
    out = feed_in_chunks(decoder, broken, 1000)
    assert [o.reason for o in out] == ["oversize", "undecodable_msgpack"]
    assert "inside an oversize record: byte 0xc1 starts no msgpack object" in out[1].detail
    assert decoder.feed(pack(RECORDS[0])) == [RECORDS[0]] and decoder.finish() is None


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=40) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# A payload over the limit whose bytes are themselves msgpack records: what a hostile log line carries.
OVERSIZE_RECORDS = st.builds(
    lambda filler, inner, tail: {"message": b"q" * filler + b"".join(pack(r) for r in inner) + tail},
    st.integers(LIMIT, 3 * LIMIT),
    st.lists(VALUES, max_size=3),
    st.sampled_from([b"", b"\xda\xff\xff", b"\xdb\xff\xff\xff\xff", b"\x81\xa7message"]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.booleans(), VALUES, OVERSIZE_RECORDS), min_size=1, max_size=6),
    st.lists(st.integers(1, 3 * LIMIT), min_size=1, max_size=8),
)
def test_whatever_an_oversize_record_holds_the_other_records_come_out_exactly(items, cuts):
    """Never a record decoded from inside an oversize one; never a good record lost."""
    stream, expected = b"", []
    for big, small, oversize in items:
        stream += pack(oversize if big else small)
        expected.append("oversize" if big else msgpack.unpackb(pack(small), raw=False, strict_map_key=False))
    decoder, out, at = MsgpackRecords(LIMIT), [], 0
    for cut in cuts * (len(stream) // sum(cuts) + 1):
        out.extend(decoder.feed(stream[at : at + cut]))
        at += cut
    assert [o.reason if isinstance(o, BadRecord) else o for o in out] == expected
    assert decoder.finish() is None
