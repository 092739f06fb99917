"""Where a Forward frame ends, found without building it: the part of the decoder that runs on the event loop.

A frame is kept as the bytes it came in (one byte of memory per byte received,
in chunks that never move) until it is whole; only then are its entries
decoded, one at a time, on the worker (``fluent_forward.decode_entries``). One
msgpack unpacker per connection walks the stream: it reads the outer array and
the tag, skips Forward-mode entries (``skip`` builds nothing), and never sees a
PackedForward blob at all: that is counted off its header, so a bin32 that
claims 4 GiB is refused before any of it is held. Every limit is checked as
the bytes arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from named_senderr.errors import NamedSenderrError

MIB = 1024 * 1024
SMALL_OBJECT_BYTES = 64 * 1024  # a tag, an option map, a PING: anything bigger is not a Forward peer
FEED_BYTES = 64 * 1024  # what an incremental unpacker is given at a time
CHUNK_BYTES = 256 * 1024  # what a frame in progress is held in
HEARTBEAT = 0xC0  # nil between frames
_WIDTHS = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}  # str8-32, bin8-32: bytes of their length


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

    ``entries`` is the concatenated msgpack of the entries in every mode (a
    Message frame's time and record become one ``[time, record]`` entry), in
    the pieces it was received in.
    """

    mode: str  # message, forward, packed_forward, compressed_packed_forward
    tag: str
    entries: tuple[bytes | memoryview, ...]  # in pieces, as they were held
    option: dict
    size: int  # bytes on the wire

    @property
    def chunk(self) -> Any:
        """The ack id the sender waits for, or None when it asked for no ack."""
        return self.option.get("chunk")


class _Short(Exception):
    """Not all of the frame has arrived yet."""


def _is_string(code: int) -> bool:
    return 0xA0 <= code <= 0xBF or code in _WIDTHS


def _is_array(code: int) -> bool:
    return 0x90 <= code <= 0x9F or code in (0xDC, 0xDD)


def as_text(value: Any) -> Any:
    """Bytes as str, keeping bytes that are not UTF-8 as lone surrogates; anything else as it is."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


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


def unpack_error(exc: Exception) -> FrameError:
    return FrameError(f"bytes are not a msgpack Forward frame ({type(exc).__name__}: {exc})")


class _Chunks:
    """Bytes held in chunks of CHUNK_BYTES: growing never moves what is held.

    One growing buffer would be copied as it grows, and the allocator keeps
    the holes: peers parking large frames would cost twice what they hold.
    """

    def __init__(self) -> None:
        self.chunks: list[bytearray] = []
        self.size = 0

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        if self.chunks and (room := CHUNK_BYTES - len(self.chunks[-1])) > 0:
            self.chunks[-1] += view[:room]
            view = view[room:]
        self.chunks.extend(bytearray(view[at : at + CHUNK_BYTES]) for at in range(0, len(view), CHUNK_BYTES))
        self.size += len(data)

    def _spans(self, start: int, end: int) -> Iterator[tuple[int, bytearray, int, int]]:
        """(index, chunk, from, to) of every chunk that [start, end) touches."""
        offset = 0
        for index, chunk in enumerate(self.chunks):
            low, high = max(start - offset, 0), min(end - offset, len(chunk))
            if low < high:
                yield index, chunk, low, high
            offset += len(chunk)
            if offset >= end:
                return

    def read(self, start: int, end: int) -> bytes:
        """A copy of [start, end) (less at the end of what is held): for the small parts of a frame."""
        if self.chunks and end <= len(self.chunks[0]):  # the usual case: all in the first chunk
            return bytes(self.chunks[0][start:end])
        return b"".join(chunk[low:high] for _, chunk, low, high in self._spans(start, end))

    def pieces(self, start: int, end: int) -> list[bytes | memoryview]:
        """[start, end) without copying the full chunks (never appended to again); the last one is copied."""
        last = len(self.chunks) - 1
        return [
            memoryview(chunk)[low:high] if index < last else bytes(chunk[low:high])
            for index, chunk, low, high in self._spans(start, end)
        ]

    def drop(self, before: int) -> int:
        """Let go of the chunks wholly before ``before``; returns how many bytes went."""
        dropped = 0
        while self.chunks and before - dropped >= len(self.chunks[0]):
            dropped += len(self.chunks[0])
            del self.chunks[0]
        self.size -= dropped
        return dropped


class FrameDecoder:
    """Cuts one connection's byte stream into RawFrames, holding only the bytes of the frame in progress.

    Stream offsets count from the connection's first byte; the unpacker's
    ``tell()`` plus the PackedForward blobs it never saw (``_jump``) is where
    the walk is.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buf = _Chunks()
        self._base = 0  # the stream offset of the first byte held
        self._fed = 0  # the stream offset up to which the unpacker has been given bytes
        self._jump = 0
        self._origin = 0  # where the frame in progress starts
        self._scanner = msgpack.Unpacker(
            raw=True,
            strict_map_key=False,
            max_buffer_size=self.limits.max_entry_bytes + FEED_BYTES,
            read_size=4096,  # what it allocates up front (1 MiB by default): it grows when fed more
        )
        self._next_frame()

    def _next_frame(self) -> None:
        # the next step as a plain function: a bound method kept on self would be a cycle, held until a gc pass
        self._step: Callable[[FrameDecoder], RawFrame | None] = FrameDecoder._head
        self._elements = self._left = 0  # elements of the outer array; objects left to skip or read
        self._tag = self._mode = ""
        self._body = (0, 0)
        self._object = 0  # where the object being walked starts
        self._option: dict | None = None

    @property
    def pending(self) -> int:
        """Bytes held of a frame not yet whole (0 between frames)."""
        return self._base + self._buf.size - self._origin

    @property
    def _at(self) -> int:
        return self._scanner.tell() + self._jump

    def feed(self, data: bytes) -> list[RawFrame]:
        """Every frame ``data`` completes; raises FrameError at the first limit exceeded or malformed byte."""
        self._buf.append(data)
        frames = []
        try:
            while True:
                if (frame := self._step(self)) is not None:
                    frames.append(frame)
        except _Short:
            pass
        self._base += self._buf.drop(self._origin - self._base)
        if self.pending > self.limits.max_frame_bytes:
            raise FrameError(_too_large_frame(self.limits.max_frame_bytes))
        return frames

    # --- walking the unpacker over what has arrived -------------------------------------------

    def _peek(self, count: int = 1) -> bytes:
        at = self._at - self._base
        data = self._buf.read(at, at + count)
        if len(data) < count:
            raise _Short
        return data

    def _feed_scanner(self) -> None:
        at = self._fed - self._base
        piece = self._buf.read(at, at + FEED_BYTES)
        if not piece:
            raise _Short
        try:
            self._scanner.feed(piece)
        except msgpack.BufferFull:
            raise FrameError(too_large_entry(self.limits.max_entry_bytes)) from None
        self._fed += len(piece)

    def _walk(self, step: Callable[[], Any], limit: int, too_large: str) -> Any:
        """One unpacker call on the object starting at _object, fed as it asks, at most ``limit`` bytes."""
        while True:
            try:
                result = step()
            except msgpack.OutOfData:
                if self._fed - self._object > limit:  # msgpack consumes a container as it goes: count from its start
                    raise FrameError(too_large) from None
                self._feed_scanner()
                continue
            except (msgpack.UnpackException, ValueError, TypeError) as exc:  # TypeError: a map keyed by an array
                raise unpack_error(exc) from None
            if self._at - self._object > limit:
                raise FrameError(too_large)
            self._object = self._at
            return result

    # --- the steps, in the order of a frame: each returns the frame once it is whole -------------

    def _head(self) -> None:
        code = self._peek()[0]
        self._origin = self._object = self._at
        if code == HEARTBEAT:  # nil between frames: nothing to decode
            self._walk(self._scanner.skip, 1, "a heartbeat is one byte")
            self._origin = self._at
            return
        if not _is_array(code):
            raise FrameError(f"a frame must be an array [tag, ...] of 2 to 4 elements, got msgpack type 0x{code:02x}")
        self._elements = self._walk(self._scanner.read_array_header, 5, "an array header is at most 5 bytes")
        if not 2 <= self._elements <= 4:
            raise FrameError(f"a frame must be an array [tag, ...] of 2 to 4 elements, got {self._elements}")
        self._step = FrameDecoder._tag_step

    def _tag_step(self) -> None:
        if self._at == self._object:  # not begun: an unpacker that ran out of bytes has consumed some of it
            code = self._peek()[0]
            if not _is_string(code):
                raise FrameError(f"a frame's tag must be a string, got msgpack type 0x{code:02x}")
        tag = self._walk(self._scanner.unpack, SMALL_OBJECT_BYTES, "a tag of more than 64 KiB; a tag is a short name")
        self._tag = as_text(tag)
        self._step = FrameDecoder._second

    def _second(self) -> None:
        """The second element tells the mode: str/bin PackedForward, array Forward, anything else Message."""
        code = self._peek()[0]
        start = self._at
        if _is_string(code):  # PackedForward: str or bin of concatenated entries, counted off its header
            width = _WIDTHS.get(code, 0)
            header = self._peek(1 + width)
            length = int.from_bytes(header[1:], "big") if width else code & 0x1F
            if start + 1 + width + length - self._origin > self.limits.max_frame_bytes:
                raise FrameError(
                    f"a frame announces {length:,} bytes of entries, more than the limit of "
                    f"{self.limits.max_frame_bytes:,}; lower the sender's chunk_limit_size or raise --max-frame-size"
                )
            while self._fed < start + 1 + width:
                self._feed_scanner()
            self._scanner.read_bytes(1 + width)
            self._mode, self._body, self._left = "packed_forward", (self._at, self._at + length), self._elements - 2
            self._step = FrameDecoder._packed_body
        elif _is_array(code):  # Forward: [[time, record], ...]
            count = self._walk(self._scanner.read_array_header, 5, "an array header is at most 5 bytes")
            if count > self.limits.max_entries:
                raise FrameError(too_many_entries(count, self.limits.max_entries))
            self._mode, self._body, self._left = "forward", (self._at, 0), count
            self._step = FrameDecoder._entries
        elif self._elements < 3:
            raise FrameError(f"a Message frame is [tag, time, record], got {self._elements} elements")
        else:  # Message: its time and its record, read as one entry
            self._mode, self._body, self._left = "message", (start, 0), 2
            self._step = FrameDecoder._entries

    def _packed_body(self) -> None:
        end = self._body[1]
        if self._base + self._buf.size < end:
            raise _Short
        self._scanner.read_bytes(min(self._fed - self._at, end - self._at))  # what the unpacker holds of it
        if self._fed < end:  # and the rest it is never given
            self._jump += end - self._fed
            self._fed = end
        self._object = end
        self._left = self._elements - 2
        self._step = FrameDecoder._trailer

    def _entries(self) -> None:
        """Skip the entries (or a Message's time and record) without building them.

        ``_walk`` inlined: it runs once per entry. An entry cut by the end of what was fed is walked by
        ``_walk`` itself, which feeds the unpacker as it asks.
        """
        limit = self.limits.max_entry_bytes
        skip, tell, jump = self._scanner.skip, self._scanner.tell, self._jump
        while self._left:
            try:
                while self._left:
                    skip()
                    at = tell() + jump
                    if at - self._object > limit:
                        raise FrameError(too_large_entry(limit))
                    self._object = at
                    self._left -= 1
            except msgpack.OutOfData:  # the entry goes on past what the unpacker holds
                self._walk(skip, limit, too_large_entry(limit))
                self._left -= 1
            except (msgpack.UnpackException, ValueError, TypeError) as exc:
                raise unpack_error(exc) from None
        self._body = (self._body[0], self._at)
        self._left = self._elements - (3 if self._mode == "message" else 2)
        self._step = FrameDecoder._trailer

    def _trailer(self) -> RawFrame | None:
        """The option map and any element after it, each small; then the frame is whole."""
        while self._left:
            element = self._walk(self._scanner.unpack, SMALL_OBJECT_BYTES, "a frame's option is larger than 64 KiB")
            self._left -= 1
            if self._option is None:
                if element is not None and not isinstance(element, dict):
                    raise FrameError(f"a frame's option must be a map, got {type(element).__name__}")
                self._option = {as_text(key): as_text(value) for key, value in (element or {}).items()}
        return self._finish()

    def _finish(self) -> RawFrame:
        size = self._at - self._origin
        if size > self.limits.max_frame_bytes:
            raise FrameError(_too_large_frame(self.limits.max_frame_bytes))
        option = self._option or {}
        mode = self._mode
        if mode == "packed_forward" and option.get("compressed") == "gzip":
            mode = "compressed_packed_forward"
        elif mode == "packed_forward" and option.get("compressed") not in (None, "text"):
            raise FrameError(f"unknown compression {option.get('compressed')!r}; only 'gzip' is defined")
        entries = self._buf.pieces(self._body[0] - self._base, self._body[1] - self._base)
        if mode == "message":
            entries.insert(0, b"\x92")  # time and record, as the one entry [time, record]
        frame = RawFrame(mode, self._tag, tuple(entries), option, size)
        self._origin = self._at
        self._next_frame()
        return frame


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
        except (msgpack.UnpackException, ValueError) as exc:  # keys are str or bytes (strict_map_key)
            raise unpack_error(exc) from None
        return obj, self._unpacker.read_bytes(self._held)
