"""The queue's record format, pure: ``length, crc32, payload``, and how damage in a segment is found and named.

A reader that meets bytes which are not a whole, valid record looks for the
next offset where one starts (a plausible length and a matching CRC) and
goes on from there, so damage costs only the records it touched. Damage is
called a torn write only when it looks like one: an incomplete record (or
zeros) at the very end of the last segment, which is what a crash during an
append leaves, and such an append was never acknowledged. Complete records
that fail their CRC are corruption of data that may have been acknowledged.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

HEADER = struct.Struct("<II")  # payload length, crc32 of the payload
MAX_RECORD = 16 * 1024 * 1024  # far above any event: a larger length is corruption, not data


def encode_record(payload: bytes) -> bytes:
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def record_size(data: bytes, offset: int) -> int:
    """Bytes of the whole, valid record at ``offset``; 0 if there is none (an empty payload is never valid)."""
    if offset + HEADER.size > len(data):
        return 0
    length, crc = HEADER.unpack_from(data, offset)
    end = offset + HEADER.size + length
    if not 0 < length <= MAX_RECORD or end > len(data) or zlib.crc32(data[offset + HEADER.size : end]) != crc:
        return 0
    return HEADER.size + length


def decode_records(data: bytes, start: int = 0) -> tuple[list[bytes], int]:
    """The whole records from ``start`` on and where they end; stops at a torn or damaged one."""
    records: list[bytes] = []
    offset = start
    while size := record_size(data, offset):
        records.append(data[offset + HEADER.size : offset + size])
        offset += size
    return records, offset


def next_record(data: bytes, damaged: int) -> int | None:
    """Where the first valid record after the damage at ``damaged`` starts; None if none follows."""
    for offset in range(damaged + 1, len(data) - HEADER.size):
        if record_size(data, offset):
            return offset
    return None


def looks_torn(rest: bytes) -> bool:
    """Is ``rest`` (the bytes after the last valid record) what an interrupted append leaves?

    A header cut short, a record whose length runs past the end, or zeros the file system
    allocated but never filled. A complete record with a wrong CRC is not: that is damage.
    """
    if len(rest) < HEADER.size or not rest.strip(b"\0"):
        return True
    length, _ = HEADER.unpack_from(rest)
    return 0 < length <= MAX_RECORD and HEADER.size + length > len(rest)


@dataclass(frozen=True)
class Damage:
    """Bytes of a segment holding no valid record: skipped by the readers, or cut off the last segment."""

    segment: str
    offset: int
    size: int
    torn: bool  # an interrupted append's incomplete tail: never acknowledged
    cut: bool  # truncated off the end of the last segment at start

    def describe(self, directory: object) -> str:
        where = f"queue {directory}: segment {self.segment}, offset {self.offset:,}"
        if self.torn:
            return (
                f"{where}: cut {self.size:,} bytes of an incomplete record at the end, "
                "as a crash during a write leaves; that write was never acknowledged"
            )
        action = "cut" if self.cut else "skipped"
        return (
            f"{where}: {action} {self.size:,} damaged bytes (no valid length and CRC there), "
            "reading goes on at the next valid record; the events in them are lost and may have been "
            "acknowledged: check the disk (dmesg, SMART)"
        )
