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
from collections.abc import Callable
from functools import lru_cache
from hashlib import sha256

from named_senderr import native
from named_senderr.event import Event, to_ecs, to_flat

_URLSAFE = bytes.maketrans(b"+/", b"-_")


def event_id(event: Event, cwd: str) -> str:
    """sha256 over host, absolute file path, byte offset (or, without one, the time) and the original line.

    43 base64url characters; ids of events with an offset are those earlier versions gave.

    ``cwd`` resolves a relative path, so ``./named.log`` and ``named.log`` give the same ids.
    """
    return event_id_bytes(event, cwd).decode("ascii")


def python_event_id_bytes(event: Event, cwd: str) -> bytes:
    """``event_id`` as ASCII bytes, for a sink that writes it straight into a request body.

    The reference: sinks/_ids.c gives the same bytes where it was built (tests/test_native_ids.py).
    """
    offset = event.offset
    position = b"%d" % offset if offset is not None else (event.timestamp or "").encode()
    digest = sha256(
        b"%s%s\0%s"
        % (_source_key(event.host, event.file, cwd), position, event.original.encode("utf-8", "surrogateescape"))
    ).digest()
    return binascii.b2a_base64(digest, newline=False)[:43].translate(_URLSAFE)


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
def _source_key(host: str | None, file: str | None, cwd: str) -> bytes:
    """The start of the hashed bytes, the same for every line of one file of one host: host, NUL, path, NUL."""
    path = os.path.normpath(os.path.join(cwd, file)).encode("utf-8", "surrogateescape") if file else b"-"
    return b"%s\0%s\0" % ((host or "").encode(), path)


_native = native.load("named_senderr.sinks._ids")
event_id_bytes: Callable[[Event, str], bytes] = python_event_id_bytes
if _native is not None:
    _native.configure(python_event_id_bytes, _source_key, sha256)
    event_id_bytes = _native.event_id_bytes
