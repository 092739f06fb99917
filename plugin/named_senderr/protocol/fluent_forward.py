"""Fluentd Forward Protocol v1: decode and encode frames, acks and the shared-key handshake.

Pure: bytes in, typed values out, no sockets, so every mode is tested from
bytes built by hand. The outer array is unpacked raw, because Fluentd's
out_forward sends PackedForward entries as str32 holding binary msgpack, which
a UTF-8 decoding unpacker refuses; the entries blob then goes to a second
unpacker. Strings that are not UTF-8 are kept with ``surrogateescape``, so the
original bytes can always be recovered (``str.encode("utf-8", "surrogateescape")``).
EventTime is msgpack ext type 0 (not msgpack's Timestamp, ext -1).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack

from named_senderr.errors import NamedSenderrError

__all__ = [
    "Entry",
    "EventTime",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "Limits",
    "check_ping",
    "decode_frame",
    "encode_ack",
    "encode_forward",
    "encode_helo",
    "encode_message",
    "encode_packed_forward",
    "encode_ping",
    "encode_pong",
    "gunzip_bounded",
    "shared_key_digest",
]

EVENT_TIME_EXT = 0
NS_PER_SECOND = 1_000_000_000  # an EventTime's nanoseconds are the fraction of its second: below this
MAX_DEPTH = 64  # records nest a few levels; deeper is hostile (msgpack itself stops at 1024)
_EVENT_TIME = struct.Struct(">II")


class FrameError(NamedSenderrError):
    """The bytes from a peer are not a Forward frame; that connection must be closed."""


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
        nanoseconds = round((value - seconds) * 1e9)  # 1.9999999999 rounds up to the next second
        return cls(seconds + 1, 0) if nanoseconds == NS_PER_SECOND else cls(seconds, nanoseconds)

    @classmethod
    def unpack(cls, data: bytes) -> EventTime:
        return cls(*_EVENT_TIME.unpack(data))

    def to_ext(self) -> msgpack.ExtType:
        return msgpack.ExtType(EVENT_TIME_EXT, _EVENT_TIME.pack(self.seconds, self.nanoseconds))

    def to_float(self) -> float:
        return self.seconds + self.nanoseconds / 1e9


@dataclass(frozen=True)
class Limits:
    """What one peer may make us hold; beyond it the frame is refused and the connection closed."""

    max_frame_bytes: int = 32 * 1024 * 1024
    max_decompressed_bytes: int = 128 * 1024 * 1024
    max_entries: int = 1_000_000
    max_map_len: int = 100_000


@dataclass(slots=True)
class Entry:
    """One event of a frame; ``time`` None means "now" (the sender sent 0 or nil)."""

    time: EventTime | None
    record: dict
    metadata: dict | None = None  # Fluent Bit v2+ ``[[time, metadata], record]``


@dataclass(slots=True)
class Frame:
    """A decoded frame; ``invalid`` counts entries skipped because they were not ``[time, map]``."""

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


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EVENT_TIME_EXT and len(data) == 8:
        return EventTime._make(_EVENT_TIME.unpack(data))
    return msgpack.ExtType(code, data)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _decode(obj: Any, depth: int = 0) -> Any:
    """A raw-unpacked value with its byte strings turned to str (surrogateescape keeps bad bytes)."""
    if isinstance(obj, bytes):
        return _text(obj)
    if depth > MAX_DEPTH:
        raise FrameError(f"record nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, dict):
        return {(_text(k) if isinstance(k, bytes) else k): _decode(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, depth + 1) for v in obj]
    return obj


class FrameDecoder:
    """Cuts one connection's byte stream into msgpack objects, refusing oversize and garbage."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._unpacker = msgpack.Unpacker(
            raw=True,
            ext_hook=_ext_hook,
            strict_map_key=False,
            max_buffer_size=self.limits.max_frame_bytes,
            max_array_len=self.limits.max_entries,
            max_map_len=self.limits.max_map_len,
        )

    def feed(self, data: bytes) -> Iterator[Any]:
        """Every whole object ``data`` completes; raises FrameError on garbage or an oversize frame."""
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise FrameError(
                f"a frame is larger than the limit of {self.limits.max_frame_bytes:,} bytes; lower the sender's "
                "chunk_limit_size or raise --max-frame-size"
            ) from None
        while True:
            try:
                obj = next(self._unpacker)
            except StopIteration:
                return
            except (msgpack.UnpackException, ValueError) as exc:  # FormatError, StackError, limits
                raise FrameError(f"bytes are not a msgpack Forward frame ({type(exc).__name__}: {exc})") from None
            yield obj


def decode_frame(obj: Any, limits: Limits | None = None) -> Frame:
    """Classify a raw-unpacked object as one of the four modes, told apart by its second element."""
    limits = limits or Limits()
    if not isinstance(obj, list) or not 2 <= len(obj) <= 4:
        raise FrameError(f"a frame must be an array [tag, ...] of 2 to 4 elements, got {_describe(obj)}")
    tag = obj[0]
    if not isinstance(tag, bytes):
        raise FrameError(f"a frame's tag must be a string, got {_describe(tag)}")
    second = obj[1]
    if isinstance(second, bytes):  # PackedForward: str or bin of concatenated entries
        option = _option(obj[2] if len(obj) > 2 else None)
        compressed = option.get("compressed")
        if compressed not in (None, "gzip", "text"):
            raise FrameError(f"unknown compression {compressed!r}; only 'gzip' is defined")
        blob = gunzip_bounded(second, limits.max_decompressed_bytes) if compressed == "gzip" else second
        mode = "compressed_packed_forward" if compressed == "gzip" else "packed_forward"
        frame = Frame(mode, _text(tag), [], option)
        _add_entries(frame, _packed_entries(blob, limits))
        return frame
    if isinstance(second, list):  # Forward: [[time, record], ...]
        frame = Frame("forward", _text(tag), [], _option(obj[2] if len(obj) > 2 else None))
        _add_entries(frame, (_decode(entry) for entry in second))
        return frame
    if len(obj) < 3:
        raise FrameError(f"a Message frame is [tag, time, record], got {len(obj)} elements")
    frame = Frame("message", _text(tag), [], _option(obj[3] if len(obj) > 3 else None))
    _add_entries(frame, [[second, _decode(obj[2])]])
    return frame


def _option(value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FrameError(f"a frame's option must be a map, got {_describe(value)}")
    return _decode(value)


def _packed_entries(blob: bytes, limits: Limits) -> list[Any]:
    unpacker = msgpack.Unpacker(
        raw=False,
        unicode_errors="surrogateescape",
        ext_hook=_ext_hook,
        strict_map_key=False,
        max_buffer_size=max(len(blob), 1),
        max_map_len=limits.max_map_len,
        max_array_len=limits.max_entries,
    )
    unpacker.feed(blob)
    try:
        entries = list(unpacker)  # bounded: the blob is at most max_decompressed_bytes
    except (msgpack.UnpackException, ValueError) as exc:
        raise FrameError(f"packed entries are not msgpack ({type(exc).__name__}: {exc})") from None
    if unpacker.tell() != len(blob):
        raise FrameError(f"packed entries end inside an entry (byte {unpacker.tell()} of {len(blob)})")
    if len(entries) > limits.max_entries:
        raise FrameError(f"{len(entries):,} entries in one frame, more than the limit of {limits.max_entries:,}")
    return entries


def _add_entries(frame: Frame, entries: Iterable[Any]) -> None:
    append = frame.entries.append
    for raw in entries:
        if type(raw) is list and len(raw) == 2:
            time, record = raw
            if type(time) is EventTime and type(record) is dict and time.seconds and time.nanoseconds < NS_PER_SECOND:
                append(Entry(time, record))
                continue
        _add_slowly(frame, raw)


def _add_slowly(frame: Frame, raw: Any) -> None:
    """Integer and float times, Fluent Bit's metadata form, and the invalid entries, which are counted."""
    if not isinstance(raw, list) or len(raw) != 2:
        frame.invalid += 1
        frame.invalid_detail = f"an entry is not [time, record]: {_describe(raw)}"
        return
    time, record = raw
    metadata = None
    if isinstance(time, list) and len(time) == 2 and isinstance(time[1], dict):
        time, metadata = time  # Fluent Bit: [[EventTime, {metadata}], record]
    event_time = _event_time(time)
    if not isinstance(record, dict) or event_time is False:
        frame.invalid += 1
        frame.invalid_detail = (
            f"an entry's time or record is invalid: time {_describe(time)}, record {_describe(record)}"
        )
        return
    frame.entries.append(Entry(event_time, record, metadata))  # type: ignore[arg-type]


def _event_time(value: Any) -> EventTime | bool | None:
    """EventTime, None for "now" (0 or nil, as Fluentd reads them), or False when not a time.

    Nanoseconds of 10^9 or more are not a time: Fluent Bit refuses such an EventTime when it decodes
    one and never encodes one (flb_time_is_valid_eventtime), and carrying them into the seconds would
    forge a time the sender never had.
    """
    if isinstance(value, EventTime):
        if value.nanoseconds >= NS_PER_SECOND:
            return False
        return value if value.seconds or value.nanoseconds else None
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return EventTime(value) if value > 0 else None
    if isinstance(value, float):
        return EventTime.from_float(value) if value > 0 else None
    if isinstance(value, msgpack.Timestamp):  # lenient: msgpack's own ext -1
        return EventTime(value.seconds, value.nanoseconds)
    return None if value is None else False


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Decompress one or more gzip members, refusing more than ``limit`` bytes of output (a gzip bomb)."""
    parts: list[bytes] = []
    total = 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            part = inflater.decompress(data, limit - total + 1)
        except zlib.error as exc:
            raise FrameError(f"compressed entries are not gzip ({exc})") from None
        total += len(part)
        if total > limit:
            raise FrameError(
                f"gzip entries expand past the limit of {limit:,} bytes (a gzip bomb?); raise --max-decompressed-size"
            )
        if not inflater.eof:
            raise FrameError("compressed entries end inside a gzip stream")
        parts.append(part)
        data = inflater.unused_data
    return b"".join(parts)


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
        return PingCheck(False, "shared_key mismatch", salt, _text(hostname))
    return PingCheck(True, "", salt, _text(hostname))


def _maybe_bytes(value: Any) -> bytes | None:
    return value if isinstance(value, bytes) else value.encode() if isinstance(value, str) else None
