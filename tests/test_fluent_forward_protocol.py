"""The Forward protocol decoder and encoder against frames built byte by byte from the specification."""

from __future__ import annotations

import gc
import gzip
import hashlib
import struct
import tracemalloc
import weakref

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from named_senderr.protocol import fluent_forward
from named_senderr.protocol.fluent_forward import (
    BadEntry,
    Entry,
    EventTime,
    FrameDecoder,
    FrameError,
    Limits,
    ObjectReader,
    check_ping,
    decode_entries,
    decode_frame,
    encode_ack,
    encode_forward,
    encode_message,
    encode_packed_forward,
    encode_ping,
    shared_key_digest,
)
from tests import test_fluent_forward_wire as w

LINE = "21-Nov-2026 04:48:37.067 client @0x7f 192.0.2.1#53 (example.com): error sending response: would block"


def decode_one(data: bytes, limits: Limits | None = None) -> fluent_forward.Frame:
    objects = list(FrameDecoder(limits).feed(data))
    assert len(objects) == 1
    return decode_frame(objects[0], limits)


def test_public_api_is_pinned():
    assert sorted(fluent_forward.__all__) == [
        "BadEntry",
        "Entry",
        "EventTime",
        "Frame",
        "FrameDecoder",
        "FrameError",
        "Limits",
        "ObjectReader",
        "RawFrame",
        "check_ping",
        "decode_entries",
        "decode_frame",
        "encode_ack",
        "encode_forward",
        "encode_helo",
        "encode_message",
        "encode_packed_forward",
        "encode_ping",
        "encode_pong",
        "shared_key_digest",
    ]


def test_message_mode_with_event_time():
    frame = decode_one(w.message("named.log", w.event_time(1_700_000_000, 123_456_789), w.record(log=LINE)))
    assert frame.mode == "message"
    assert frame.tag == "named.log"
    assert frame.entries[0].time == EventTime(1_700_000_000, 123_456_789)
    assert frame.entries[0].record == {"log": LINE}
    assert frame.chunk is None


def test_message_mode_with_integer_time():
    frame = decode_one(w.message("t", w.uint(1_700_000_000), w.record(log="x")))
    assert frame.entries[0].time == EventTime(1_700_000_000, 0)


def test_time_zero_means_now_as_in_fluentd():
    frame = decode_one(w.message("t", w.uint(0), w.record(log="x")))
    assert frame.entries[0].time is None


def test_event_time_is_ext_type_0_not_msgpack_timestamp():
    """Our encoder writes fixext 8 with type 0 (EventTime), never type -1 (msgpack Timestamp)."""
    data = encode_message("t", EventTime(1_700_000_000, 5), {"log": "x"})
    assert w.event_time(1_700_000_000, 5) in data
    assert b"\xd7\xff" not in data and b"\xd6\xff" not in data


def test_forward_mode_entries():
    entries = [w.array(w.event_time(10, 1), w.record(log="a")), w.array(w.uint(11), w.record(log="b"))]
    frame = decode_one(w.forward("t", entries, w.chunk_option("c1")))
    assert frame.mode == "forward"
    assert [(e.time, e.record) for e in frame.entries] == [
        (EventTime(10, 1), {"log": "a"}),
        (EventTime(11), {"log": "b"}),
    ]
    assert frame.chunk == "c1"


def test_packed_forward_entries_as_str32_holding_binary_msgpack():
    """Fluentd's str32 of entries is not UTF-8 (ext and map headers); it must still decode."""
    entries = [w.array(w.event_time(10, 0), w.record(log=LINE)) for _ in range(3)]
    blob = b"".join(entries)
    with pytest.raises(UnicodeDecodeError):
        blob.decode("utf-8")
    frame = decode_one(w.packed_forward("fluentd.tag", entries))
    assert frame.mode == "packed_forward"
    assert [e.record["log"] for e in frame.entries] == [LINE] * 3
    assert frame.entries[0].time == EventTime(10, 0)


def test_packed_forward_entries_as_bin():
    entries = [w.array(w.uint(10), w.record(log="a"))]
    frame = decode_one(w.array(w.s("t"), w.bin32(b"".join(entries))))
    assert frame.entries[0].record == {"log": "a"}


def test_compressed_packed_forward_gzip():
    entries = [w.array(w.event_time(10, 0), w.record(log=f"line {i}")) for i in range(5)]
    frame = decode_one(w.compressed_packed_forward("t", entries, chunk="abc"))
    assert frame.mode == "compressed_packed_forward"
    assert [e.record["log"] for e in frame.entries] == [f"line {i}" for i in range(5)]
    assert frame.chunk == "abc"


def test_compressed_packed_forward_with_several_gzip_members():
    entries = [w.array(w.uint(10), w.record(log=f"line {i}")) for i in range(6)]
    frame = decode_one(w.compressed_packed_forward("t", entries, members=3))
    assert len(frame.entries) == 6


def test_fluent_bit_v2_entries_with_metadata():
    """Fluent Bit: [[EventTime, {metadata}], record] next to the classic [EventTime, record]."""
    with_metadata = w.array(w.array(w.event_time(20, 7), w.record(otel="yes")), w.record(log="a"))
    classic = w.array(w.event_time(21, 0), w.record(log="b"))
    frame = decode_one(w.forward("fb", [with_metadata, classic]))
    assert frame.entries[0].time == EventTime(20, 7)
    assert frame.entries[0].metadata == {"otel": "yes"}
    assert frame.entries[0].record == {"log": "a"}
    assert frame.entries[1].metadata is None


def test_ack_is_a_map_with_the_chunk():
    assert encode_ack("c1") == w.fmap((w.s("ack"), w.s("c1")))


def test_invalid_entries_are_skipped_and_counted():
    entries = [w.array(w.uint(10), w.record(log="ok")), w.array(w.uint(10), w.s("not a map")), w.uint(3)]
    frame = decode_one(w.forward("t", entries))
    assert [e.record for e in frame.entries] == [{"log": "ok"}]
    assert frame.invalid == 2


@pytest.mark.parametrize("nanoseconds", [1_000_000_000, 4_000_000_000, 2**32 - 1])
def test_event_time_with_a_second_or_more_of_nanoseconds_is_skipped_and_counted(nanoseconds: int):
    """As Fluent Bit's decoder refuses it; carried into the seconds it would be a time the sender never had."""
    bad = w.array(w.event_time(1_700_000_000, nanoseconds), w.record(log="bad"))
    bad_with_metadata = w.array(w.array(w.event_time(1_700_000_000, nanoseconds), w.fmap()), w.record(log="bad"))
    good = w.array(w.event_time(1_700_000_000, 999_999_999), w.record(log="good"))
    frame = decode_one(w.forward("t", [bad, good, bad_with_metadata]))
    assert [(e.time, e.record) for e in frame.entries] == [(EventTime(1_700_000_000, 999_999_999), {"log": "good"})]
    assert frame.invalid == 2 and str(nanoseconds) in frame.invalid_detail


def test_float_time_just_below_a_whole_second_rounds_up_to_it():
    assert EventTime.from_float(1.9999999999) == EventTime(2, 0)  # was EventTime(1, 0): a second early
    assert EventTime.from_float(1.25) == EventTime(1, 250_000_000)


def test_non_utf8_bytes_in_a_record_are_kept_recoverably():
    frame = decode_one(w.message("t", w.uint(1), w.fmap((w.s("log"), w.s(b"caf\xe9")))))
    value = frame.entries[0].record["log"]
    assert value.encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_frame_split_across_reads_is_decoded_once_complete():
    data = w.message("t", w.event_time(1, 2), w.record(log=LINE))
    decoder = FrameDecoder()
    seen = []
    for i in range(len(data)):
        seen.extend(decoder.feed(data[i : i + 1]))
    assert len(seen) == 1


def test_oversize_frame_is_refused():
    decoder = FrameDecoder(Limits(max_frame_bytes=1024))
    with pytest.raises(FrameError, match="larger than the limit of 1,024 bytes"):
        list(decoder.feed(w.message("t", w.uint(1), w.record(log="x" * 2000))))


def test_gzip_bomb_is_refused():
    bomb = gzip.compress(b"\x00" * (8 * 1024 * 1024))
    assert len(bomb) < 20_000
    data = w.array(w.s("t"), w.bin32(bomb), w.fmap((w.s("compressed"), w.s("gzip"))))
    with pytest.raises(FrameError, match="gzip bomb"):
        decode_one(data, Limits(max_decompressed_bytes=1024 * 1024, max_entries=10**8))


def test_garbage_bytes_are_refused():
    with pytest.raises(FrameError, match="must be an array"):
        list(FrameDecoder().feed(b"\xc1\xc1\xc1"))


def test_a_map_is_not_a_frame():
    with pytest.raises(FrameError, match="must be an array"):
        decode_one(w.record(log="x"))


def test_tag_must_be_a_string():
    with pytest.raises(FrameError, match="tag must be a string"):
        decode_one(w.array(w.uint(1), w.uint(2), w.record(log="x")))


def test_packed_entries_cut_short_are_refused():
    whole = w.array(w.uint(1), w.record(log="abc"))
    with pytest.raises(FrameError, match="end inside an entry"):
        decode_one(w.array(w.s("t"), w.str32(whole + whole[:-2])))


def test_unknown_compression_is_refused():
    with pytest.raises(FrameError, match="unknown compression"):
        decode_one(w.array(w.s("t"), w.str32(b""), w.fmap((w.s("compressed"), w.s("zstd")))))


def test_encoder_round_trips_every_mode():
    entries = [(EventTime(5, 6), {"log": "a"}), (7, {"log": "b"})]
    for data in (
        encode_forward("t", entries, {"chunk": "x"}),
        encode_packed_forward("t", entries, {"chunk": "x"}),
        encode_packed_forward("t", entries, {"chunk": "x"}, gzip=True),
        encode_packed_forward("t", entries, {"chunk": "x"}, as_str32=True),
    ):
        frame = decode_one(data)
        assert [(e.time, e.record) for e in frame.entries] == [
            (EventTime(5, 6), {"log": "a"}),
            (EventTime(7), {"log": "b"}),
        ]
        assert frame.chunk == "x"


def test_shared_key_digest_is_sha512_of_salt_hostname_nonce_key():
    expected = hashlib.sha512(b"salt" + b"host" + b"nonce" + b"key").hexdigest()
    assert shared_key_digest(b"salt", b"host", b"nonce", b"key") == expected


def test_ping_with_the_right_key_is_accepted():
    nonce = b"\x01" * 16
    ping = msgpack.unpackb(encode_ping("client", b"s" * 16, nonce, "secret"), raw=True)
    check = check_ping(ping, nonce, b"secret")
    assert check.ok and check.salt == b"s" * 16 and check.hostname == "client"


def test_ping_with_a_wrong_key_is_refused():
    nonce = b"\x01" * 16
    ping = msgpack.unpackb(encode_ping("client", b"s" * 16, nonce, "wrong"), raw=True)
    assert check_ping(ping, nonce, b"secret").reason == "shared_key mismatch"


def test_ping_for_another_nonce_is_refused():
    ping = msgpack.unpackb(encode_ping("client", b"s" * 16, b"\x02" * 16, "secret"), raw=True)
    assert not check_ping(ping, b"\x01" * 16, b"secret").ok


def test_a_frame_instead_of_a_ping_is_refused():
    assert "expected ['PING'" in check_ping([b"tag", 1, {}], b"n", b"k").reason


# --- limits checked as the bytes arrive, never after building the frame -------------------------


def test_a_packed_frame_announcing_more_than_the_frame_limit_is_refused_at_its_header():
    decoder = FrameDecoder(Limits(max_frame_bytes=1024))
    with pytest.raises(FrameError, match="announces 4,294,967,295 bytes"):
        decoder.feed(b"\x92" + w.s("t") + b"\xc6\xff\xff\xff\xff")  # the header alone, none of the 4 GiB


def test_forward_mode_announcing_more_entries_than_the_limit_is_refused_at_its_header():
    decoder = FrameDecoder(Limits(max_entries=10))
    with pytest.raises(FrameError, match="11 entries in one frame, more than the limit of 10"):
        decoder.feed(b"\x92" + w.s("t") + b"\xdd\x00\x00\x00\x0b")


def test_a_gzip_bomb_of_empty_entries_stops_at_the_entry_limit_having_built_one_entry_at_a_time():
    bomb = gzip.compress(b"\x90" * (64 * 1024 * 1024))  # 64 Mi empty arrays in about 65 KB
    frame = w.array(w.s("t"), w.bin32(bomb), w.fmap((w.s("compressed"), w.s("gzip"))))
    [raw] = FrameDecoder().feed(frame)
    tracemalloc.start()
    seen = 0
    with pytest.raises(FrameError, match="100,001 entries in one frame"):
        for _ in decode_entries(raw, Limits()):
            seen += 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seen == 100_000
    assert peak < 2 * 1024 * 1024  # one piece of gzip output and one entry, not 64 Mi lists


def test_an_entry_larger_than_its_limit_is_refused_even_when_made_of_small_objects():
    """msgpack builds a container as its bytes come, so its buffer limit alone would not stop this."""
    many = b"\xdd" + struct.pack(">I", 60_000) + b"\x90" * 60_000  # one entry of 60,000 empty arrays
    limits = Limits(max_entry_bytes=16 * 1024, max_map_len=100_000)
    with pytest.raises(FrameError, match="an entry is larger than the limit of 16,384 bytes"):
        FrameDecoder(limits).feed(w.forward("t", [w.array(w.uint(1), w.fmap((w.s("log"), many)))]))
    [raw] = FrameDecoder().feed(w.packed_forward("t", [w.array(w.uint(1), w.fmap((w.s("log"), many)))]))
    with pytest.raises(FrameError, match="an entry is larger than the limit of 16,384 bytes"):
        list(decode_entries(raw, limits))


def test_heartbeats_between_frames_are_skipped():
    frame = w.message("t", w.uint(1), w.record(log="x"))
    raws = FrameDecoder().feed(b"\xc0" + frame + b"\xc0\xc0" + frame)
    assert [decode_frame(raw).entries[0].record for raw in raws] == [{"log": "x"}] * 2


def test_a_small_object_reader_refuses_a_large_object_before_the_handshake():
    reader = ObjectReader(max_bytes=1024)
    assert reader.feed(b"\x96" + w.s("PING")) is None  # a PING in progress
    with pytest.raises(FrameError, match="more than 1,024 bytes before the handshake's PING ended"):
        reader.feed(w.bin32(b"\x00" * 2000))


def test_a_small_object_reader_returns_the_bytes_after_the_object():
    ping = msgpack.packb(["PING", "h", "s", "d", "", ""])
    assert ObjectReader().feed(ping + b"\x92rest") == ([b"PING", b"h", b"s", b"d", b"", b""], b"\x92rest")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_the_frame_decoder_refuses_any_bytes_only_with_frame_error_and_stays_bounded(chunks: list[bytes]) -> None:
    limits = Limits(max_frame_bytes=2048, max_decompressed_bytes=4096, max_entries=50, max_entry_bytes=512)
    decoder = FrameDecoder(limits)
    try:
        for chunk in chunks:
            for raw in decoder.feed(chunk):
                assert raw.size <= limits.max_frame_bytes
                for entry in decode_entries(raw, limits):
                    assert isinstance(entry, Entry | BadEntry)
            assert decoder.pending <= limits.max_frame_bytes
    except FrameError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_a_frame_cut_anywhere_decodes_as_when_it_came_whole(cuts: list[int]) -> None:
    entries = [w.array(w.event_time(10 + i, i), w.record(log=f"line {i}")) for i in range(6)]
    data = b"".join(
        [
            w.forward("f", entries, w.chunk_option("a")),
            w.packed_forward("p", entries),
            w.message("m", w.uint(5), w.record(log="x")),
        ]
    )
    whole = [decode_frame(raw) for raw in FrameDecoder().feed(data)]
    decoder, pieces, at = FrameDecoder(), [], 0
    for cut in [*sorted(cuts), len(data)]:
        pieces.extend(decoder.feed(data[at : max(at, cut)]))
        at = max(at, cut)
    assert [decode_frame(raw) for raw in pieces] == whole
    assert decoder.pending == 0


# --- a bad entry time costs that entry, never its frame --------------------------------------------


@pytest.mark.parametrize(
    "time",
    [
        w.float64(1.7e12),  # milliseconds
        w.float64(1e300),
        w.uint64(2**64 - 1),
        w.float64(float("inf")),
        w.float64(float("nan")),
        w.float64(-5.0),
        b"\xd3" + struct.pack(">q", -5),  # int64 -5
        w.event_time(1_700_000_000, 4_000_000_000),  # 4 s of nanoseconds
    ],
    ids=["milliseconds", "1e300", "2^64-1", "inf", "nan", "negative float", "negative int", "ns over 1e9"],
)
def test_an_entry_with_a_time_outside_1970_to_2106_is_skipped_as_bad_time_and_the_rest_decoded(time: bytes):
    good = w.array(w.uint(1_700_000_000), w.record(log="good"))
    [raw] = FrameDecoder().feed(w.forward("t", [good, w.array(time, w.record(log="bad")), good]))
    entries = list(decode_entries(raw, Limits()))
    assert [e.record["log"] for e in entries if isinstance(e, Entry)] == ["good", "good"]
    [bad] = [e for e in entries if isinstance(e, BadEntry)]
    assert bad.reason == "bad_time" and "is not between 1970 and 2106" in bad.detail


def test_a_time_in_milliseconds_is_named_as_such():
    [raw] = FrameDecoder().feed(w.message("t", w.uint64(1_700_000_000_000), w.record(log="x")))
    [bad] = decode_entries(raw, Limits())
    assert "milliseconds?" in bad.detail


def test_a_float_time_whose_fraction_rounds_up_carries_into_the_seconds():
    assert EventTime.from_float(1_700_000_000.9999999999) == EventTime(1_700_000_001, 0)


def test_a_decoder_let_go_of_mid_frame_frees_its_bytes_at_once_without_waiting_for_a_gc_pass():
    """A reference cycle would keep a closed peer's unfinished frame until the cyclic collector happens to run."""
    gc.disable()
    try:
        decoder = FrameDecoder()
        decoder.feed(b"\x93" + w.s("t") + b"\xc6" + struct.pack(">I", 1_000_000) + b"\x00" * 500_000)
        gone = weakref.ref(decoder)
        del decoder
        assert gone() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("where", ["record", "option"])
def test_a_map_keyed_by_an_array_is_a_malformed_frame_never_an_internal_error(where: str):
    keyed_by_array = w.fmap((w.array(w.uint(1)), w.s("x")))
    if where == "record":
        data = w.message("t", w.uint(1), keyed_by_array)
    else:
        data = w.array(w.s("t"), w.uint(1), w.record(log="x"), keyed_by_array)
    with pytest.raises(FrameError, match="unhashable"):
        for raw in FrameDecoder().feed(data):
            decode_frame(raw)


def test_a_ping_keyed_by_an_array_is_refused_as_malformed():
    with pytest.raises(FrameError, match="not a msgpack Forward frame"):
        ObjectReader().feed(w.fmap((w.array(w.uint(1)), w.s("x"))))
