"""Events to a Fluentd or Fluent Bit ``in_forward`` (``forward://HOST:PORT``), acknowledged by the peer.

A batch goes out as one PackedForward frame that asks for an ack (``chunk``,
128 random bits in Base64 as the protocol says), and counts as stored only
once the peer answered ``{"ack": chunk}``: Fluentd's in_forward and Fluent
Bit's (since 1.5) answer once the chunk is in their buffer. So a Forward
receiver in front of this sink acknowledges its own senders only after the
peer took the events. A refused connection, a lost one or no answer within
``timeout`` is a retry for the driver; as Forward cannot be asked what it
kept, a frame cut off after the peer took it is delivered twice (at least
once, never lost). The sink holds no buffer of its own: the engine's bounded
queues and the sender's resends are the only ones.
"""

from __future__ import annotations

import base64
import os
import socket
import time
from datetime import datetime
from typing import Any

import msgpack

from named_senderr.event import Event, to_ecs, to_flat
from named_senderr.protocol.fluent_forward import EventTime
from named_senderr.settings.ship import SinkConfig
from named_senderr.sinks.outcome import Outcome, retry_all, unanswered

ANSWER_BYTES = 4096  # an ack is a few dozen bytes: anything longer is not one
_PACKER = {"use_bin_type": True, "unicode_errors": "surrogateescape"}


def event_time(event: Event) -> EventTime:
    """The event's own time as Fluentd's EventTime; now when the line had none."""
    if event.timestamp:
        try:
            moment = datetime.fromisoformat(event.timestamp)
            return EventTime(int(moment.timestamp()), moment.microsecond * 1000)
        except ValueError:
            pass
    now = time.time_ns()
    return EventTime(now // 1_000_000_000, now % 1_000_000_000)


class ForwardSink:
    """One connection to the peer, opened on first use and again after any failure."""

    workers = 1  # one connection, one frame at a time: the peer gets the events in order

    def __init__(self, config: SinkConfig, ingest_time: str) -> None:
        self.name = config.name
        self.tag = config.tag
        self.timeout = config.timeout
        host, _, port = config.url.removeprefix("tcp://").rpartition(":")
        self.address = (host.strip("[]"), int(port))
        self._flat = config.format == "flat"
        self._ingest_time = ingest_time
        self._sock: socket.socket | None = None

    def encode(self, event: Event) -> tuple[bytes, int]:
        record = to_flat(event) if self._flat else to_ecs(event, self._ingest_time)
        entry = msgpack.packb([event_time(event).to_ext(), record], **_PACKER)
        return entry, len(entry)

    def send(self, items: list[bytes]) -> Outcome:
        chunk = base64.b64encode(os.urandom(16)).decode()
        frame = msgpack.packb([self.tag, b"".join(items), {"chunk": chunk, "size": len(items)}], **_PACKER)
        try:
            sock = self._connect()
        except OSError as exc:
            return retry_all(items, f"cannot connect to {self.name}: {exc.strerror or exc}")
        try:
            sock.sendall(frame)
            answer = self._answer(sock)
        except OSError as exc:  # the peer may have taken the frame before the cut
            self._disconnect()
            return unanswered(items, f"{self.name}: no ack ({getattr(exc, 'strerror', None) or exc})")
        if answer != {b"ack": chunk.encode()}:
            self._disconnect()
            return unanswered(items, f"{self.name}: answered {answer!r} instead of the ack of chunk {chunk}")
        return Outcome(delivered=len(items))

    def dead_record(self, item: bytes) -> dict:
        _time, record = msgpack.unpackb(item, raw=False, unicode_errors="surrogateescape", strict_map_key=False)
        return {"document": record}

    def drop_stored(self, items: list[Any]) -> list[Any]:
        return items  # Forward has no way to ask the peer what it kept

    def close(self) -> None:
        self._disconnect()

    def _connect(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.create_connection(self.address, timeout=self.timeout)
        return self._sock

    def _answer(self, sock: socket.socket) -> Any:
        unpacker = msgpack.Unpacker(raw=True, max_buffer_size=ANSWER_BYTES)
        while data := sock.recv(ANSWER_BYTES):
            try:
                unpacker.feed(data)
                for answer in unpacker:
                    return answer
            except (msgpack.BufferFull, msgpack.UnpackException, ValueError) as exc:
                raise ConnectionError(f"not an ack: {exc}") from None
        raise ConnectionError("the peer closed the connection")

    def _disconnect(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
