"""A Forward protocol receiver (Fluentd's in_forward) as an engine source: frames in, batches of lines out.

The event loop (a thread of its own) only moves bytes and finds where frames
end (forward_stream.py); decoding and the hand-off to the engine run on one
worker thread, in arrival order, so a frame of any size never stalls other
connections' reads. Each frame's candidate lines are one batch, emitted
without waiting: a full pipeline (a slow sink, a full or refusing disk)
refuses it whole, and the frame is then not acknowledged and its connection
closed, so the sender keeps the chunk and sends it again. A frame taken is
acknowledged (``{"ack": chunk}``) only when the runner releases its batch:
once its events are fsync'd in the disk queue, or, without one, once every
sink settled them. Parsing, and the rejection of bad candidates, is the
engine's (engine/transforms.py), as for every source.

What peers may hold (slots, time, bytes) is bounded by a PeerTable (peers.py);
with a shared key nothing but a small PING is read before the handshake. A
malformed frame closes its own connection with a log line, never the server;
a bad entry (no time of 1970 to 2106, not ``[time, map]``) or a record without
a log line is skipped and counted, and the rest of its frame taken. A
connection that ends while acks are owed to it stays open for them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from named_senderr.errors import ConfigError
from named_senderr.lines import Ack, Batch, Emit, Line, no_ack
from named_senderr.metrics import Sample
from named_senderr.parse.named import is_candidate
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
from named_senderr.protocol.msgpack_records import BadRecord
from named_senderr.sources.exec_filter import Complaints, _record_host, find_line
from named_senderr.sources.peers import GAUGES, Peer, PeerClosed, PeerLimits, PeerStats, PeerTable
from named_senderr.telemetry import Stats

READ_SIZE = 256 * 1024
DEFAULT_KEYS = ("log", "message")
WAKE = 0.2  # seconds between looks at the stop flag


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
    grace: float = 10.0  # seconds a frame in hand-off gets to finish when stopping

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
    not_send_errors: int = 0
    bad_records: int = 0  # no log line under --key, or not a string
    invalid_entries: int = 0  # not [time, map]
    bad_times: int = 0  # an entry's time not between 1970 and 2106 (a float NaN or infinity, milliseconds...)
    malformed: int = 0  # connections closed for a malformed or oversize frame
    handshake_failures: int = 0
    acks: int = 0
    unacked: int = 0  # frames refused by a full pipeline with an ack requested: the sender resends
    lost: int = 0  # candidate lines refused by a full pipeline from a sender that asked for no ack

    def counts(self, parsed: Stats) -> dict[str, int]:
        """Every counter, with the engine's events and rejected candidates (``parsed``) after the entries."""
        values: dict[str, int] = {}
        for name, value in vars(self).items():
            values[name] = value
            if name == "entries":
                values.update(events=parsed.events, rejected=parsed.rejected)
        return values

    def summary(self, parsed: Stats) -> str:
        """Every counter (the gauges, which are 0 at the end, left out)."""
        return ", ".join(f"{name} {value}" for name, value in self.counts(parsed).items() if name not in GAUGES)


@functools.lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    """The RFC 3339 second; cached, as the entries of a frame mostly share a few seconds."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _rfc3339(time: EventTime) -> str:
    return f"{_second(time.seconds)}.{time.nanoseconds // 1_000_000:03d}Z"


class _Connection:
    """A peer's writer and the acks still owed to it; closed once it ended and nothing more is owed."""

    def __init__(self, writer: asyncio.StreamWriter, stats: ServerStats, open: set[_Connection]) -> None:
        self.writer = writer
        self.stats = stats
        self.owed = 0
        self.ended = False
        self.open = open
        open.add(self)

    def acknowledge(self, chunk: Any) -> None:
        """On the event loop: the runner released the frame's batch (its events are durably held)."""
        self.owed -= 1
        if not self.writer.is_closing():
            self.stats.acks += 1
            self.writer.write(encode_ack(chunk))
        self._close_when_done()

    def release(self, loop: asyncio.AbstractEventLoop, chunk: Any) -> Ack:
        """The frame's ack for the runner, which calls it from any thread once the batch is durable."""

        def ack() -> None:
            loop.call_soon_threadsafe(self.acknowledge, chunk)

        return ack

    def forget(self) -> None:
        """A frame that will never be acknowledged (refused)."""
        self.owed -= 1

    def end(self) -> None:
        self.ended = True
        self._close_when_done()

    def _close_when_done(self) -> None:
        if self.ended and self.owed <= 0:
            self.writer.close()
            self.open.discard(self)


class ForwardSource:
    """The Forward receiver as a Source: listens in ``run`` until stopped; ``close`` writes the last acks."""

    def __init__(self, config: ForwardServerConfig, parsed: Stats, log: logging.Logger, name: str = "forward") -> None:
        self.config = config
        self.parsed = parsed  # the run's parse counters: events and rejected candidates
        self.log = log
        self.name = name
        self.stats = ServerStats()
        self.complain = Complaints(log)
        self.peers = PeerTable(config.peers, self.stats, log.warning)
        self.address: tuple[str, int] | None = None  # where it listens, once it does
        self._emit: Emit | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name} frames")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._stopping = False
        self._shared_key = config.shared_key.encode() if config.shared_key else None
        self._refusing = False  # the last frame was refused (said once per run of refusals)

    def run(self, emit: Emit, stop: threading.Event) -> None:
        self._emit = emit
        self._loop = loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name=f"{self.name} loop", daemon=True)
        self._thread.start()
        self.address = asyncio.run_coroutine_threadsafe(self._start(), loop).result()
        self.parsed.inputs += 1  # += : other sources may count into the same stats
        while not stop.wait(WAKE):
            pass
        asyncio.run_coroutine_threadsafe(self._stop_reading(), loop).result()

    def close(self) -> None:
        """After the runner released every ack it could: write them, close every connection, stop the loop."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close_connections(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
        if loop is not None:
            loop.close()
        self._executor.shutdown(wait=True)
        if self.address is not None:
            self.log.info("stopped: %s", self.stats.summary(self.parsed))

    def samples(self) -> Iterator[Sample]:
        """Every receiver counter as a Prometheus counter named after it; open connections and buffered bytes
        as gauges."""
        for name, value in self.stats.counts(self.parsed).items():
            text = f"Forward receiver: {name.replace('_', ' ')}"
            if name in GAUGES:
                yield Sample(f"named_senderr_forward_{name}", "gauge", f"{text} now", value)
            else:
                yield Sample(f"named_senderr_forward_{name}_total", "counter", text, value)

    async def _start(self) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 picks a free one)."""
        self.peers.guard_accept(asyncio.get_running_loop())
        try:
            self._server = await asyncio.start_server(self._connection, self.config.host, self.config.port)
        except OSError as exc:
            raise ConfigError(
                f"--forward {self.config.host}:{self.config.port}: cannot listen ({exc.strerror})"
            ) from None
        host, port = self._server.sockets[0].getsockname()[:2]
        self.log.info(
            "listening for Forward frames on %s:%d%s", host, port, " (shared key)" if self._shared_key else ""
        )
        return host, port

    async def _stop_reading(self) -> None:
        """Stop accepting; idle connections stop reading now, busy ones after their frame's hand-off."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for peer in list(self.peers.peers.values()):
            if not peer.whole:
                peer.task.cancel()
        if self.peers.peers:
            await asyncio.wait(list(self.peers.peers), timeout=self.config.grace)
        for task in list(self.peers.peers):
            task.cancel()  # a hand-off stuck past the grace period: its frame stays unacknowledged

    async def _close_connections(self) -> None:
        for connection in list(self._connections):
            connection.writer.close()
        closing = [asyncio.ensure_future(c.writer.wait_closed()) for c in self._connections]
        if closing:
            await asyncio.wait(closing, timeout=self.config.grace)  # a peer that reads nothing is not waited for

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername") or ("?", 0)
        name = f"{address[0]}:{address[1]}"
        peer = self.peers.admit(name)
        if peer is None:
            writer.close()
            return
        connection = _Connection(writer, self.stats, self._connections)
        try:
            await self._serve(peer, reader, connection)
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
            connection.end()

    async def _serve(self, peer: Peer, reader: asyncio.StreamReader, connection: _Connection) -> None:
        decoder = FrameDecoder(self.config.limits)
        frames: list[RawFrame] = []
        if self._shared_key is not None:
            rest = await self._handshake(peer, reader, connection.writer)
            if rest is None:
                return
            frames = self._cut(peer, decoder, rest)
        while True:
            waiting = sum(raw.size for raw in frames)
            for raw in frames:
                if not await self._frame(raw, connection, peer) or self._stopping:
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
            self._handshake_failed(peer, f"no PING within {self.config.handshake_timeout:g} s after HELO")
            return None
        except FrameError as exc:
            self._handshake_failed(peer, str(exc))
            return None
        if got is None:
            self._handshake_failed(peer, "closed before its PING")
            return None
        assert self._shared_key is not None
        check = check_ping(got[0], nonce, self._shared_key)
        if not check.ok:
            writer.write(encode_pong(False, check.reason))
            await writer.drain()
            self._handshake_failed(
                peer, f"({check.hostname}) handshake refused: {check.reason}; check <security> shared_key"
            )
            return None
        name = self.config.self_hostname
        digest = shared_key_digest(check.salt, name.encode(), nonce, self._shared_key)
        writer.write(encode_pong(True, "", name, digest))
        await writer.drain()
        return got[1]

    def _handshake_failed(self, peer: Peer, reason: str) -> None:
        self.stats.handshake_failures += 1
        self.complain("handshake_failed", f"{peer.name}: {reason}; closed")

    async def _frame(self, raw: RawFrame, connection: _Connection, peer: Peer) -> bool:
        """Hand the frame to the engine; False when it was refused (the connection then closes)."""
        loop = asyncio.get_running_loop()
        ack: Ack = no_ack
        if raw.chunk is not None:
            connection.owed += 1
            ack = connection.release(loop, raw.chunk)
        lines = await loop.run_in_executor(self._executor, self._take, raw, peer.name, ack)
        if lines >= 0:
            self._refusing = False
            return True
        if raw.chunk is None:
            self.stats.lost += -lines
            self.log.error("%s: %d candidate lines lost: the pipeline is full, and the sender asked for no ack "
                           "(set require_ack_response)", peer.name, -lines)  # fmt: skip
            return False
        connection.forget()
        self.stats.unacked += 1
        if not self._refusing:  # once per run of refusals, not per frame: unacked counts them all
            self.log.warning("%s: frame not acknowledged (the pipeline is full or stopping: a slow sink, a full "
                             "queue or disk); the sender will resend it", peer.name)  # fmt: skip
        self._refusing = True
        return False

    def _take(self, raw: RawFrame, peer: str, ack: Ack) -> int:
        """On the worker thread: decode the frame (FrameError is the peer's) and emit its lines as one batch.

        Returns how many lines were taken, or minus how many when the pipeline refused them. A frame with no
        candidate line is acknowledged at once: there is nothing to hold.
        """
        lines = self._lines(raw, peer)
        assert self._emit is not None
        if not lines:
            ack()
            return 0
        if not self._emit(Batch(lines, ack), wait=False):
            return -len(lines)
        return len(lines)

    def _lines(self, raw: RawFrame, peer: str) -> list[Line]:
        """The candidate lines of a frame, decoded one entry at a time, with the record's host and the entry's time."""
        lines: list[Line] = []
        keys, first = self.config.keys, self.config.keys[0]
        entries = 0
        now = time.time_ns()
        received = EventTime(now // 1_000_000_000, now % 1_000_000_000)  # Forward's nil or 0 time means "now"
        last_time, stamp = None, _rfc3339(received)  # the entries of a frame mostly share their times
        skipped: dict[str, tuple[int, str]] = {}  # reason -> (count, the last detail), said once per frame
        for entry in decode_entries(raw, self.config.limits):
            if not isinstance(entry, Entry):
                if entry.reason == "bad_time":
                    self.stats.bad_times += 1
                else:
                    self.stats.invalid_entries += 1
                skipped[entry.reason] = (skipped.get(entry.reason, (0, ""))[0] + 1, entry.detail)
                continue
            entries += 1
            record = entry.record
            value = record.get(first)
            if type(value) is not str:  # another key, a bin value (Ruby's strings), or no line at all
                value = find_line(record, keys)
                if isinstance(value, BadRecord):
                    self.stats.bad_records += 1
                    self.complain(value.reason, f"tag {raw.tag!r}: {value.detail}")
                    continue
            if isinstance(value, str):
                text, data = value, None
            else:
                text, data = value.decode("utf-8", "surrogateescape"), value
            if not is_candidate(text):  # the common case: one substring test
                self.stats.not_send_errors += 1
                continue
            if data is None:
                data = text.encode("utf-8", "surrogateescape")
            if entry.time != last_time:  # the time for a line logged without one
                last_time = entry.time
                stamp = _rfc3339(received if last_time is None else last_time)
            host = _record_host(record) if len(record) > 1 else None  # a record of the line alone has no host
            lines.append(Line(data, None, None, host, False, stamp))
        self.stats.entries += entries
        self.parsed.lines += entries
        for reason, (count, detail) in skipped.items():
            several = "entry" if count == 1 else "entries"
            self.complain(reason, f"{peer}: {count} {several} skipped in tag {raw.tag!r}, the rest taken: {detail}")
        return lines
