"""A syslog receiver on UDP and TCP: each message goes to the parser as one line.

Loopback unless an address is given. Limits hold on every path: a message
over ``max_message_bytes`` is counted and dropped (the TCP connection is
closed, since its framing cannot be trusted after it); TCP peers meet the
connection cap, the idle and message timeouts of sources/peers.py, so idle or
dribbling sockets cannot lock real senders out. Delivery is synchronous in the event loop,
so a slow consumer slows TCP senders down; UDP has no such brake: the
kernel drops what does not fit the socket's buffer, and says how many, which
is counted and warned about.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from named_senderr.errors import ConfigError
from named_senderr.parse.named import MAX_LINE_BYTES
from named_senderr.protocol.syslog_frame import FrameError, StreamDeframer, datagram_message
from named_senderr.sources.peers import PeerClosed, PeerLimits, PeerStats, PeerTable

# (messages, each one's sender address, whether the sender can be made to wait: TCP yes, UDP no)
Deliver = Callable[[list[bytes], list[str], bool], None]
Warn = Callable[[str], None]
_SENDER: contextvars.ContextVar[str] = contextvars.ContextVar("syslog_sender", default="")  # the task's TCP peer
STOP_POLL = 0.05  # how often the loop looks at the stop flag, in seconds
READ_SIZE = 64 * 1024
UDP_BATCH = 1024  # datagrams taken per wake-up before the loop serves the others
DATAGRAM_COST = 256  # bytes of receive buffer a datagram takes at least (the kernel counts its buffers too)
# Linux's numbers; Python names them only on some builds
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
MAX_CONNECTIONS = 256


@dataclass(frozen=True)
class SyslogEndpoint:
    transport: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> SyslogEndpoint:
        """``udp://HOST:PORT`` or ``tcp://HOST:PORT``; no host means 127.0.0.1."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("udp", "tcp") or port is None or parts.path not in ("", "/"):
            raise ConfigError(
                f"--syslog {url!r}: expected udp://HOST:PORT or tcp://HOST:PORT, e.g. udp://127.0.0.1:5514"
            )
        return cls(parts.scheme, parts.hostname or "127.0.0.1", port)

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port if port is None else port}"


@dataclass(frozen=True)
class SyslogConfig:
    endpoints: tuple[SyslogEndpoint, ...]
    max_message_bytes: int = MAX_LINE_BYTES
    udp_receive_buffer: int = 4 * 1024 * 1024  # a storm arrives faster than it is parsed: room for a second of it
    peers: PeerLimits = field(default_factory=lambda: PeerLimits(max_connections=MAX_CONNECTIONS))

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ConfigError("listen needs at least one --syslog udp://HOST:PORT or tcp://HOST:PORT")
        if not 480 <= self.max_message_bytes <= 1024 * 1024:
            raise ConfigError(f"max message size {self.max_message_bytes} is outside 480 (RFC 3164) to 1048576")
        if not 4096 <= self.udp_receive_buffer <= 256 * 1024 * 1024:
            raise ConfigError(f"UDP receive buffer {self.udp_receive_buffer} is outside 4096 to 268435456 bytes")


@dataclass
class SyslogStats(PeerStats):
    """Counters read by the tests and the summary: nothing is dropped without being counted."""

    messages: int = 0
    dropped: int = 0  # whole messages the pipeline refused (UDP while it was full; any while stopping)
    oversize: int = 0
    kernel_drops: int = 0  # UDP datagrams the kernel dropped, receive buffer full (Linux)
    malformed: int = 0


@dataclass
class SyslogServer:
    config: SyslogConfig
    deliver: Deliver
    warn: Warn
    stats: SyslogStats = field(default_factory=SyslogStats)
    _closers: list[Callable[[], None]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.peers = PeerTable(self.config.peers, self.stats, self.warn)

    async def start(self) -> list[str]:
        """Bind every endpoint; the URLs actually bound (port 0 becomes the real port)."""
        loop = asyncio.get_running_loop()
        self.peers.guard_accept(loop)
        bound = []
        for endpoint in self.config.endpoints:
            try:
                if endpoint.transport == "udp":
                    port = self._listen_udp(loop, endpoint)
                else:
                    server = await asyncio.start_server(self._tcp, endpoint.host, endpoint.port)
                    port = server.sockets[0].getsockname()[1]
                    self._closers.append(server.close)
            except OSError as exc:
                self.close()
                raise ConfigError(f"--syslog {endpoint.url()}: cannot listen: {exc.strerror}") from exc
            bound.append(endpoint.url(port))
        return bound

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()

    def _listen_udp(self, loop: asyncio.AbstractEventLoop, endpoint: SyslogEndpoint) -> int:
        family = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_DGRAM)[0][0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.config.udp_receive_buffer)  # root only
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.config.udp_receive_buffer)  # up to rmem_max
            with contextlib.suppress(OSError):  # Linux only: the kernel's drop count rides along each datagram
                sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            sock.bind((endpoint.host, endpoint.port))
        except OSError:
            sock.close()
            raise
        loop.add_reader(sock.fileno(), self._drain_udp, sock)
        self._closers.append(lambda: self._close_udp(loop, sock))
        return sock.getsockname()[1]

    def _close_udp(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        """Deliver what is still queued; drops after the last datagram ride on none: the kernel's table has them.

        What the kernel already holds is delivered, not dropped on the way out; bounded by what its buffer
        can hold, so a sender that keeps sending cannot hold the shutdown up.
        """
        loop.remove_reader(sock.fileno())
        held = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // DATAGRAM_COST
        for _ in range(held // UDP_BATCH + 1):
            if self._drain_udp(sock) < UDP_BATCH:
                break
        self._kernel_drops(_proc_udp_drops(os.fstat(sock.fileno()).st_ino))
        sock.close()

    def _drain_udp(self, sock: socket.socket) -> int:
        """Every datagram waiting, up to UDP_BATCH, delivered as one batch: one loop turn, not one per message."""
        limit = self.config.max_message_bytes
        messages, senders = [], []
        received = 0
        while received < UDP_BATCH:
            try:
                data, ancillary, _flags, peer = sock.recvmsg(limit + 1, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.warn(f"udp: receive failed: {exc.strerror}")
                break
            received += 1
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(payload) >= 4:
                    self._kernel_drops(int.from_bytes(payload[:4], sys.byteorder))
            if len(data) > limit:
                self.stats.oversize += 1
                self.warn(f"udp from {_peer(peer)}: message over {limit} bytes, dropped")
            elif message := datagram_message(data):
                messages.append(message)
                senders.append(peer[0])
        self._take(messages, senders)
        return received

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection, in its own task: the task carries its sender's address for ``_take``."""
        peer = writer.get_extra_info("peername")
        _SENDER.set(peer[0] if peer else "")
        await self._connection(reader, writer)

    def _kernel_drops(self, total: int) -> None:
        if total > self.stats.kernel_drops:
            self.warn(f"udp: the kernel dropped {total - self.stats.kernel_drops} datagram(s), receive buffer full")
            self.stats.kernel_drops = total

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name = f"tcp from {_peer(writer.get_extra_info('peername'))}"
        peer = self.peers.admit(name)
        if peer is None:
            writer.close()
            return
        deframer = StreamDeframer(self.config.max_message_bytes)
        try:
            while deframer.error is None and (data := await self.peers.read(peer, reader, READ_SIZE)):
                messages = deframer.feed(data)
                self._take(messages)
                self.peers.hold(peer, deframer.pending, 0, bool(messages))
            if deframer.error is not None:
                raise deframer.error
            last = deframer.finish()
            if last:
                self._take([last])
        except FrameError as exc:
            if exc.oversize:
                self.stats.oversize += 1
            else:
                self.stats.malformed += 1
            self.warn(f"{name}: malformed frame: {exc}; connection closed")
        except (ConnectionError, PeerClosed, asyncio.CancelledError):
            pass  # the sender went away, or the peer table closed it (counted, and said): what came whole was delivered
        finally:
            self.peers.leave(peer)
            writer.close()

    def _take(self, messages: list[bytes], senders: list[str] | None = None) -> None:
        """UDP's messages come with the sender of each; a TCP connection's are all its sender's, who can wait."""
        if messages:
            self.stats.messages += len(messages)
            if senders is None:
                self.deliver(messages, [_SENDER.get()] * len(messages), True)
            else:
                self.deliver(messages, senders, False)


def _proc_udp_drops(inode: int) -> int:
    """The drops column of /proc/net/udp{,6} for the socket ``inode``; 0 where there is no such table."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table, encoding="ascii") as rows:
                for row in rows:
                    fields = row.split()
                    if len(fields) > 12 and fields[9] == str(inode):
                        return int(fields[12])
        except (OSError, ValueError):
            continue
    return 0


def _peer(address: tuple | None) -> str:
    return f"{address[0]}:{address[1]}" if address else "unknown peer"


def serve(
    config: SyslogConfig,
    deliver: Deliver,
    warn: Warn,
    stop: threading.Event,
    on_ready: Callable[[list[str]], None] = lambda _urls: None,
    stats: SyslogStats | None = None,
) -> SyslogStats:
    """Receive until ``stop`` is set (a signal handler or a test sets it); returns the counters."""
    server = SyslogServer(config, deliver, warn, stats or SyslogStats())

    async def main() -> None:
        on_ready(await server.start())
        try:
            while not stop.is_set():
                await asyncio.sleep(STOP_POLL)
        finally:
            server.close()

    asyncio.run(main())
    return server.stats
