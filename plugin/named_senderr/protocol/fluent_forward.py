"""Fluentd Forward Protocol v1: decode and encode frames, acks and the shared-key handshake.

Pure: bytes in, typed values out, no sockets, so every mode is tested from
bytes built by hand. ``FrameDecoder`` (forward_stream.py) cuts whole frames
from a stream without building them; ``decode_entries`` then decodes a
frame's entries one at a time, gunzipping as it goes, so what a frame costs
in memory is bounded by its limits, not by what its bytes claim. Entries are
unpacked with ``surrogateescape``: Fluentd's out_forward sends PackedForward
entries as str32 holding binary msgpack, and strings that are not UTF-8 keep
their original bytes (``str.encode("utf-8", "surrogateescape")``). EventTime
is msgpack ext type 0 (not msgpack's Timestamp, ext -1).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack

from named_senderr.protocol.forward_stream import (
    FEED_BYTES,
    FrameDecoder,
    FrameError,
    Limits,
    ObjectReader,
    RawFrame,
    as_text,
    too_large_entry,
    too_many_entries,
    unpack_error,
)

__all__ = [
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

EVENT_TIME_EXT = 0
MAX_SECONDS = 2**32 - 1  # EventTime's seconds are a uint32: up to 2106-02-07
NANOS = 1_000_000_000
_EVENT_TIME = struct.Struct(">II")


class EventTime(NamedTuple):
    """Fluentd's nanosecond time: ext type 0, 8 bytes, seconds then nanoseconds, big-endian.

    A NamedTuple because a frame can hold a million of them; msgpack would
    write a tuple as an array, so the encoders below turn it into ext 0.
    """

    seconds: int
    nanoseconds: int = 0

    @classmethod
    def from_float(cls, value: float) -> EventTime:
        seconds = int(value)
        nanoseconds = round((value - seconds) * 1e9)
        return cls(seconds + 1, 0) if nanoseconds == NANOS else cls(seconds, nanoseconds)

    @classmethod
    def unpack(cls, data: bytes) -> EventTime:
        return cls(*_EVENT_TIME.unpack(data))

    def to_ext(self) -> msgpack.ExtType:
        return msgpack.ExtType(EVENT_TIME_EXT, _EVENT_TIME.pack(self.seconds, self.nanoseconds))

    def to_float(self) -> float:
        return self.seconds + self.nanoseconds / 1e9


@dataclass(slots=True)
class Entry:
    """One event of a frame; ``time`` None means "now" (the sender sent 0 or nil)."""

    time: EventTime | None
    record: dict
    metadata: dict | None = None  # Fluent Bit v2+ ``[[time, metadata], record]``


@dataclass(frozen=True, slots=True)
class BadEntry:
    """An entry skipped (and counted) while the rest of its frame is taken: ``reason`` is invalid_entry or bad_time."""

    reason: str
    detail: str


@dataclass(slots=True)
class Frame:
    """A frame with its entries decoded; ``invalid`` counts the entries skipped, ``invalid_detail`` says why."""

    mode: str  # message, forward, packed_forward, compressed_packed_forward
    tag: str
    entries: list[Entry]
    option: dict = field(default_factory=dict)
    invalid: int = 0
    invalid_detail: str = ""

    @property
    def chunk(self) -> Any:
        """The ack id the sender waits for, or None when it asked for no ack."""
        return self.option.get("chunk")


_new_tuple = tuple.__new__  # EventTime._make without its Python frame: called once per entry


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EVENT_TIME_EXT and len(data) == 8:
        return _new_tuple(EventTime, _EVENT_TIME.unpack(data))
    return msgpack.ExtType(code, data)


def decode_frame(raw: RawFrame, limits: Limits | None = None) -> Frame:
    """Every entry of a whole frame at once (for peers and tests; the server streams with decode_entries)."""
    frame = Frame(raw.mode, raw.tag, [], raw.option)
    for entry in decode_entries(raw, limits or Limits()):
        if isinstance(entry, Entry):
            frame.entries.append(entry)
        else:
            frame.invalid += 1
            frame.invalid_detail = entry.detail
    return frame


def decode_entries(raw: RawFrame, limits: Limits) -> Iterator[Entry | BadEntry]:
    """The entries of a frame one by one; at most one entry is built at a time, every limit checked as it goes."""
    unpacker = msgpack.Unpacker(
        raw=False,
        unicode_errors="surrogateescape",
        ext_hook=_ext_hook,
        strict_map_key=False,
        max_buffer_size=limits.max_entry_bytes + FEED_BYTES,
        read_size=FEED_BYTES,
        max_map_len=limits.max_map_len,
        max_array_len=limits.max_map_len,
    )
    compressed = raw.mode == "compressed_packed_forward"
    count = fed = done = 0
    tell, max_entries, max_bytes = unpacker.tell, limits.max_entries, limits.max_entry_bytes
    for piece in _gunzip(raw.entries, limits.max_decompressed_bytes) if compressed else _pieces(raw.entries):
        try:
            unpacker.feed(piece)
        except msgpack.BufferFull:
            raise FrameError(too_large_entry(max_bytes)) from None
        fed += len(piece)
        try:
            for obj in unpacker:
                count += 1
                if count > max_entries:
                    raise FrameError(too_many_entries(count, max_entries))
                end = tell()
                if end - done > max_bytes:
                    raise FrameError(too_large_entry(max_bytes))
                done = end
                if type(obj) is list and len(obj) == 2:  # the common case, fast: [EventTime, record]
                    time, record = obj
                    if type(time) is EventTime and type(record) is dict and time[0] and time[1] < NANOS:
                        yield Entry(time, record)
                        continue
                yield _entry_slowly(obj)
        except (msgpack.UnpackException, ValueError, TypeError) as exc:  # TypeError: a map keyed by an array
            raise unpack_error(exc) from None
        if fed - done > max_bytes:  # msgpack builds a container as its bytes come: count from its start
            raise FrameError(too_large_entry(max_bytes))
    if done != fed:
        raise FrameError(f"packed entries end inside an entry (byte {done:,} of {fed:,})")


def _pieces(parts: Iterable[bytes | memoryview]) -> Iterator[memoryview]:
    for part in parts:
        with memoryview(part) as view:
            for start in range(0, len(view), FEED_BYTES):
                yield view[start : start + FEED_BYTES]


def _gunzip(parts: Iterable[bytes | memoryview], limit: int) -> Iterator[bytes]:
    """One or more gzip members decompressed a piece at a time, refusing more than ``limit`` bytes (a gzip bomb)."""
    total = 0
    inflater, started = zlib.decompressobj(wbits=31), False

    def inflate(data: bytes | memoryview) -> bytes:
        nonlocal total
        try:
            piece = inflater.decompress(data, FEED_BYTES)
        except zlib.error as exc:
            raise FrameError(f"compressed entries are not gzip ({exc})") from None
        total += len(piece)
        if total > limit:
            raise FrameError(
                f"gzip entries expand past the limit of {limit:,} bytes (a gzip bomb?); raise --max-decompressed-size"
            )
        return piece

    for part in parts:
        pending: bytes | memoryview = part
        while pending:
            started = True
            yield inflate(pending)
            if inflater.eof:  # Fluentd appends a member per write: the next one starts in what is left
                pending, inflater, started = inflater.unused_data, zlib.decompressobj(wbits=31), False
            else:
                pending = inflater.unconsumed_tail
    while started and not inflater.eof:  # output zlib still holds once all the input is in
        if not (piece := inflate(b"")):
            raise FrameError("compressed entries end inside a gzip stream")
        yield piece


def _entry_slowly(raw: Any) -> Entry | BadEntry:
    """Integer and float times, Fluent Bit's metadata form, and the bad entries, which are counted."""
    if not isinstance(raw, list) or len(raw) != 2:
        return BadEntry("invalid_entry", f"an entry is not [time, record]: {_describe(raw)}")
    time, record = raw
    metadata = None
    if isinstance(time, list) and len(time) == 2 and isinstance(time[1], dict):
        time, metadata = time  # Fluent Bit: [[EventTime, {metadata}], record]
    event_time = _event_time(time)
    if isinstance(event_time, BadEntry):
        return event_time
    if not isinstance(record, dict):
        return BadEntry("invalid_entry", f"an entry's record is not a map: {_describe(record)}")
    return Entry(event_time, record, metadata)


def _event_time(value: Any) -> EventTime | BadEntry | None:
    """EventTime, None for "now" (0 or nil, as Fluentd reads them), or why it is no time between 1970 and 2106."""
    if value is None or (type(value) in (int, float) and value == 0):
        return None
    if type(value) is float:
        return EventTime.from_float(value) if math.isfinite(value) and 0 < value <= MAX_SECONDS else _bad_time(value)
    if type(value) is int:
        seconds, nanoseconds = value, 0
    elif isinstance(value, EventTime):
        seconds, nanoseconds = value
    elif isinstance(value, msgpack.Timestamp):  # lenient: msgpack's own ext -1
        seconds, nanoseconds = value.seconds, value.nanoseconds
    else:
        return BadEntry("invalid_entry", f"an entry's time is not a time: {_describe(value)}")
    if not (seconds or nanoseconds):
        return None
    if 0 <= seconds <= MAX_SECONDS and 0 <= nanoseconds < NANOS:
        return EventTime(seconds, nanoseconds)
    return _bad_time(value)


def _bad_time(value: Any) -> BadEntry:
    looks_like_ms = type(value) in (int, float) and 1e11 <= value < 1e14
    return BadEntry(
        "bad_time",
        f"an entry's time {_describe(value)} is not between 1970 and 2106"
        f"{' (milliseconds? Forward times are seconds)' if looks_like_ms else ''}; check the sender's clock and time format",
    )


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


# --- encoding -------------------------------------------------------------------------------------


_PACKER_OPTIONS = {"use_bin_type": True, "unicode_errors": "surrogateescape"}


def _wire_time(time: Any) -> Any:
    """EventTime as ext 0 (a NamedTuple would otherwise go out as an array)."""
    return time.to_ext() if isinstance(time, EventTime) else time


def _wire_entry(entry: tuple[Any, dict]) -> list[Any]:
    time, record = entry
    return [_wire_time(time), record]


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, **_PACKER_OPTIONS)


def encode_message(tag: str, time: EventTime | int, record: dict, option: dict | None = None) -> bytes:
    return _pack([tag, _wire_time(time), record] + ([option] if option is not None else []))


def encode_forward(tag: str, entries: Iterable[tuple[Any, dict]], option: dict | None = None) -> bytes:
    return _pack([tag, [_wire_entry(entry) for entry in entries]] + ([option] if option is not None else []))


def encode_packed_forward(
    tag: str,
    entries: Iterable[tuple[Any, dict]],
    option: dict | None = None,
    *,
    gzip: bool = False,
    as_str32: bool = False,
) -> bytes:
    """PackedForward (bin); ``as_str32`` writes the entries as Fluentd's out_forward does, a str32."""
    packer = msgpack.Packer(**_PACKER_OPTIONS)
    blob = b"".join(packer.pack(_wire_entry(entry)) for entry in entries)
    option = dict(option or {})
    if gzip:
        compressor = zlib.compressobj(wbits=31)
        blob = compressor.compress(blob) + compressor.flush()
        option["compressed"] = "gzip"
    head = b"\x93" if option else b"\x92"
    body = b"\xdb" + struct.pack(">I", len(blob)) + blob if as_str32 else packer.pack(blob)
    return head + packer.pack(tag) + body + (packer.pack(option) if option else b"")


def encode_ack(chunk: Any) -> bytes:
    return _pack({"ack": chunk})


# --- shared-key handshake (HELO, PING, PONG) ------------------------------------------------------


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise FrameError(f"expected a string in the handshake, got {_describe(value)}")


def shared_key_digest(salt: bytes, hostname: bytes, nonce: bytes, shared_key: bytes) -> str:
    """sha512_hex(salt + hostname + nonce + shared_key), as both PING and PONG carry it."""
    return hashlib.sha512(salt + hostname + nonce + shared_key).hexdigest()


def encode_helo(nonce: bytes, auth: bytes = b"", keepalive: bool = True) -> bytes:
    return _pack(["HELO", {"nonce": nonce, "auth": auth, "keepalive": keepalive}])


def encode_ping(hostname: str, salt: bytes, nonce: bytes, shared_key: str) -> bytes:
    """The client's answer to HELO (no user authentication: empty username and password digest)."""
    digest = shared_key_digest(salt, hostname.encode(), nonce, shared_key.encode())
    return _pack(["PING", hostname, salt, digest, "", ""])


def encode_pong(ok: bool, reason: str, hostname: str = "", digest: str = "") -> bytes:
    return _pack(["PONG", ok, reason, hostname, digest])


@dataclass(frozen=True, slots=True)
class PingCheck:
    ok: bool
    reason: str  # why it failed, or "" when ok
    salt: bytes = b""
    hostname: str = ""


def check_ping(message: Any, nonce: bytes, shared_key: bytes) -> PingCheck:
    """Verify a PING against the nonce we sent and our shared key, in constant time."""
    if not isinstance(message, list) or len(message) != 6 or _maybe_bytes(message[0]) != b"PING":
        return PingCheck(
            False, f"expected ['PING', hostname, salt, digest, username, password], got {_describe(message)}"
        )
    try:
        hostname, salt, digest = (_bytes(v) for v in message[1:4])
    except FrameError as exc:
        return PingCheck(False, str(exc))
    expected = shared_key_digest(salt, hostname, nonce, shared_key).encode()
    if not hmac.compare_digest(digest, expected):
        return PingCheck(False, "shared_key mismatch", salt, as_text(hostname))
    return PingCheck(True, "", salt, as_text(hostname))


def _maybe_bytes(value: Any) -> bytes | None:
    return value if isinstance(value, bytes) else value.encode() if isinstance(value, str) else None
