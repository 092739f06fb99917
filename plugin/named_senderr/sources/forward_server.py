"""A Forward protocol receiver (Fluentd's in_forward): frames in, events handed to an Output.

The event loop only moves bytes and cuts frames; parsing and the hand-off run
on one worker thread, in arrival order, so a slow output never blocks other
connections' reads and the parser (which is not thread-safe) has one user.
A frame is acknowledged only after its events were handed off; when the
output refuses them (full), the frame is not acknowledged and the connection
is closed, so the sender keeps the chunk and sends it again. A malformed frame
closes its own connection with a log line, never the server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from named_senderr.errors import ConfigError, NamedSenderrError
from named_senderr.event import Event
from named_senderr.parse.named import Rejection
from named_senderr.protocol.fluent_forward import (
    EventTime,
    Frame,
    FrameDecoder,
    FrameError,
    Limits,
    check_ping,
    decode_frame,
    encode_ack,
    encode_helo,
    encode_pong,
    shared_key_digest,
)
from named_senderr.sources.exec_filter import BadRecord, Complaints, RecordParser

READ_SIZE = 256 * 1024
DEFAULT_KEYS = ("log", "message")


class OutputFull(NamedSenderrError):
    """The output cannot take these events now; the frame stays unacknowledged and the sender resends it."""


class Output(Protocol):
    """Where events go. ``__call__`` returns once the events are taken (or raises OutputFull); never sleeps long.

    Called on one worker thread: stdout NDJSON, a Fluent peer, later the ``ship`` sinks.
    """

    def __call__(self, events: list[Event]) -> None: ...

    def flush(self) -> None:
        """Retry what is pending (called every ``flush_interval`` seconds)."""

    def close(self) -> None:
        """Deliver what can be delivered; count and log the rest."""


@dataclass(frozen=True)
class ForwardServerConfig:
    """Settings of the Forward receiver; loopback by default, since Forward has no encryption of its own."""

    host: str = "127.0.0.1"
    port: int = 24224
    keys: tuple[str, ...] = DEFAULT_KEYS
    shared_key: str | None = None
    self_hostname: str = field(default_factory=socket.gethostname)
    limits: Limits = field(default_factory=Limits)
    handshake_timeout: float = 10.0
    flush_interval: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--forward port {self.port} is not between 0 and 65535")
        if not self.keys:
            raise ConfigError("no --key given; name the record field that holds the log line, e.g. --key log")
        if self.shared_key == "":
            raise ConfigError("the shared key is empty; put the same non-empty key in the sender's <security>")


@dataclass
class ServerStats:
    """Counters of the receiver, read by the summary and the tests."""

    connections: int = 0
    frames: int = 0
    entries: int = 0
    events: int = 0
    rejected: int = 0
    not_send_errors: int = 0
    bad_records: int = 0  # no log line under --key, or not a string
    invalid_entries: int = 0  # not [time, map]
    malformed: int = 0  # connections closed for a malformed or oversize frame
    handshake_failures: int = 0
    acks: int = 0
    unacked: int = 0  # frames refused by a full output with an ack requested: the sender resends
    lost: int = 0  # events refused by a full output from a sender that asked for no ack

    def summary(self) -> str:
        return ", ".join(f"{name} {value}" for name, value in vars(self).items())


def _rfc3339(time: EventTime) -> str:
    moment = datetime.fromtimestamp(time.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{time.nanoseconds // 1_000_000:03d}Z"


class ForwardServer:
    def __init__(self, config: ForwardServerConfig, records: RecordParser, output: Output, log: logging.Logger) -> None:
        self.config = config
        self.records = records
        self.output = output
        self.log = log
        self.stats = ServerStats()
        self.complain = Complaints(log)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward-output")
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task, bool] = {}  # connection task -> busy with a frame
        self._stopping = False
        self._flusher: asyncio.Task | None = None
        self._shared_key = config.shared_key.encode() if config.shared_key else None
        self._refusing: str | None = None  # why the output refused the last frame (logged once)

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 picks a free one)."""
        self._server = await asyncio.start_server(self._connection, self.config.host, self.config.port)
        self._flusher = asyncio.create_task(self._flush_periodically())
        host, port = self._server.sockets[0].getsockname()[:2]
        self.log.info(
            "listening for Forward frames on %s:%d%s", host, port, " (shared key)" if self._shared_key else ""
        )
        return host, port

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting; idle connections close now, busy ones after their frame's hand-off and ack; then the output."""
        if self._stopping:
            return
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task, busy in list(self._connections.items()):
            if not busy:
                task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=grace)
        for task in list(self._connections):
            task.cancel()  # a hand-off stuck past the grace period: its frame stays unacknowledged
        if self._flusher is not None:
            self._flusher.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.output.close)
        self._executor.shutdown(wait=True)
        self.log.info("stopped: %s", self.stats.summary())

    async def _flush_periodically(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.flush_interval)
            try:
                await loop.run_in_executor(self._executor, self.output.flush)
            except Exception as exc:  # the next flush tries again; a dead flusher would strand pending events
                self.log.error(
                    "output flush failed (%s: %s); retried in %.1f s",
                    type(exc).__name__,
                    exc,
                    self.config.flush_interval,
                )

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername") or ("?", 0)
        peer = f"{address[0]}:{address[1]}"
        self.stats.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = False
        objects = _objects(reader, FrameDecoder(self.config.limits))
        try:
            if self._shared_key is not None and not await self._handshake(objects, writer, peer):
                return
            async for obj in objects:
                if obj is None:  # a heartbeat
                    continue
                self._connections[task] = True
                if not await self._frame(decode_frame(obj, self.config.limits), writer, peer) or self._stopping:
                    return
                self._connections[task] = False
        except FrameError as exc:
            self.stats.malformed += 1
            self.log.warning("%s: malformed frame, connection closed: %s", peer, exc)
        except (ConnectionError, TimeoutError) as exc:
            self.log.info("%s: connection lost: %s", peer, exc or type(exc).__name__)
        except asyncio.CancelledError:
            pass  # the server is stopping
        except Exception:  # a bug costs this connection, never the server
            self.log.exception("%s: internal error, connection closed; please report this", peer)
        finally:
            self._connections.pop(task, None)
            writer.close()

    async def _handshake(self, objects: AsyncIterator[Any], writer: asyncio.StreamWriter, peer: str) -> bool:
        """HELO, PING, PONG with the shared key; a wrong key gets a PONG with the reason, then the door."""
        nonce = os.urandom(16)
        writer.write(encode_helo(nonce))
        await writer.drain()
        try:
            ping = await asyncio.wait_for(anext(objects), self.config.handshake_timeout)
        except (StopAsyncIteration, TimeoutError):
            self.stats.handshake_failures += 1
            self.log.warning("%s: no PING within %.0f s after HELO; closed", peer, self.config.handshake_timeout)
            return False
        assert self._shared_key is not None
        check = check_ping(ping, nonce, self._shared_key)
        if not check.ok:
            self.stats.handshake_failures += 1
            writer.write(encode_pong(False, check.reason))
            await writer.drain()
            self.log.warning(
                "%s (%s): handshake refused: %s; check <security> shared_key", peer, check.hostname, check.reason
            )
            return False
        name = self.config.self_hostname
        digest = shared_key_digest(check.salt, name.encode(), nonce, self._shared_key)
        writer.write(encode_pong(True, "", name, digest))
        await writer.drain()
        return True

    async def _frame(self, frame: Frame, writer: asyncio.StreamWriter, peer: str) -> bool:
        self.stats.frames += 1
        self.stats.entries += len(frame.entries)
        if frame.invalid:
            self.stats.invalid_entries += frame.invalid
            self.complain(
                "invalid_entry", f"{peer}: {frame.invalid} entries skipped in tag {frame.tag!r}: {frame.invalid_detail}"
            )
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._hand_off, frame)
        except OutputFull as exc:
            if frame.chunk is None:
                self.stats.lost += len(frame.entries)
                self.log.error(
                    "%s: %d entries lost: %s, and the sender asked for no ack (set require_ack_response)",
                    peer, len(frame.entries), exc,
                )  # fmt: skip
            else:
                self.stats.unacked += 1
                if str(exc) != self._refusing:  # once per cause, not per frame: unacked counts them all
                    self.log.warning("%s: frame not acknowledged (%s); the sender will resend it", peer, exc)
                self._refusing = str(exc)
            return False
        except Exception as exc:  # the output failed: no ack, so the sender keeps the chunk
            self.stats.unacked += 1
            self.log.error(
                "%s: the output failed (%s: %s); frame not acknowledged, connection closed",
                peer,
                type(exc).__name__,
                exc,
            )
            return False
        self._refusing = None
        if frame.chunk is not None:
            writer.write(encode_ack(frame.chunk))
            await writer.drain()
            self.stats.acks += 1
        return True

    def _hand_off(self, frame: Frame) -> None:
        """On the worker thread: parse every entry, hand the events to the output."""
        events: list[Event] = []
        for entry in frame.entries:
            result = self.records.parse(entry.record)
            if isinstance(result, Event):
                if result.timestamp is None and entry.time is not None:
                    result.timestamp = _rfc3339(entry.time)  # a line without a time: the sender's time
                events.append(result)
            elif isinstance(result, Rejection):
                self.stats.rejected += 1
                self.complain(f"rejected_{result.reason}", f"{result.detail}: {result.line[:200]!r}")
            elif isinstance(result, BadRecord):
                self.stats.bad_records += 1
                self.complain(result.reason, f"tag {frame.tag!r}: {result.detail}")
            else:
                self.stats.not_send_errors += 1
        if events:
            self.output(events)
            self.stats.events += len(events)


async def _objects(reader: asyncio.StreamReader, decoder: FrameDecoder) -> AsyncIterator[Any]:
    while data := await reader.read(READ_SIZE):
        for obj in decoder.feed(data):
            yield obj
