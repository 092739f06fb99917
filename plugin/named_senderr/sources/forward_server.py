"""A Forward protocol receiver (Fluentd's in_forward): frames in, events handed to an Output.

The event loop only moves bytes and finds where frames end (forward_stream.py);
decoding, parsing and the hand-off run on one worker thread, in arrival
order, so a frame of any size never stalls other connections' reads and the
parser (which is not thread-safe) has one user. What peers may hold (slots,
time, bytes) is bounded by a PeerTable (peers.py); with a shared key nothing
but a small PING is read before the handshake. A frame is acknowledged only
after its events were handed off; when the output refuses them (full), the
frame is not acknowledged and the connection is closed, so the sender keeps
the chunk and sends it again. A malformed frame closes its own connection
with a log line, never the server; a bad entry (no time of 1970 to 2106, not
``[time, map]``) is skipped and counted, and the rest of its frame taken.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from named_senderr.errors import ConfigError, NamedSenderrError
from named_senderr.event import Event
from named_senderr.parse.named import Rejection
from named_senderr.protocol.fluent_forward import (
    Entry,
    EventTime,
    FrameDecoder,
    FrameError,
    Limits,
    ObjectReader,
    RawFrame,
    check_ping,
    decode_entries,
    encode_ack,
    encode_helo,
    encode_pong,
    shared_key_digest,
)
from named_senderr.sources.exec_filter import BadRecord, Complaints, RecordParser
from named_senderr.sources.peers import GAUGES, Peer, PeerClosed, PeerLimits, PeerStats, PeerTable

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
    peers: PeerLimits = field(default_factory=PeerLimits)
    handshake_timeout: float = 10.0
    flush_interval: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--forward port {self.port} is not between 0 and 65535")
        if not self.keys:
            raise ConfigError("no --key given; name the record field that holds the log line, e.g. --key log")
        if self.shared_key == "":
            raise ConfigError("the shared key is empty; put the same non-empty key in the sender's <security>")
        if self.peers.max_buffer_bytes < self.limits.max_frame_bytes:
            raise ConfigError(
                "--max-buffer is smaller than --max-frame-size; no frame of the largest size could be held"
            )


@dataclass
class ServerStats(PeerStats):
    """Counters of the receiver, read by the summary, the metrics and the tests."""

    frames: int = 0
    entries: int = 0
    events: int = 0
    rejected: int = 0
    not_send_errors: int = 0
    bad_records: int = 0  # no log line under --key, or not a string
    invalid_entries: int = 0  # not [time, map]
    bad_times: int = 0  # an entry's time not between 1970 and 2106 (a float NaN or infinity, milliseconds...)
    malformed: int = 0  # connections closed for a malformed or oversize frame
    handshake_failures: int = 0
    acks: int = 0
    unacked: int = 0  # frames refused by a full output with an ack requested: the sender resends
    lost: int = 0  # events refused by a full output from a sender that asked for no ack

    def summary(self) -> str:
        """Every counter (the gauges, which are 0 at the end, left out)."""
        return ", ".join(f"{name} {value}" for name, value in vars(self).items() if name not in GAUGES)


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
        self.peers = PeerTable(config.peers, self.stats, log.warning)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward-output")
        self._server: asyncio.Server | None = None
        self._stopping = False
        self._flusher: asyncio.Task | None = None
        self._shared_key = config.shared_key.encode() if config.shared_key else None
        self._refusing: str | None = None  # why the output refused the last frame (logged once)

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 picks a free one)."""
        self.peers.guard_accept(asyncio.get_running_loop())
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
        for peer in list(self.peers.peers.values()):
            if not peer.whole:
                peer.task.cancel()
        if self.peers.peers:
            await asyncio.wait(list(self.peers.peers), timeout=grace)
        for task in list(self.peers.peers):
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
        name = f"{address[0]}:{address[1]}"
        peer = self.peers.admit(name)
        if peer is None:
            writer.close()
            return
        try:
            await self._serve(peer, reader, writer)
        except FrameError as exc:
            self.stats.malformed += 1
            self.complain("malformed_frame", f"{name}: malformed frame, connection closed: {exc}")
        except PeerClosed as exc:
            self.log.debug("%s", exc)  # counted, and said once by the peer table
        except (ConnectionError, TimeoutError) as exc:
            self.log.info("%s: connection lost: %s", name, exc or type(exc).__name__)
        except asyncio.CancelledError:
            pass  # the server is stopping, or the peer table closed it (and said why)
        except Exception:  # a bug costs this connection, never the server
            self.log.exception("%s: internal error, connection closed; please report this", name)
        finally:
            self.peers.leave(peer)
            writer.close()

    async def _serve(self, peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder(self.config.limits)
        frames: list[RawFrame] = []
        if self._shared_key is not None:
            rest = await self._handshake(peer, reader, writer)
            if rest is None:
                return
            frames = self._cut(peer, decoder, rest)
        while True:
            waiting = sum(raw.size for raw in frames)
            for raw in frames:
                if not await self._frame(raw, writer, peer) or self._stopping:
                    return
                waiting -= raw.size
                self.peers.hold(peer, decoder.pending, waiting, completed=True)
            data = await self.peers.read(peer, reader, READ_SIZE)
            if not data:
                return
            frames = self._cut(peer, decoder, data)

    def _cut(self, peer: Peer, decoder: FrameDecoder, data: bytes) -> list[RawFrame]:
        frames = decoder.feed(data)
        self.stats.frames += len(frames)
        self.peers.hold(peer, decoder.pending, sum(f.size for f in frames), completed=bool(frames))
        return frames

    async def _handshake(self, peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
        """HELO, PING, PONG with the shared key; a wrong key gets a PONG with the reason, then the door.

        Returns the bytes that came after the PING, or None when the peer is refused.
        """
        nonce = os.urandom(16)
        writer.write(encode_helo(nonce))
        await writer.drain()
        ping = ObjectReader()
        got = None
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                while got is None and (data := await reader.read(READ_SIZE)):
                    got = ping.feed(data)
        except TimeoutError:
            return self._handshake_failed(peer, f"no PING within {self.config.handshake_timeout:g} s after HELO")
        except FrameError as exc:
            return self._handshake_failed(peer, str(exc))
        if got is None:
            return self._handshake_failed(peer, "closed before its PING")
        assert self._shared_key is not None
        check = check_ping(got[0], nonce, self._shared_key)
        if not check.ok:
            writer.write(encode_pong(False, check.reason))
            await writer.drain()
            return self._handshake_failed(
                peer, f"({check.hostname}) handshake refused: {check.reason}; check <security> shared_key"
            )
        name = self.config.self_hostname
        digest = shared_key_digest(check.salt, name.encode(), nonce, self._shared_key)
        writer.write(encode_pong(True, "", name, digest))
        await writer.drain()
        return got[1]

    def _handshake_failed(self, peer: Peer, reason: str) -> None:
        self.stats.handshake_failures += 1
        self.complain("handshake_failed", f"{peer.name}: {reason}; closed")

    async def _frame(self, raw: RawFrame, writer: asyncio.StreamWriter, peer: Peer) -> bool:
        loop = asyncio.get_running_loop()
        events, refused = await loop.run_in_executor(self._executor, self._take, raw, peer.name)
        if isinstance(refused, OutputFull):
            if raw.chunk is None:
                self.stats.lost += events
                self.log.error(
                    "%s: %d events lost: %s, and the sender asked for no ack (set require_ack_response)",
                    peer.name, events, refused,
                )  # fmt: skip
            else:
                self.stats.unacked += 1
                if str(refused) != self._refusing:  # once per cause, not per frame: unacked counts them all
                    self.log.warning("%s: frame not acknowledged (%s); the sender will resend it", peer.name, refused)
                self._refusing = str(refused)
            return False
        if refused is not None:  # the output failed: no ack, so the sender keeps the chunk
            self.stats.unacked += 1
            self.log.error(
                "%s: the output failed (%s: %s); frame not acknowledged, connection closed",
                peer.name,
                type(refused).__name__,
                refused,
            )
            return False
        self._refusing = None
        if raw.chunk is not None:
            writer.write(encode_ack(raw.chunk))
            await writer.drain()
            self.stats.acks += 1
        return True

    def _take(self, raw: RawFrame, peer: str) -> tuple[int, Exception | None]:
        """On the worker thread: decode the frame (FrameError is the peer's), hand its events to the output.

        Returns how many events, and the output's refusal or failure if it had one.
        """
        events = self._decode(raw, peer)
        if not events:
            return 0, None
        try:
            self.output(events)
        except Exception as exc:  # the output's: reported on the event loop, the frame is not acknowledged
            # Without its traceback: that would keep this frame, and so ``events`` and the frame's bytes, alive in a
            # reference cycle (exception -> traceback -> frame -> exception) until a full garbage collection.
            return len(events), exc.with_traceback(None)
        self.stats.events += len(events)
        return len(events), None

    def _decode(self, raw: RawFrame, peer: str) -> list[Event]:
        """On the worker thread: decode the entries one at a time and parse each; only the events are kept."""
        events: list[Event] = []
        skipped: dict[str, tuple[int, str]] = {}  # reason -> (count, the last detail), said once per frame
        for entry in decode_entries(raw, self.config.limits):
            if type(entry) is not Entry:
                if entry.reason == "bad_time":
                    self.stats.bad_times += 1
                else:
                    self.stats.invalid_entries += 1
                skipped[entry.reason] = (skipped.get(entry.reason, (0, ""))[0] + 1, entry.detail)
                continue
            self.stats.entries += 1
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
                self.complain(result.reason, f"tag {raw.tag!r}: {result.detail}")
            else:
                self.stats.not_send_errors += 1
        for reason, (count, detail) in skipped.items():
            entries = "entry" if count == 1 else "entries"
            self.complain(reason, f"{peer}: {count} {entries} skipped in tag {raw.tag!r}, the rest taken: {detail}")
        return events
