"""The Forward receiver over real TCP on loopback: fluent-logger as a client, and frames built from the spec."""

from __future__ import annotations

import contextlib
import gzip
import logging
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgpack
import pytest
from fluent.sender import FluentSender

from named_senderr.engine.runner import Runner
from named_senderr.engine.transforms import ParseLines
from named_senderr.event import Event
from named_senderr.normalize.timestamp import TimestampNormalizer
from named_senderr.parse.named import NamedLineParser
from named_senderr.protocol.fluent_forward import EventTime, Limits, encode_message, encode_ping, shared_key_digest
from named_senderr.sources.forward_server import ForwardServerConfig, ForwardSource
from named_senderr.sources.peers import PeerLimits
from named_senderr.telemetry import Stats
from tests import test_fluent_forward_wire as w
from tests.polling import wait_until

SAMPLE = Path(__file__).resolve().parent.parent / "plugin" / "named_senderr" / "samples" / "named.log"
SAMPLE_EVENTS = 39  # send errors in the bundled sample
LINE = "21-Nov-2026 04:48:37.067 client @0x7f 192.0.2.1#53 (example.com): error sending response: would block"
BARE_LINE = "client @0x7f 192.0.2.1#53 (example.com): error sending response: would block"  # no time of its own
WAIT = 10.0


class ListOutput:
    """A delivery that keeps the events, durable at once; ``full`` makes the pipeline refuse them."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.full = False
        self.closed = False
        self.gate: threading.Event | None = None  # when set, a hand-off waits for it
        self.waiting = False
        self.holding = False  # when set, what it takes is not durable until ``release``
        self._taken = self._durable = 0

    def ready(self) -> bool:
        return not self.full

    def put(self, events: list[Event], seq: int, wait: bool = True, routes: object = None) -> bool:
        if self.gate is not None:
            self.waiting = True
            self.gate.wait(WAIT)
        self.events.extend(events)
        self._taken = seq
        if not self.holding:
            self._durable = seq
        return True

    def release(self) -> None:
        self._durable = self._taken

    def durable_through(self) -> int:
        return self._durable

    def tick(self) -> None:
        pass

    def failed(self) -> bool:
        return False

    def close(self, stop: threading.Event) -> None:
        self.closed = True


class RunningServer:
    """A ForwardSource in the engine's runner on its own thread, bound to a free loopback port."""

    def __init__(self, parser: NamedLineParser, **settings: object) -> None:
        self.output = ListOutput()
        config = ForwardServerConfig(host="127.0.0.1", port=0, self_hostname="receiver", **settings)  # type: ignore[arg-type]
        self.parsed = Stats()
        self.server = ForwardSource(config, self.parsed, logging.getLogger("test.forward_server"))
        self.stopping = threading.Event()
        runner = Runner([self.server], ParseLines(parser, self.parsed), [], self.output, self.stopping)
        self.thread = threading.Thread(target=runner.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.address is not None)
        self.port = self.server.address[1]

    @property
    def stats(self):
        return self.server.stats

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(WAIT)


@pytest.fixture(scope="module")
def parser() -> NamedLineParser:
    return NamedLineParser(TimestampNormalizer(UTC))


@pytest.fixture
def make_server(parser: NamedLineParser) -> Iterator[Callable[..., RunningServer]]:
    servers: list[RunningServer] = []

    def make(**settings: object) -> RunningServer:
        servers.append(RunningServer(parser, **settings))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT)


def read_object(sock: socket.socket, raw: bool = False) -> object:
    unpacker = msgpack.Unpacker(raw=raw)
    while True:
        for obj in unpacker:
            return obj
        data = sock.recv(65536)
        if not data:
            raise AssertionError("connection closed before a whole msgpack object arrived")
        unpacker.feed(data)


def assert_closed(sock: socket.socket) -> None:
    """The server closed this connection (EOF or reset), and sent nothing before."""
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(65536) == b""


# --- fluent-logger as a real client -------------------------------------------------------------


def test_fluent_logger_lines_become_events(server: RunningServer):
    sender = FluentSender("named", host="127.0.0.1", port=server.port)
    for line in SAMPLE.read_text().splitlines():
        assert sender.emit("log", {"log": line})
    sender.close()
    wait_until(lambda: server.parsed.events + server.stats.not_send_errors == 400)  # every line handed off
    assert len(server.output.events) == SAMPLE_EVENTS
    assert server.stats.not_send_errors == 400 - SAMPLE_EVENTS
    assert server.output.events[0].reason == "would_block"


def test_fluent_logger_nanosecond_event_time_fills_a_line_without_time(server: RunningServer):
    sender = FluentSender("named", host="127.0.0.1", port=server.port, nanosecond_precision=True)
    assert sender.emit_with_time("log", 1_700_000_000.25, {"message": BARE_LINE})
    sender.close()
    wait_until(lambda: server.output.events)
    assert server.output.events[0].timestamp == "2023-11-14T22:13:20.250Z"


# --- each mode from bytes ----------------------------------------------------------------------


def send_and_ack(port: int, frame: bytes) -> object:
    with connect(port) as sock:
        sock.sendall(frame)
        return read_object(sock)


def test_message_mode_is_acknowledged(server: RunningServer):
    frame = w.message("t", w.event_time(1_700_000_000, 0), w.record(log=LINE), w.chunk_option("m1"))
    assert send_and_ack(server.port, frame) == {"ack": "m1"}
    assert len(server.output.events) == 1  # handed off before the ack was written


def test_forward_mode_is_acknowledged(server: RunningServer):
    entries = [w.array(w.event_time(1_700_000_000, i), w.record(log=LINE)) for i in range(3)]
    assert send_and_ack(server.port, w.forward("t", entries, w.chunk_option("f1"))) == {"ack": "f1"}
    assert len(server.output.events) == 3


def test_packed_forward_str32_as_fluentd_sends_it(server: RunningServer):
    entries = [w.array(w.event_time(1_700_000_000, 0), w.record(message=LINE)) for _ in range(4)]
    assert send_and_ack(server.port, w.packed_forward("t", entries, w.chunk_option("p1"))) == {"ack": "p1"}
    assert len(server.output.events) == 4


def test_compressed_packed_forward(server: RunningServer):
    entries = [w.array(w.uint(1_700_000_000), w.record(log=LINE)) for _ in range(5)]
    assert send_and_ack(server.port, w.compressed_packed_forward("t", entries, chunk="g1", members=2)) == {"ack": "g1"}
    assert len(server.output.events) == 5


def test_fluent_bit_metadata_entries(server: RunningServer):
    entries = [w.array(w.array(w.event_time(1_700_000_000, 0), w.fmap()), w.record(log=LINE))]
    assert send_and_ack(server.port, w.forward("fb", entries, w.chunk_option("v5"))) == {"ack": "v5"}
    assert len(server.output.events) == 1


def test_event_time_with_4e9_nanoseconds_is_skipped_counted_and_the_rest_acknowledged(server: RunningServer):
    """It rendered as ``....4000Z``; now the entry is refused (as Fluent Bit does) and its neighbours go through."""
    bad = w.array(w.event_time(1_700_000_000, 4_000_000_000), w.record(message=BARE_LINE))
    good = w.array(w.event_time(1_700_000_000, 250_000_000), w.record(message=BARE_LINE))
    assert send_and_ack(server.port, w.forward("t", [bad, good], w.chunk_option("ns"))) == {"ack": "ns"}
    assert [event.timestamp for event in server.output.events] == ["2023-11-14T22:13:20.250Z"]
    assert server.stats.bad_times == 1


def test_a_line_without_a_time_in_an_entry_of_time_0_gets_the_time_it_was_received(server: RunningServer):
    """Forward's 0 or nil time means "now": the receipt, not the start of the process, dates the event."""
    before = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert send_and_ack(server.port, w.message("t", w.uint(0), w.record(log=BARE_LINE), w.chunk_option("z")))
    after = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert before <= server.output.events[0].timestamp <= after


def test_frames_without_chunk_get_no_ack(server: RunningServer):
    with connect(server.port) as sock:
        sock.sendall(w.message("t", w.uint(1), w.record(log=LINE)))
        sock.sendall(w.message("t", w.uint(1), w.record(log=LINE), w.chunk_option("only")))
        assert read_object(sock) == {"ack": "only"}
    assert len(server.output.events) == 2


def test_record_without_the_key_is_counted_and_still_acknowledged(server: RunningServer):
    assert send_and_ack(server.port, w.message("t", w.uint(1), w.record(other="x"), w.chunk_option("k")))
    assert server.stats.bad_records == 1


def test_host_comes_from_the_record_when_the_line_has_none(server: RunningServer):
    frame = w.message("t", w.uint(1), w.record(log=LINE, hostname="ns1"), w.chunk_option("h"))
    send_and_ack(server.port, frame)
    assert server.output.events[0].host == "ns1"


# --- backpressure: no ack before the pipeline took the frame --------------------------------------


def test_a_frame_is_acknowledged_only_once_the_delivery_holds_its_events_durably(server: RunningServer):
    server.output.holding = True
    with connect(server.port) as sock:
        sock.sendall(w.message("t", w.uint(1), w.record(log=LINE), w.chunk_option("durable")))
        wait_until(lambda: server.output.events)  # taken by the pipeline, not yet durable
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(64)
        server.output.release()
        sock.settimeout(WAIT)
        assert read_object(sock) == {"ack": "durable"}
    assert server.stats.acks == 1


def test_a_full_output_withholds_the_ack_and_closes(server: RunningServer):
    server.output.full = True
    with connect(server.port) as sock:
        sock.sendall(w.message("t", w.uint(1), w.record(log=LINE), w.chunk_option("later")))
        assert_closed(sock)
    assert server.stats.unacked == 1
    server.output.full = False
    assert send_and_ack(server.port, w.message("t", w.uint(1), w.record(log=LINE), w.chunk_option("later")))


def test_a_full_output_without_ack_counts_the_loss(server: RunningServer, caplog: pytest.LogCaptureFixture):
    server.output.full = True
    with connect(server.port) as sock:
        sock.sendall(w.message("t", w.uint(1), w.record(log=LINE)))
        assert_closed(sock)
    assert server.stats.lost == 1
    assert "asked for no ack" in caplog.text


# --- shared-key handshake ---------------------------------------------------------------------


def handshake(port: int, key: str) -> tuple[socket.socket, list]:
    sock = connect(port)
    helo = read_object(sock, raw=True)
    assert helo[0] == b"HELO"
    nonce = helo[1][b"nonce"]
    salt = b"0123456789abcdef"
    sock.sendall(encode_ping("sender", salt, nonce, key))
    pong = read_object(sock, raw=True)
    if pong[1]:
        assert pong[4].decode() == shared_key_digest(salt, pong[3], nonce, key.encode())  # the server knows the key too
    return sock, pong


def test_handshake_with_the_shared_key_then_frames_are_accepted(make_server: Callable[..., RunningServer]):
    server = make_server(shared_key="s3cret")
    sock, pong = handshake(server.port, "s3cret")
    with sock:
        assert pong[:4] == [b"PONG", True, b"", b"receiver"]
        sock.sendall(encode_message("t", EventTime(1_700_000_000), {"log": LINE}, {"chunk": "hs"}))
        assert read_object(sock) == {"ack": "hs"}
    assert len(server.output.events) == 1


def test_handshake_with_a_wrong_key_is_refused(make_server: Callable[..., RunningServer]):
    server = make_server(shared_key="s3cret")
    sock, pong = handshake(server.port, "guess")
    with sock:
        assert pong[:3] == [b"PONG", False, b"shared_key mismatch"]
        sock.sendall(encode_message("t", 1, {"log": LINE}))
        assert_closed(sock)
    assert server.stats.handshake_failures == 1
    assert server.output.events == []


def test_frames_without_handshake_are_refused_when_a_key_is_set(make_server: Callable[..., RunningServer]):
    server = make_server(shared_key="s3cret")
    with connect(server.port) as sock:
        read_object(sock, raw=True)  # HELO
        sock.sendall(encode_message("t", 1, {"log": LINE}, {"chunk": "x"}))
        pong = read_object(sock, raw=True)
        assert pong[:2] == [b"PONG", False]
        assert_closed(sock)
    assert server.output.events == []


# --- hostile input: the connection goes, the server stays ---------------------------------------


def bad_connection_then_good(server: RunningServer, bad: bytes) -> None:
    bystander = connect(server.port)  # opened before the bad one, must be unaffected
    with connect(server.port) as sock:
        sock.sendall(bad)
        assert_closed(sock)
    with bystander:
        bystander.sendall(w.message("t", w.uint(1), w.record(log=LINE), w.chunk_option("still")))
        assert read_object(bystander) == {"ack": "still"}
    assert send_and_ack(server.port, w.message("t", w.uint(1), w.record(log=LINE), w.chunk_option("new")))
    assert server.stats.malformed == 1


def test_oversize_frame_closes_only_its_connection(make_server, caplog: pytest.LogCaptureFixture):
    server = make_server(limits=Limits(max_frame_bytes=64 * 1024))
    bad_connection_then_good(server, w.message("t", w.uint(1), w.record(log="x" * 200_000)))
    assert "larger than the limit" in caplog.text


def test_gzip_bomb_closes_only_its_connection(make_server, caplog: pytest.LogCaptureFixture):
    server = make_server(limits=Limits(max_decompressed_bytes=1024 * 1024))
    bomb = gzip.compress(msgpack.packb([1, {"log": "x" * 60_000}]) * 300)  # 18 MB of entries
    bad_connection_then_good(server, w.array(w.s("t"), w.bin32(bomb), w.fmap((w.s("compressed"), w.s("gzip")))))
    assert "gzip bomb" in caplog.text


def test_garbage_bytes_close_only_their_connection(server: RunningServer, caplog: pytest.LogCaptureFixture):
    bad_connection_then_good(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
    assert "malformed frame" in caplog.text


def test_a_non_array_frame_closes_only_its_connection(server: RunningServer):
    bad_connection_then_good(server, w.record(log=LINE))


def test_a_deeply_nested_record_is_a_counted_bad_record_and_its_frame_acknowledged(server: RunningServer):
    nested = b"\x91" * 200 + b"\x00"
    frame = w.message("t", w.uint(1), w.fmap((w.s("log"), nested)), w.chunk_option("deep"))
    assert send_and_ack(server.port, frame) == {"ack": "deep"}
    assert server.stats.bad_records == 1


def test_nesting_past_msgpacks_own_limit_closes_only_its_connection(server: RunningServer):
    nested = b"\x91" * 2000 + b"\x00"
    bad_connection_then_good(server, w.message("t", w.uint(1), w.fmap((w.s("log"), nested))))


def test_stop_lets_a_frame_in_hand_off_finish_and_be_acknowledged(server: RunningServer):
    server.output.gate = threading.Event()
    with connect(server.port) as sock:
        sock.sendall(w.message("t", w.uint(1), w.record(log=LINE), w.chunk_option("last")))
        wait_until(lambda: server.output.waiting)  # the frame is in hand-off
        server.stopping.set()
        server.output.gate.set()
        assert read_object(sock) == {"ack": "last"}
        server.thread.join(WAIT)
    assert len(server.output.events) == 1 and server.output.closed


# --- a bad entry time costs that entry only -----------------------------------------------------


@pytest.mark.parametrize(
    "time",
    [w.float64(1.7e12), w.float64(1e300), w.uint64(2**64 - 1), w.float64(float("inf")), w.float64(float("nan"))],
    ids=["milliseconds", "1e300", "2^64-1", "inf", "nan"],
)
def test_one_bad_entry_time_is_skipped_and_counted_and_the_other_1999_acknowledged(
    server: RunningServer, time: bytes, caplog: pytest.LogCaptureFixture
):
    good = w.array(w.uint(1_700_000_000), w.record(log=BARE_LINE))  # no time of its own: the entry's time is used
    entries = [good] * 1000 + [w.array(time, w.record(log=BARE_LINE))] + [good] * 999
    assert send_and_ack(server.port, w.array(w.s("t"), w.array32(entries), w.chunk_option("c"))) == {"ack": "c"}
    assert len(server.output.events) == 1999
    assert server.stats.bad_times == 1
    assert "1 entry skipped" in caplog.text and "please report" not in caplog.text


# --- hostile peers: timeouts, the connection cap, the buffer budget -----------------------------


def still_open(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) != b""
    except TimeoutError:
        return True
    except ConnectionResetError:
        return False


def acked(port: int) -> bool:
    return send_and_ack(port, w.message("t", w.uint(1), w.record(log=LINE), w.chunk_option("ok"))) == {"ack": "ok"}


def test_an_idle_connection_is_closed_after_the_idle_timeout_and_counted(make_server):
    server = make_server(peers=PeerLimits(idle_timeout=0.3))
    with connect(server.port) as sock:
        sock.sendall(w.message("t", w.uint(1), w.record(log=LINE), w.chunk_option("first")))
        assert read_object(sock) == {"ack": "first"}
        assert_closed(sock)  # then silence: closed by the server
    assert server.stats.idle_timeouts == 1


def test_a_frame_not_whole_within_the_frame_timeout_is_closed_and_counted_and_others_are_served(
    make_server, caplog: pytest.LogCaptureFixture
):
    server = make_server(peers=PeerLimits(frame_timeout=0.5))
    with connect(server.port) as slow:
        slow.sendall(b"\x93" + w.s("t"))  # the start of a frame, and then one byte a while
        for _ in range(3):
            assert acked(server.port)  # a good client meanwhile
        wait_until(lambda: not still_open(slow), timeout=5)
    assert server.stats.frame_timeouts == 1
    assert "--frame-timeout" in caplog.text


def test_at_the_connection_cap_the_longest_idle_connection_makes_room(make_server):
    server = make_server(peers=PeerLimits(max_connections=3))
    idle = [connect(server.port) for _ in range(3)]
    wait_until(lambda: server.stats.open_connections == 3)
    try:
        assert acked(server.port)  # a fourth: the first idle one is closed for it
        wait_until(lambda: not still_open(idle[0]))
        assert still_open(idle[1]) and still_open(idle[2])
        assert (server.stats.evicted_connections, server.stats.refused_connections) == (1, 0)
    finally:
        for sock in idle:
            sock.close()


def test_at_the_connection_cap_with_every_connection_inside_a_frame_a_new_one_is_refused(make_server):
    server = make_server(peers=PeerLimits(max_connections=2))
    busy = [connect(server.port) for _ in range(2)]
    try:
        for sock in busy:
            sock.sendall(b"\x93" + w.s("t"))  # inside a frame: not idle
        wait_until(lambda: server.stats.buffered_bytes == 6)
        with connect(server.port) as third:
            assert_closed(third)
        assert (server.stats.refused_connections, server.stats.evicted_connections) == (1, 0)
    finally:
        for sock in busy:
            sock.close()


def test_past_the_buffer_budget_the_peer_with_the_largest_unfinished_frame_is_closed(make_server):
    mib = 1024 * 1024
    server = make_server(limits=Limits(max_frame_bytes=4 * mib), peers=PeerLimits(max_buffer_bytes=4 * mib))
    head = b"\x93" + w.s("t") + b"\xc6" + struct.pack(">I", 3 * mib)  # announces 3 MiB, sends less
    big, small = connect(server.port), connect(server.port)
    try:
        big.sendall(head + b"\x00" * (2 * mib + 64 * 1024))
        small.sendall(head + b"\x00" * mib)
        wait_until(lambda: server.stats.buffered_bytes > 3 * mib)
        # Over 4 MiB in all, the larger one goes; small stays 64 KiB smaller however the server's reads split it
        # (with both at 2 MiB, the byte that crossed the budget decided which was larger).
        small.sendall(b"\x00" * (mib + 1))
        wait_until(lambda: server.stats.shed_connections == 1)
        assert not still_open(big) and still_open(small)
        assert server.stats.buffered_bytes <= 4 * mib
        assert acked(server.port)
    finally:
        big.close()
        small.close()


def test_before_the_handshake_nothing_larger_than_a_ping_is_read(make_server):
    server = make_server(shared_key="s3cret")
    with connect(server.port) as sock:
        read_object(sock, raw=True)  # HELO
        with contextlib.suppress(ConnectionError):
            sock.sendall(b"\xdd\x00\x10\x00\x00" + b"\x90" * 200_000)  # a 1 Mi-element array in place of the PING
        assert_closed(sock)
    assert server.stats.handshake_failures == 1
    assert server.stats.buffered_bytes == 0
