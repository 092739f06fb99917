"""Where a Forward frame ends, found without building it: the part of the decoder that runs on the event loop.

A frame is kept as the bytes it came in (one byte of memory per byte received)
until it is whole; only then are its entries decoded, one at a time, on the
worker (``fluent_forward.decode_entries``). The frame's layout (the outer
array, the tag, the header of the entries) is read here by hand, so a bin32
that claims 4 GiB is refused at its header, before any of it is held; Forward
mode entries are walked with msgpack's ``skip``, which builds nothing. Every
limit is checked as the bytes arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from named_senderr.errors import NamedSenderrError

MIB = 1024 * 1024
SMALL_OBJECT_BYTES = 64 * 1024  # a tag, an option map, a PING: anything bigger is not a Forward peer
FEED_BYTES = 64 * 1024  # what an incremental unpacker is given at a time
DETACH_BYTES = 1 * MIB  # a frame this large hands its buffer over instead of copying its entries out
HEARTBEAT = b"\xc0"  # nil between frames
_WIDTHS = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4, 0xDC: 2, 0xDD: 4}  # header code -> length bytes
_STRINGS = (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6)
_ARRAYS = (0xDC, 0xDD)


class FrameError(NamedSenderrError):
    """The bytes from a peer are not a Forward frame, or exceed a limit; that connection must be closed."""


@dataclass(frozen=True)
class Limits:
    """What one peer may make us hold or decode; beyond it the frame is refused and the connection closed.

    A frame's events wait in memory for its ack (about 1 KB each), hence the
    entry count; an entry is decoded whole, hence its size.
    """

    max_frame_bytes: int = 32 * MIB
    max_decompressed_bytes: int = 128 * MIB
    max_entries: int = 100_000
    max_entry_bytes: int = 1 * MIB
    max_map_len: int = 100_000


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A whole frame with its entries still bytes (gzip'd for compressed_packed_forward).

    ``entries`` is the concatenated msgpack of the entries in every mode: a
    Message frame's time and record become one ``[time, record]`` entry.
    """

    mode: str  # message, forward, packed_forward, compressed_packed_forward
    tag: str
    entries: bytes | memoryview
    option: dict
    size: int  # bytes on the wire

    @property
    def chunk(self) -> Any:
        """The ack id the sender waits for, or None when it asked for no ack."""
        return self.option.get("chunk")


@dataclass(frozen=True, slots=True)
class _Layout:
    elements: int
    tag: str
    mode: str  # packed_forward, forward or message
    body: int  # where the entries start, from the frame's first byte
    length: int  # packed: bytes of entries; forward: entries; message: 2 (its time and record)


class _Short(Exception):
    """Not all of the layout has arrived yet."""


class _Cursor:
    """Reads a frame's layout from its first byte; raises _Short past the bytes received."""

    def __init__(self, buf: bytearray, start: int) -> None:
        self.buf, self.at, self.end = buf, start, len(buf)

    def take(self, count: int) -> bytes:
        if self.at + count > self.end:
            raise _Short
        self.at += count
        return bytes(self.buf[self.at - count : self.at])

    def length(self, code: int) -> int:
        """The length a str, bin or array header announces (its type byte already taken)."""
        if 0xA0 <= code <= 0xBF or 0x90 <= code <= 0x9F:
            return code & (0x1F if code >= 0xA0 else 0x0F)
        return int.from_bytes(self.take(_WIDTHS[code]), "big")


def _is_string(code: int) -> bool:
    return 0xA0 <= code <= 0xBF or code in _STRINGS


def _is_array(code: int) -> bool:
    return 0x90 <= code <= 0x9F or code in _ARRAYS


def read_layout(buf: bytearray, start: int, limits: Limits) -> _Layout:
    """The outer array, the tag and the header of the entries; raises _Short or FrameError."""
    cursor = _Cursor(buf, start)
    code = cursor.take(1)[0]
    if not _is_array(code):
        raise FrameError(f"a frame must be an array [tag, ...] of 2 to 4 elements, got msgpack type 0x{code:02x}")
    elements = cursor.length(code)
    if not 2 <= elements <= 4:
        raise FrameError(f"a frame must be an array [tag, ...] of 2 to 4 elements, got {elements}")
    code = cursor.take(1)[0]
    if not _is_string(code):
        raise FrameError(f"a frame's tag must be a string, got msgpack type 0x{code:02x}")
    size = cursor.length(code)
    if size > SMALL_OBJECT_BYTES:
        raise FrameError(f"a tag of {size:,} bytes; a tag is a short name")
    tag = cursor.take(size).decode("utf-8", "surrogateescape")
    second = cursor.at
    code = cursor.take(1)[0]
    if _is_string(code):  # PackedForward: str or bin of concatenated entries
        size = cursor.length(code)
        if cursor.at - start + size > limits.max_frame_bytes:
            raise FrameError(
                f"a frame announces {size:,} bytes of entries, more than the limit of {limits.max_frame_bytes:,}; "
                "lower the sender's chunk_limit_size or raise --max-frame-size"
            )
        return _Layout(elements, tag, "packed_forward", cursor.at - start, size)
    if _is_array(code):  # Forward: [[time, record], ...]
        count = cursor.length(code)
        if count > limits.max_entries:
            raise FrameError(too_many_entries(count, limits.max_entries))
        return _Layout(elements, tag, "forward", cursor.at - start, count)
    if elements < 3:
        raise FrameError(f"a Message frame is [tag, time, record], got {elements} elements")
    return _Layout(elements, tag, "message", second - start, 2)


def too_many_entries(count: int, limit: int) -> str:
    return (
        f"{count:,} entries in one frame, more than the limit of {limit:,}; lower the sender's chunk_limit_records "
        "or chunk_limit_size, or raise --max-entries"
    )


def _too_large_frame(limit: int) -> str:
    return (
        f"a frame is larger than the limit of {limit:,} bytes; lower the sender's chunk_limit_size "
        "or raise --max-frame-size"
    )


def too_large_entry(limit: int) -> str:
    return f"an entry is larger than the limit of {limit:,} bytes; raise --max-entry-size"


def skipping_unpacker(max_bytes: int) -> msgpack.Unpacker:
    return msgpack.Unpacker(max_buffer_size=max_bytes + FEED_BYTES)


def unpack_error(exc: Exception) -> FrameError:
    return FrameError(f"bytes are not a msgpack Forward frame ({type(exc).__name__}: {exc})")


class FrameDecoder:
    """Cuts one connection's byte stream into RawFrames, holding only the bytes of the frame in progress."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buf = bytearray()
        self._start = 0  # the first byte of the frame in progress in _buf
        self._clear()

    def _clear(self) -> None:
        self._layout: _Layout | None = None
        self._body_end: int | None = None  # from the frame's first byte
        self._skipper: msgpack.Unpacker | None = None
        self._skipped = 0  # objects of the body skipped so far
        self._fed = 0  # bytes of the body given to the skipper
        self._object = 0  # where the object being skipped starts in the body

    @property
    def pending(self) -> int:
        """Bytes held of a frame not yet whole (0 between frames)."""
        return len(self._buf) - self._start

    def feed(self, data: bytes) -> list[RawFrame]:
        """Every frame ``data`` completes; raises FrameError at the first limit exceeded or malformed byte."""
        self._buf += data
        frames = []
        while (frame := self._next()) is not None:
            frames.append(frame)
        del self._buf[: self._start]
        self._start = 0
        if self.pending > self.limits.max_frame_bytes:
            raise FrameError(_too_large_frame(self.limits.max_frame_bytes))
        return frames

    def _next(self) -> RawFrame | None:
        if self._layout is None:
            while self._buf.startswith(HEARTBEAT, self._start):
                self._start += 1  # heartbeats between frames: nothing to decode
            if self.pending == 0:
                return None
            try:
                self._layout = read_layout(self._buf, self._start, self.limits)
            except _Short:
                return None
        layout = self._layout
        if self._body_end is None:
            self._body_end = self._packed_end(layout) if layout.mode == "packed_forward" else self._skip(layout)
            if self._body_end is None:
                return None
        trailer = self._trailer(layout.elements - (3 if layout.mode == "message" else 2))
        if trailer is None:
            return None
        option, end = trailer
        if end > self.limits.max_frame_bytes:
            raise FrameError(_too_large_frame(self.limits.max_frame_bytes))
        mode = layout.mode
        if mode == "packed_forward" and option.get("compressed") == "gzip":
            mode = "compressed_packed_forward"
        elif mode == "packed_forward" and option.get("compressed") not in (None, "text"):
            raise FrameError(f"unknown compression {option.get('compressed')!r}; only 'gzip' is defined")
        body = self._take(layout.body, self._body_end, end)
        if mode == "message":
            body = b"\x92" + body  # time and record, as the one entry [time, record]
        self._clear()
        return RawFrame(mode, layout.tag, body, option, end)

    def _take(self, body: int, body_end: int, end: int) -> bytes | memoryview:
        """The entries of the frame that ends at ``end``; a large one keeps the buffer itself, never a second copy."""
        if self._start or end < DETACH_BYTES:
            entries = self._slice(self._start + body, self._start + body_end)
            self._start += end
            return entries
        whole, self._buf = self._buf, self._buf[end:]
        del whole[end:]
        return memoryview(whole)[body:body_end]

    def _packed_end(self, layout: _Layout) -> int | None:
        end = layout.body + layout.length
        return end if self.pending >= end else None

    def _skip(self, layout: _Layout) -> int | None:
        """Walk the body's objects with msgpack's skip (nothing is built), each at most max_entry_bytes."""
        limit = self.limits.max_entry_bytes
        if self._skipper is None:
            self._skipper = skipping_unpacker(limit)
        skipper, origin = self._skipper, self._start + layout.body
        while self._skipped < layout.length:
            try:
                skipper.skip()
            except msgpack.OutOfData:
                if self._fed - self._object > limit:  # msgpack consumes a container as it goes: count from its start
                    raise FrameError(too_large_entry(limit)) from None
                piece = self._slice(origin + self._fed, origin + self._fed + FEED_BYTES)
                if not piece:
                    return None
                try:
                    skipper.feed(piece)
                except msgpack.BufferFull:
                    raise FrameError(too_large_entry(limit)) from None
                self._fed += len(piece)
                continue
            except (msgpack.UnpackException, ValueError) as exc:
                raise unpack_error(exc) from None
            self._skipped += 1
            self._object = skipper.tell()
        return layout.body + skipper.tell()

    def _slice(self, start: int, end: int) -> bytes:
        with memoryview(self._buf) as view:
            return bytes(view[start:end])

    def _trailer(self, count: int) -> tuple[dict, int] | None:
        """The option map and any element after it (each small), and where the frame ends; None if not all here."""
        assert self._body_end is not None
        at = self._start + self._body_end
        window = self._slice(at, at + count * SMALL_OBJECT_BYTES)
        unpacker = msgpack.Unpacker(
            raw=False, unicode_errors="surrogateescape", strict_map_key=False, max_buffer_size=len(window) or 1
        )
        unpacker.feed(window)
        objects = []
        try:
            for _ in range(count):
                objects.append(unpacker.unpack())
        except msgpack.OutOfData:
            if len(window) == count * SMALL_OBJECT_BYTES:
                raise FrameError(f"a frame's option is larger than {SMALL_OBJECT_BYTES:,} bytes") from None
            return None
        except (msgpack.UnpackException, ValueError) as exc:
            raise unpack_error(exc) from None
        option = objects[0] if objects else None
        if option is not None and not isinstance(option, dict):
            raise FrameError(f"a frame's option must be a map, got {type(option).__name__}")
        return option or {}, self._body_end + unpacker.tell()


class ObjectReader:
    """One small msgpack object (the PING of the handshake), refused past ``max_bytes`` before it is whole."""

    def __init__(self, max_bytes: int = SMALL_OBJECT_BYTES) -> None:
        self.max_bytes = max_bytes
        self._unpacker = msgpack.Unpacker(raw=True, max_buffer_size=max_bytes)
        self._held = 0

    def feed(self, data: bytes) -> tuple[Any, bytes] | None:
        """The object and the bytes after it, once it is whole; None until then."""
        self._held += len(data)
        try:
            self._unpacker.feed(data)
            obj = self._unpacker.unpack()
        except msgpack.OutOfData:
            if self._held >= self.max_bytes:
                raise FrameError(f"more than {self.max_bytes:,} bytes before the handshake's PING ended") from None
            return None
        except msgpack.BufferFull:
            raise FrameError(f"more than {self.max_bytes:,} bytes before the handshake's PING ended") from None
        except (msgpack.UnpackException, ValueError) as exc:
            raise unpack_error(exc) from None
        return obj, self._unpacker.read_bytes(self._held)
