"""Deterministic document ids: the same line of the same file always gets the same id.

With ``create`` and this id, a retry after a lost answer or a replay of a whole
file finds the document already there (409) instead of storing it twice.
Where a source has no offsets (Forward, syslog), the event's time takes the
offset's place: a resent chunk carries the same times, so it is still found
stored, while the same line at another time (a Fluent Bit record whose time
was split from its message) stays another event. Two identical lines at the
same millisecond from the same host are one event: nothing tells them from a
resend.
"""

from __future__ import annotations

import binascii
import os
from functools import lru_cache
from hashlib import sha256

from named_senderr.event import Event, to_ecs, to_flat

_URLSAFE = bytes.maketrans(b"+/", b"-_")


def event_id(event: Event, cwd: str) -> str:
    """sha256 over host, absolute file path, byte offset (or, without one, the time) and the original line.

    43 base64url characters; ids of events with an offset are those earlier versions gave.

    ``cwd`` resolves a relative path, so ``./named.log`` and ``named.log`` give the same ids.
    """
    digest = sha256(
        b"\0".join(
            (
                (event.host or "").encode(),
                _file_key(event.file, cwd) if event.file else b"-",
                str(event.offset if event.offset is not None else event.timestamp or "").encode(),
                event.original.encode("utf-8", "surrogateescape"),
            )
        )
    ).digest()
    return binascii.b2a_base64(digest, newline=False)[:43].translate(_URLSAFE).decode("ascii")


def identified(event: Event, form: str, ingest_time: str, ident: str) -> dict:
    """The ECS or flat record carrying its id (``event.id`` / ``event_id``): for stores with no ``_id`` of their own."""
    if form == "flat":
        record = to_flat(event)
        record["event_id"] = ident
    else:
        record = to_ecs(event, ingest_time)
        record["event"]["id"] = ident
    return record


@lru_cache(maxsize=256)
def _file_key(file: str, cwd: str) -> bytes:
    return os.path.normpath(os.path.join(cwd, file)).encode("utf-8", "surrogateescape")
