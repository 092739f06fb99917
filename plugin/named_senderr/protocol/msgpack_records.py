"""Records from a byte stream, as Fluentd's out_exec_filter writes them: concatenated msgpack maps, or JSON lines.

Pure and bounded: bytes in, records (or ``BadRecord``) out, at most
``max_bytes`` of a record held at a time. A msgpack record longer than that is
never buffered and never decoded: its headers say how long it is, so the
decoder walks them and steps over exactly that many bytes, then resumes where
the next record really starts. Resuming anywhere inside it would decode bytes
of a payload (a log line that anyone who can write to the log controls) as
records: forged events. Bytes that are not msgpack at all carry no length:
the rest of what was read with them is dropped and counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

MAX_DEPTH = 1024  # msgpack-python's own nesting limit (StackError beyond it)
MAX_ARRAY_LEN = 100_000
MAX_MAP_LEN = 10_000
_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2,
          0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}  # fmt: skip # payload bytes after the type
_SIZED = {0xC4: (1, "bin"), 0xC5: (2, "bin"), 0xC6: (4, "bin"), 0xC7: (1, "ext"), 0xC8: (2, "ext"),
          0xC9: (4, "ext"), 0xD9: (1, "str"), 0xDA: (2, "str"), 0xDB: (4, "str"), 0xDC: (2, "array"),
          0xDD: (4, "array"), 0xDE: (2, "map"), 0xDF: (4, "map")}  # fmt: skip # width of the length that follows


@dataclass(frozen=True, slots=True)
class BadRecord:
    """Input that holds no log line we can read: why, for the counters and the log."""

    reason: str  # not_a_map, missing_key, null_value, non_string, invalid_json, undecodable_msgpack, oversize, ...
    detail: str


class Malformed(ValueError):
    """Not msgpack: a byte no msgpack object starts with, or a container beyond the limits."""


@dataclass
class ObjectWalker:
    """Walks the headers of one msgpack object across reads, stepping over payloads unread; finds its end."""

    todo: list[int] = field(default_factory=lambda: [1])  # items still to come at each open level
    skip: int = 0  # payload bytes still to step over
    head: bytes = b""  # a header cut by the end of a read
    seen: int = 0  # bytes of the object walked so far

    @property
    def at_least(self) -> int:
        """The object's size as far as its headers tell so far."""
        return self.seen + self.skip

    def feed(self, data: bytes, start: int = 0) -> int | None:
        """The index in ``data`` just after the object, or None when it goes on past ``data``."""
        i, end = start, len(data)
        while True:
            if self.skip:
                step = min(self.skip, end - i)
                i += step
                self.skip -= step
                if self.skip:
                    break
            if not self.todo:
                self.seen += i - start
                return i
            if i == end:
                break
            taken = self._header(data, i)
            if taken is None:
                self.head += data[i:]
                i = end
                break
            i += taken
        self.seen += i - start
        return None

    def _header(self, data: bytes, i: int) -> int | None:
        """Read the header at ``data[i]`` (after ``head``); the bytes of ``data`` it took, None if cut short."""
        first = self.head[0] if self.head else data[i]
        items, width, kind = 0, 0, ""
        if first <= 0x7F or first >= 0xE0:
            pass
        elif first <= 0x8F:
            items = 2 * (first & 0x0F)
        elif first <= 0x9F:
            items = first & 0x0F
        elif first <= 0xBF:
            self.skip = first & 0x1F
        elif first in _FIXED:
            self.skip = _FIXED[first]
        elif first in _SIZED:
            width, kind = _SIZED[first]
        else:
            raise Malformed(f"byte 0x{first:02x} starts no msgpack object")
        taken = 1 - len(self.head)
        if width:
            header = self.head + data[i : i + 1 + width - len(self.head)]
            if len(header) < 1 + width:
                return None
            taken = len(header) - len(self.head)
            length = int.from_bytes(header[1:], "big")
            if kind == "array" or kind == "map":
                items = length * (2 if kind == "map" else 1)
                if length > (MAX_MAP_LEN if kind == "map" else MAX_ARRAY_LEN):
                    raise Malformed(f"a {kind} claims {length} entries")
            else:
                self.skip = length + (kind == "ext")  # an ext's type byte comes before its data
        self.head = b""
        self.todo[-1] -= 1
        if items:
            if len(self.todo) >= MAX_DEPTH:
                raise Malformed(f"nested deeper than {MAX_DEPTH} levels")
            self.todo.append(items)
        while self.todo and self.todo[-1] == 0:
            self.todo.pop()
        return taken


class MsgpackRecords:
    """Concatenated msgpack objects, each at most ``max_bytes``; a longer one is stepped over whole."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._pending = b""  # the start of an object still arriving (at most max_bytes)
        self._offset = 0  # input offset of _pending[0]
        self._walker: ObjectWalker | None = None  # stepping over an oversize object
        self._walk_from = 0  # its input offset

    def feed(self, data: bytes) -> list[Any]:
        """The objects that ``data`` completes, and a ``BadRecord`` where input was refused, in input order."""
        out: list[Any] = []
        if self._walker is not None:
            try:
                end = self._walker.feed(data)
            except Malformed as exc:
                self._walker = None
                self._drop(out, f"inside an oversize record: {exc}", len(data))
                return out
            if end is None:
                self._offset += len(data)
                return out
            self._walker = None
            self._offset += end
            data = data[end:]
        buf = self._pending + data if self._pending else data
        self._pending = b""
        at = 0
        while at < len(buf):
            at = self._decode(buf, at, out)
            if at < 0:
                return out
        self._offset += len(buf)
        return out

    def finish(self) -> BadRecord | None:
        """At end of input: an object cut short is counted, never silently lost."""
        if self._walker is not None:
            return BadRecord(
                "truncated",
                f"input ended inside the oversize record at input byte {self._walk_from}, "
                f"{self._walker.seen} of its at least {self._walker.at_least} bytes stepped over",
            )
        if self._pending:
            return BadRecord(
                "truncated", f"input ended inside a msgpack record; its {len(self._pending)} bytes were dropped"
            )
        return None

    def _decode(self, buf: bytes, at: int, out: list[Any]) -> int:
        """Decode ``buf`` from ``at``: where to go on after a refused object, ``len(buf)``, or -1 (all taken)."""
        unpacker = msgpack.Unpacker(
            raw=False,
            unicode_errors="surrogateescape",
            strict_map_key=False,
            max_buffer_size=max(len(buf) - at, 1),
            max_str_len=self.max_bytes,
            max_bin_len=self.max_bytes,
            max_ext_len=1024,
            max_array_len=MAX_ARRAY_LEN,
            max_map_len=MAX_MAP_LEN,
        )
        unpacker.feed(buf[at:] if at else buf)
        tell, append, max_bytes = unpacker.tell, out.append, self.max_bytes
        start = at  # where the object being decoded starts
        try:
            for obj in unpacker:
                end = at + tell()
                if end - start > max_bytes:
                    append(self._oversize(start, end - start, f"{end - start} bytes"))
                else:
                    append(obj)
                start = end
        except ValueError as exc:  # FormatError, StackError, a length over the limits
            return self._step_over(buf, start, f"{type(exc).__name__}: {exc or 'not msgpack'}", out)
        if len(buf) - start > max_bytes:
            return self._step_over(buf, start, "", out)
        self._pending = buf[start:]
        self._offset += start
        return -1

    def _step_over(self, buf: bytes, start: int, why: str, out: list[Any]) -> int:
        """Walk the refused object at ``buf[start]`` to its end; where decoding goes on, or -1."""
        walker = ObjectWalker()
        try:
            end = walker.feed(buf, start)
        except Malformed as exc:
            self._offset += start
            return self._drop(out, f"{why or exc}", len(buf) - start)
        if end is None:  # it goes on past this read: the walker steps over the rest as it comes
            out.append(self._oversize(start, walker.at_least, f"at least {walker.at_least} bytes"))
            self._walker, self._walk_from = walker, self._offset + start
            self._offset += len(buf)
            return -1
        if end - start > self.max_bytes:
            out.append(self._oversize(start, end - start, f"{end - start} bytes"))
        else:
            out.append(BadRecord("undecodable_msgpack", f"{why}; the record of {end - start} bytes at input byte "
                                                        f"{self._offset + start} was stepped over"))  # fmt: skip
        return end

    def _oversize(self, start: int, size: int, told: str) -> BadRecord:
        return BadRecord(
            "oversize",
            f"the msgpack record at input byte {self._offset + start} is {told}, over --max-record-size "
            f"{self.max_bytes}; stepped over whole without decoding it, the next record is read where it starts",
        )

    def _drop(self, out: list[Any], why: str, dropped: int) -> int:
        out.append(BadRecord("undecodable_msgpack", f"{why}; dropped {dropped} undecoded bytes, decoder restarted"))
        self._offset += dropped
        return -1


class JsonRecords:
    """One JSON object per line; a line longer than ``max_bytes`` is skipped to its newline."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._tail = b""
        self._skipping = False

    def feed(self, data: bytes) -> list[Any]:
        if self._skipping:  # the rest of an oversize line
            newline = data.find(b"\n")
            if newline < 0:
                return []
            data, self._skipping = data[newline + 1 :], False
        lines = (self._tail + data).split(b"\n")
        self._tail = lines.pop()
        objects: list[Any] = []
        if len(self._tail) > self.max_bytes:
            objects.append(BadRecord("oversize", f"a JSON line is longer than {self.max_bytes} bytes; skipped"))
            self._tail, self._skipping = b"", True
        for line in lines:
            if not line.strip():
                continue
            try:
                objects.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                objects.append(_json_with_bad_utf8(line))
        return objects

    def finish(self) -> BadRecord | None:
        if self._tail.strip():
            return BadRecord("truncated", f"input ended inside a JSON line of {len(self._tail)} bytes")
        return None


def _json_with_bad_utf8(line: bytes) -> Any:
    """The slow path, only for lines orjson refuses."""
    try:
        return json.loads(line.decode("utf-8", "surrogateescape"))
    except ValueError as exc:
        return BadRecord("invalid_json", f"{exc}; line of {len(line)} bytes dropped")
