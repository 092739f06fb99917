"""What remote peers may take from a TCP receiver: connection slots, time, and bytes held.

Shared by the Forward server and the syslog TCP listener, so a hostile peer
meets the same walls on both. At the connection cap a newcomer takes the slot
of the connection idle the longest (idle sockets cannot lock real senders
out); when none is idle it is refused. A frame (a syslog message) must be
whole within ``frame_timeout`` of its first byte; a connection with nothing in
progress is closed after ``idle_timeout``. The bytes of unfinished and
undecoded frames of all peers count against one budget: past it, the peer
holding the largest unfinished frame is closed, and reads wait while whole
frames being decoded hold the budget. Every closing is counted; the log says
each kind once, then at every power of ten, never once per connection.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from named_senderr.errors import ConfigError

MIB = 1024 * 1024
FD_RESERVE = 64  # descriptors kept for everything that is not a peer: files, sinks, the metrics endpoint
ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's words for EMFILE, ENFILE, ENOBUFS, ENOMEM
Warn = Callable[[str], None]


@dataclass(frozen=True)
class PeerLimits:
    max_connections: int = 512
    idle_timeout: float = 300.0
    frame_timeout: float = 60.0
    max_buffer_bytes: int = 128 * MIB

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ConfigError(f"--max-connections {self.max_connections} must be at least 1")
        if not self.idle_timeout > 0 or not self.frame_timeout > 0:
            raise ConfigError("--idle-timeout and --frame-timeout must be more than 0 seconds")
        if self.max_buffer_bytes < 1:
            raise ConfigError(f"--max-buffer {self.max_buffer_bytes} must be positive")


GAUGES = ("open_connections", "buffered_bytes")  # of PeerStats: values now, not counts


@dataclass
class PeerStats:
    """Counters of the connections; the GAUGES say what is open and held now."""

    connections: int = 0
    open_connections: int = 0
    refused_connections: int = 0  # at the cap with no idle connection to close
    evicted_connections: int = 0  # idle, closed to make room for a new one at the cap
    idle_timeouts: int = 0
    frame_timeouts: int = 0  # a frame begun and not finished in time
    shed_connections: int = 0  # held the largest unfinished frame when all peers together held too much
    accept_errors: int = 0  # accept() failed, out of file descriptors
    buffered_bytes: int = 0


@dataclass(eq=False)
class Peer:
    name: str
    task: asyncio.Task
    active: float  # when it last sent something or was answered
    partial: int = 0  # bytes of a frame not yet whole
    whole: int = 0  # bytes of whole frames not yet decoded: the peer is busy
    deadline: float | None = None  # when its unfinished frame must be whole
    closing: str = ""  # why the table closed it


class PeerClosed(Exception):
    """The table closed this connection (a timeout); the message says why."""


@dataclass
class PeerTable:
    limits: PeerLimits
    stats: PeerStats
    warn: Warn
    clock: Callable[[], float] = time.monotonic
    peers: dict[asyncio.Task, Peer] = field(default_factory=dict)
    _said: Counter[str] = field(default_factory=Counter)
    _room: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._room.set()
        self.max_connections = self._fitting_cap()

    def _fitting_cap(self) -> int:
        """The cap, lowered to what the open-file limit leaves: past it accept() fails and nobody is served."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        room = soft - FD_RESERVE if soft != resource.RLIM_INFINITY else self.limits.max_connections
        if self.limits.max_connections <= room:
            return self.limits.max_connections
        fitting = max(1, room)
        self.warn(
            f"--max-connections {self.limits.max_connections} does not fit the open-file limit of {soft} "
            f"(ulimit -n); using {fitting}"
        )
        return fitting

    def say(self, kind: str, text: str) -> None:
        """Log a kind of closing the first time, then at every power of ten, with the count so far."""
        self._said[kind] += 1
        count = self._said[kind]
        if str(count).rstrip("0") == "1":  # 1, 10, 100, ...
            self.warn(f"{text} ({count} so far)" if count > 1 else text)

    def admit(self, name: str) -> Peer | None:
        """A slot for the connection running in the current task, or None when it must be closed at once."""
        task = asyncio.current_task()
        assert task is not None
        if len(self.peers) >= self.max_connections and not self._evict_idlest():
            self.stats.refused_connections += 1
            self.say("refused", f"{name}: refused, {self.max_connections} connections are open and none is idle "
                     "(--max-connections)")  # fmt: skip
            return None
        peer = Peer(name, task, self.clock())
        self.peers[task] = peer
        self.stats.connections += 1
        self.stats.open_connections = len(self.peers)
        return peer

    def _evict_idlest(self) -> bool:
        idle = [peer for peer in self.peers.values() if not peer.partial and not peer.whole and not peer.closing]
        if not idle:
            return False
        victim = min(idle, key=lambda peer: peer.active)
        self.stats.evicted_connections += 1
        self.say("evicted", f"at the limit of {self.max_connections} connections (--max-connections): "
                 f"{victim.name}, idle the longest, closed for a new one")  # fmt: skip
        self._close(victim, "evicted")
        return True

    def leave(self, peer: Peer) -> None:
        if self.peers.pop(peer.task, None) is not None:
            self._hold(peer, 0, 0)
        self.stats.open_connections = len(self.peers)

    def hold(self, peer: Peer, partial: int, whole: int, completed: bool) -> None:
        """What ``peer`` holds now; ``completed`` when a frame was finished (the next one's clock starts)."""
        now = self.clock()
        peer.active = now
        if not partial:
            peer.deadline = None
        elif completed or peer.deadline is None:
            peer.deadline = now + self.limits.frame_timeout
        self._hold(peer, partial, whole)
        while self.stats.buffered_bytes > self.limits.max_buffer_bytes:
            growing = [p for p in self.peers.values() if p.partial and not p.whole and not p.closing]
            if not growing:
                break  # whole frames hold the budget: reads wait in read() until they are decoded
            victim = max(growing, key=lambda p: p.partial)
            self.stats.shed_connections += 1
            self.say("shed", f"{victim.name}: closed, its unfinished frame of {victim.partial:,} bytes is the largest "
                     f"while all peers hold more than --max-buffer {self.limits.max_buffer_bytes:,} bytes")  # fmt: skip
            self._close(victim, "shed")

    def _hold(self, peer: Peer, partial: int, whole: int) -> None:
        self.stats.buffered_bytes += partial + whole - peer.partial - peer.whole
        peer.partial, peer.whole = partial, whole
        if self.stats.buffered_bytes > self.limits.max_buffer_bytes:
            self._room.clear()
        else:
            self._room.set()

    def _close(self, peer: Peer, why: str) -> None:
        peer.closing = why
        self._hold(peer, 0, 0)
        peer.task.cancel()

    async def read(self, peer: Peer, reader: asyncio.StreamReader, size: int) -> bytes:
        """The next bytes, once the budget has room; raises PeerClosed at the idle or the frame deadline."""
        in_frame = peer.deadline is not None
        timeout = peer.deadline - self.clock() if peer.deadline is not None else self.limits.idle_timeout
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await self._room.wait()
                return await reader.read(size)
        except TimeoutError:
            if in_frame:
                self.stats.frame_timeouts += 1
                reason = f"{peer.name}: closed, a frame begun {self.limits.frame_timeout:g} s ago is still not whole"
                self.say("frame_timeout", reason + " (--frame-timeout)")
            else:
                self.stats.idle_timeouts += 1
                reason = f"{peer.name}: closed after {self.limits.idle_timeout:g} s without a frame"
            raise PeerClosed(reason) from None

    def guard_accept(self, loop: asyncio.AbstractEventLoop) -> None:
        """One counted line instead of a traceback per failed accept() when file descriptors run out."""
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
            exc = context.get("exception")
            if context.get("message") == ACCEPT_FAILED and isinstance(exc, OSError):
                self.stats.accept_errors += 1
                self.say("accept", f"cannot accept connections: {exc.strerror}; lower --max-connections or raise "
                         "the open-file limit (ulimit -n)")  # fmt: skip
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)
