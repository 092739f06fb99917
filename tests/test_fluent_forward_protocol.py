"""The Forward protocol decoder and encoder against frames built byte by byte from the specification."""

from __future__ import annotations

import gzip
import hashlib

import msgpack
import pytest

from named_senderr.protocol import fluent_forward
from named_senderr.protocol.fluent_forward import (
    EventTime,
    FrameDecoder,
    FrameError,
    Limits,
    check_ping,
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
