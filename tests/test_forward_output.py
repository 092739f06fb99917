"""sinks/forward.py against a small in_forward receiver on loopback, including a peer that goes down and comes back."""

from __future__ import annotations

import asyncio
import logging
import socket
import socketserver
import threading
from collections.abc import Iterator
from datetime import UTC

import msgpack
import pytest
from fluent.sender import FluentSender

from named_senderr.event import Event, to_flat
from named_senderr.normalize.timestamp import TimestampNormalizer
from named_senderr.parse.named import NamedLineParser
from named_senderr.protocol.fluent_forward import EventTime, FrameDecoder, FrameError, decode_frame
from named_senderr.sinks.forward import ForwardOutput, ForwardOutputConfig
from named_senderr.sources.exec_filter import RecordParser
from named_senderr.sources.forward_server import ForwardServer, ForwardServerConfig, OutputFull
from tests.polling import wait_until

WAIT = 10.0
LINE = "21-Nov-2026 04:48:37.067 client @0x7f 192.0.2.1#{port} (example.com): error sending response: would block"
log = logging.getLogger("test.forward_output")


class Receiver:
    """A minimal in_forward: keeps (tag, time, record) of every entry; ``stop`` also drops open connections."""

    def __init__(self, port: int = 0, entries: list | None = None) -> None:
        self.entries: list[tuple[str, EventTime | None, dict]] = [] if entries is None else entries
        self._connections: set[socket.socket] = set()
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                receiver._connections.add(self.request)
                decoder = FrameDecoder()
                try:
                    while data := self.request.recv(65536):
                        for obj in decoder.feed(data):
                            frame = decode_frame(obj)
                            receiver.entries.extend((frame.tag, e.time, e.record) for e in frame.entries)
                except (OSError, FrameError):
                    pass
                finally:
                    receiver._connections.discard(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for connection in list(self._connections):
            connection.shutdown(socket.SHUT_RDWR)
            connection.close()


@pytest.fixture(scope="module")
def parser() -> NamedLineParser:
    return NamedLineParser(TimestampNormalizer(UTC))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


def events(parser: NamedLineParser, count: int, first: int = 1000) -> list[Event]:
    parsed = [parser.parse(LINE.format(port=first + i)) for i in range(count)]
    assert all(isinstance(e, Event) for e in parsed)
    return parsed  # type: ignore[return-value]


def output_to(port: int, **settings: object) -> ForwardOutput:
    return ForwardOutput(ForwardOutputConfig("127.0.0.1", port, **settings), to_flat, log)  # type: ignore[arg-type]


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_events_arrive_as_flat_records_with_their_tag_and_time(receiver: Receiver, parser: NamedLineParser):
    output = output_to(receiver.port, tag="named.send_error")
    output(events(parser, 3))
    wait_until(lambda: len(receiver.entries) == 3)
    tag, when, record = receiver.entries[0]
    assert tag == "named.send_error"
    assert when == EventTime(1_795_236_517, 67_000_000)  # 2026-11-21T04:48:37.067Z, as EventTime ext 0
    assert record["client_port"] == 1000 and record["reason"] == "would_block"
    output.close()
    assert output.counters.sent == 3


def test_a_peer_that_went_down_and_came_back_gets_every_event_once(parser: NamedLineParser):
    received: list = []
    first = Receiver(entries=received)
    output = output_to(first.port)
    output(events(parser, 5, first=1000))
    wait_until(lambda: len(received) == 5)
    first.stop()

    output(events(parser, 5, first=2000))  # the peer is gone: they wait
    assert output.pending == 5
    assert output.counters.failed_attempts >= 1

    second = Receiver(port=first.port, entries=received)
    try:
        assert output.flush()
        wait_until(lambda: len(received) == 10)
        assert [r["client_port"] for _, _, r in received] == [*range(1000, 1005), *range(2000, 2005)]
        output.close()
        assert output.counters.sent == 10 and output.counters.lost == 0
    finally:
        second.stop()


def test_fluent_logger_keeps_nothing_of_its_own_after_a_failure(parser: NamedLineParser):
    output = output_to(closed_port())
    output(events(parser, 2))
    assert output._sender.pendings is None  # the events are in our list only, so nothing is sent twice
    assert output.pending == 2
    output.close()


def test_a_full_pending_list_refuses_new_events(parser: NamedLineParser):
    output = output_to(closed_port(), max_pending=3)
    output(events(parser, 2))
    with pytest.raises(OutputFull, match="--max-pending 3"):
        output(events(parser, 2))
    assert output.pending == 2 and output.counters.refused == 2
    output.close()


def test_events_pending_at_close_are_counted_and_logged(parser: NamedLineParser, caplog: pytest.LogCaptureFixture):
    output = output_to(closed_port())
    output(events(parser, 4))
    output.close()
    assert output.counters.lost == 4
    assert "4 events not delivered" in caplog.text


def test_fluent_loggers_overflow_goes_back_to_our_list(receiver: Receiver, parser: NamedLineParser):
    """fluent-logger drops its buffer through buffer_overflow_handler; ours puts the packets back."""
    output = output_to(receiver.port)
    packets = b"".join(msgpack.packb(["t", 1_700_000_000 + i, {"n": i}]) for i in range(3))
    output._sender.buffer_overflow_handler(packets)
    assert output.pending == 3 and output.counters.reclaimed == 3
    assert output.flush()
    wait_until(lambda: len(receiver.entries) == 3)
    assert [r["n"] for _, _, r in receiver.entries] == [0, 1, 2]
    output.close()


def test_serve_forwards_fluent_logger_lines_to_a_fluent_peer(receiver: Receiver, parser: NamedLineParser):
    """fluent-logger -> ForwardServer -> ForwardOutput -> in_forward: the whole --to-forward path."""
    config = ForwardServerConfig(host="127.0.0.1", port=0)
    output = output_to(receiver.port)
    server = ForwardServer(config, RecordParser(parser, config.keys), output, log)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        _, port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(WAIT)
        sender = FluentSender("named", host="127.0.0.1", port=port)
        for i in range(20):
            assert sender.emit("log", {"log": LINE.format(port=i)})
            assert sender.emit("log", {"log": "21-Nov-2026 04:48:37.001 queries: info: client query"})
        sender.close()
        wait_until(lambda: len(receiver.entries) == 20)
        assert [r["client_port"] for _, _, r in receiver.entries] == list(range(20))
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(WAIT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        loop.close()
    assert output.counters.sent == 20
