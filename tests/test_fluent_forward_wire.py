"""Forward protocol frames built byte by byte from the specification (helpers for the Forward tests).

Only msgpack's wire format is used here (the spec's type bytes), so a test that
feeds these bytes to the decoder checks the decoder against the spec, not
against its own encoder.
"""

from __future__ import annotations

import gzip
import struct


def s(text: str | bytes) -> bytes:
    """A msgpack str (fixstr, str8 or str32 by length)."""
    data = text.encode() if isinstance(text, str) else text
    if len(data) < 32:
        return bytes([0xA0 | len(data)]) + data
    if len(data) < 256:
        return b"\xd9" + bytes([len(data)]) + data
    return str32(data)


def str32(data: bytes) -> bytes:
    """What Fluentd's out_forward writes for PackedForward entries: 0xdb + 4-byte length."""
    return b"\xdb" + struct.pack(">I", len(data)) + data


def bin32(data: bytes) -> bytes:
    return b"\xc6" + struct.pack(">I", len(data)) + data


def uint(value: int) -> bytes:
    """A msgpack non-negative int (positive fixint or uint32)."""
    return bytes([value]) if value < 128 else b"\xce" + struct.pack(">I", value)


def uint64(value: int) -> bytes:
    return b"\xcf" + struct.pack(">Q", value)


def float64(value: float) -> bytes:
    return b"\xcb" + struct.pack(">d", value)


def array32(items: list[bytes]) -> bytes:
    """An array of any length (array32 header), e.g. Forward mode with thousands of entries."""
    return b"\xdd" + struct.pack(">I", len(items)) + b"".join(items)


def array(*items: bytes) -> bytes:
    assert len(items) < 16
    return bytes([0x90 | len(items)]) + b"".join(items)


def fmap(*pairs: tuple[bytes, bytes]) -> bytes:
    assert len(pairs) < 16
    return bytes([0x80 | len(pairs)]) + b"".join(k + v for k, v in pairs)


def event_time(seconds: int, nanoseconds: int) -> bytes:
    """EventTime: fixext 8 (0xd7), ext type 0, seconds and nanoseconds as big-endian uint32."""
    return b"\xd7\x00" + struct.pack(">II", seconds, nanoseconds)


def record(**fields: str) -> bytes:
    return fmap(*((s(k), s(v)) for k, v in fields.items()))


def message(tag: str, time: bytes, rec: bytes, option: bytes | None = None) -> bytes:
    return array(s(tag), time, rec, *([option] if option else []))


def forward(tag: str, entries: list[bytes], option: bytes | None = None) -> bytes:
    return array(s(tag), array(*entries), *([option] if option else []))


def packed_forward(tag: str, entries: list[bytes], option: bytes | None = None) -> bytes:
    """Fluentd's out_forward: entries concatenated, as a str32."""
    return array(s(tag), str32(b"".join(entries)), *([option] if option else []))


def compressed_packed_forward(tag: str, entries: list[bytes], chunk: str | None = None, members: int = 1) -> bytes:
    """gzip'd entries as bin, ``members`` gzip members concatenated (Fluentd appends one per write)."""
    cut = max(1, len(entries) // members)
    groups = [entries[i : i + cut] for i in range(0, len(entries), cut)]
    blob = b"".join(gzip.compress(b"".join(group)) for group in groups)
    pairs = [(s("compressed"), s("gzip")), (s("size"), uint(len(entries)))]
    if chunk:
        pairs.insert(0, (s("chunk"), s(chunk)))
    return array(s(tag), bin32(blob), fmap(*pairs))


def chunk_option(chunk: str) -> bytes:
    return fmap((s("chunk"), s(chunk)))


def test_hand_built_values_are_what_msgpack_reads():
    """The builders above are plain msgpack: a reference unpacker agrees with them."""
    import msgpack

    assert msgpack.unpackb(s("tag")) == "tag"
    assert msgpack.unpackb(s("x" * 40)) == "x" * 40
    assert msgpack.unpackb(str32(b"abc"), raw=True) == b"abc"
    assert msgpack.unpackb(uint(1_700_000_000)) == 1_700_000_000
    assert msgpack.unpackb(uint64(2**64 - 1)) == 2**64 - 1
    assert msgpack.unpackb(float64(1.5)) == 1.5
    assert msgpack.unpackb(array32([uint(1), uint(2)])) == [1, 2]
    assert msgpack.unpackb(record(log="a")) == {"log": "a"}
    assert msgpack.unpackb(event_time(1, 2)) == msgpack.ExtType(0, b"\x00\x00\x00\x01\x00\x00\x00\x02")
