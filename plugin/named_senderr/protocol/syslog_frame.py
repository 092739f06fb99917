"""Syslog framing, pure: which bytes are one message (RFC 5426 UDP, RFC 6587 TCP).

On UDP a datagram is one message. On TCP a sender either counts octets
(``LEN SP MSG``, what RFC 5425/6587 recommend and rsyslog's octet-counted
forwarding sends) or ends each message with LF (the traditional framing). A
message starts with ``<PRI>``, a count with a digit: the first byte of each
frame tells them apart, so one connection may even mix them. Anything else is
a framing error, and the stream cannot be trusted past it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class FrameError(ValueError):
    """The byte stream is not syslog framing; the message says what was wrong."""

    def __init__(self, detail: str, oversize: bool = False) -> None:
        super().__init__(detail)
        self.oversize = oversize


def datagram_message(data: bytes) -> bytes:
    """A UDP message without the line ending or NUL some senders append."""
    return data.rstrip(b"\r\n\x00")


@dataclass
class StreamDeframer:
    """Cuts a TCP byte stream into messages, never holding more than one message's worth."""

    max_bytes: int
    error: FrameError | None = None  # set at the first bad frame: the stream is dead from there on
    _buffer: bytearray = field(default_factory=bytearray)

    @property
    def pending(self) -> int:
        """Bytes held of a message not yet whole (its clock runs: see sources/peers.py)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """The messages completed by ``data``, up to a bad frame if there is one (then see ``error``)."""
        if self.error is not None:
            return []
        self._buffer += data
        messages: list[bytes] = []
        try:
            while self._buffer:
                message = self._next()
                if message is None:
                    break
                if message:
                    messages.append(message)
        except FrameError as exc:
            self.error = exc
            self._buffer.clear()
        return messages

    def _next(self) -> bytes | None:
        first = self._buffer[:1]
        if first.isdigit():
            return self._octet_counted()
        if first in (b"<", b"\n", b"\r"):
            return self._line()
        raise FrameError(f"frame starts with {bytes(self._buffer[:16])!r}, neither '<PRI>' nor an octet count")

    def finish(self) -> bytes | None:
        """At end of stream: a last LF-framed message without its LF is still a message."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        if not rest.strip(b"\r\n"):
            return None
        if rest[:1].isdigit():
            raise FrameError(f"connection closed inside an octet-counted frame ({len(rest)} bytes received)")
        return rest.rstrip(b"\r")

    def _octet_counted(self) -> bytes | None:
        digits = len(str(self.max_bytes))
        space = self._buffer.find(b" ", 0, digits + 1)
        if space == -1:
            if len(self._buffer) > digits:
                raise FrameError(
                    f"octet count {bytes(self._buffer[: digits + 1])!r} is not 'LEN SP' with LEN <= {self.max_bytes}"
                )
            return None
        count_text = bytes(self._buffer[:space])
        if not count_text.isdigit():
            raise FrameError(f"octet count {count_text!r} is not a number")
        count = int(count_text)
        if not 0 < count <= self.max_bytes:
            raise FrameError(f"frame of {count} bytes, limit {self.max_bytes}", oversize=count > 0)
        end = space + 1 + count
        if len(self._buffer) < end:
            return None
        message = bytes(self._buffer[space + 1 : end])
        del self._buffer[:end]
        return message

    def _line(self) -> bytes | None:
        newline = self._buffer.find(b"\n", 0, self.max_bytes + 2)
        if newline == -1:
            if len(self._buffer) > self.max_bytes + 1:
                raise FrameError(f"no line end within {self.max_bytes} bytes (message too long)", oversize=True)
            return None
        message = bytes(self._buffer[:newline]).rstrip(b"\r")
        del self._buffer[: newline + 1]
        return message
