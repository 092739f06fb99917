"""sinks/forward.py against a small in_forward receiver on loopback, including a peer that goes down and comes back.

The receiver answers ``{"ack": chunk}`` as Fluentd's and Fluent Bit's in_forward do; the sink counts a batch
as stored only on that answer.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import orjson
import pytest
from fluent.sender import FluentSender

from named_senderr.engine.shipping import new_result, run_pipeline
from named_senderr.event import Event
from named_senderr.normalize.timestamp import TimestampNormalizer
from named_senderr.parse.named import NamedLineParser
from named_senderr.protocol.fluent_forward import EventTime, FrameDecoder, FrameError, decode_frame, encode_ack
from named_senderr.queue.driver import DeadLetter, Driver, SinkCounters
from named_senderr.queue.retry import RetryPolicy
from named_senderr.settings.loading import load_ship_config
from named_senderr.settings.ship import RetryConfig
from named_senderr.sinks.forward import ForwardSink
from named_senderr.sources.forward_server import ForwardServerConfig, ForwardSource
from tests.polling import wait_until

WAIT = 10.0
LINE = "21-Nov-2026 04:48:37.067 client @0x7f 192.0.2.1#{port} (example.com): error sending response: would block"
log = logging.getLogger("test.forward_output")


class Receiver:
    """A minimal in_forward: keeps (tag, time, record) of every entry and answers each chunk with ``reply``;
    ``stop`` also drops open connections."""

    def __init__(self, port: int = 0, entries: list | None = None, reply: Callable[[Any], bytes] = encode_ack) -> None:
        self.entries: list[tuple[str, EventTime | None, dict]] = [] if entries is None else entries
        self._connections: set[socket.socket] = set()
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                receiver._connections.add(self.request)
                decoder = FrameDecoder()
                try:
                    while data := self.request.recv(65536):
                        for raw in decoder.feed(data):
                            frame = decode_frame(raw)
                            receiver.entries.extend((frame.tag, e.time, e.record) for e in frame.entries)
                            if raw.chunk is not None:
                                self.request.sendall(reply(raw.chunk))
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


def sink_to(port: int, query: str = "") -> ForwardSink:
    config = load_ship_config(None, [f"forward://127.0.0.1:{port}{query}"], {}).sinks[0]
    return ForwardSink(config, "2026-11-21T00:00:00.000Z")


def items(sink: ForwardSink, batch: list[Event]) -> list[bytes]:
    return [sink.encode(event)[0] for event in batch]


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_events_arrive_as_flat_records_with_their_tag_and_time(receiver: Receiver, parser: NamedLineParser):
    sink = sink_to(receiver.port, "?tag=named.send_error")
    outcome = sink.send(items(sink, events(parser, 3)))
    assert outcome.delivered == 3 and not outcome.retry  # the peer acknowledged the chunk
    assert len(receiver.entries) == 3  # taken before its ack came back
    tag, when, record = receiver.entries[0]
    assert tag == "named.send_error"
    assert when == EventTime(1_795_236_517, 67_000_000)  # 2026-11-21T04:48:37.067Z, as EventTime ext 0
    assert record["client_port"] == 1000 and record["reason"] == "would_block"
    sink.close()


def test_a_peer_that_went_down_and_came_back_gets_every_event_once(parser: NamedLineParser):
    """The driver's retry, with the peer started again during its backoff: each event arrives once, in order."""
    received: list = []
    first = Receiver(entries=received)
    sink = sink_to(first.port)
    counters = SinkCounters()
    restarted: list[Receiver] = []

    def backoff(seconds: float) -> None:  # the driver's sleep: the peer comes back meanwhile
        if not restarted:
            restarted.append(Receiver(port=first.port, entries=received))

    driver = Driver(sink, RetryPolicy(), DeadLetter(Path("unused")), counters, sleep=backoff)
    try:
        driver.deliver(items(sink, events(parser, 5, first=1000)))
        first.stop()
        driver.deliver(items(sink, events(parser, 5, first=2000)))  # the peer is gone: retried until it is back
        assert [r["client_port"] for _, _, r in received] == [*range(1000, 1005), *range(2000, 2005)]
        assert counters.sent == 10 and counters.retried >= 5 and counters.dead_lettered == 0
    finally:
        sink.close()
        for server in restarted:
            server.stop()


def test_a_refused_connection_is_retried_whole_and_the_sink_keeps_nothing(parser: NamedLineParser):
    sink = sink_to(closed_port())
    batch = items(sink, events(parser, 2))
    outcome = sink.send(batch)
    assert outcome.delivered == 0 and outcome.retry == batch and "cannot connect" in (outcome.error or "")
    sink.close()


def test_an_answer_that_is_not_the_chunks_ack_is_not_a_delivery(parser: NamedLineParser):
    wrong = Receiver(reply=lambda chunk: encode_ack("another chunk"))
    sink = sink_to(wrong.port)
    try:
        outcome = sink.send(items(sink, events(parser, 2)))
        assert outcome.delivered == 0 and len(outcome.retry) == 2 and outcome.unanswered
    finally:
        sink.close()
        wrong.stop()


def test_a_batch_given_up_is_dead_lettered_with_its_records(tmp_path: Path, parser: NamedLineParser):
    sink = sink_to(closed_port())
    dead = DeadLetter(tmp_path / "dead.ndjson")
    policy = RetryPolicy.from_config(RetryConfig(max_attempts=1))
    driver = Driver(sink, policy, dead, SinkCounters(), sleep=lambda seconds: None)
    with pytest.raises(Exception, match="gave up after 1 attempt"):
        driver.deliver(items(sink, events(parser, 3)))
    dead.close()
    lines = [orjson.loads(line) for line in (tmp_path / "dead.ndjson").read_bytes().splitlines()]
    assert [line["document"]["client_port"] for line in lines] == [1000, 1001, 1002]
    assert "cannot connect" in lines[0]["reason"]


def test_serve_forwards_fluent_logger_lines_to_a_fluent_peer(receiver: Receiver, tmp_path: Path):
    """fluent-logger -> ForwardSource -> the engine -> ForwardSink -> in_forward: the whole --to-forward path."""
    config = load_ship_config(None, [f"forward://127.0.0.1:{receiver.port}"], {"dead_letter": tmp_path / "dead"})
    result = new_result(config)
    source = ForwardSource(ForwardServerConfig(host="127.0.0.1", port=0), result.stats, log)
    stop = threading.Event()
    thread = threading.Thread(target=run_pipeline, args=([source], config, result, log.warning), kwargs={"stop": stop})
    thread.start()
    try:
        wait_until(lambda: source.address is not None)
        sender = FluentSender("named", host="127.0.0.1", port=source.address[1])
        for i in range(20):
            assert sender.emit("log", {"log": LINE.format(port=i)})
            assert sender.emit("log", {"log": "21-Nov-2026 04:48:37.001 queries: info: client query"})
        sender.close()
        wait_until(lambda: len(receiver.entries) == 20)
        assert [r["client_port"] for _, _, r in receiver.entries] == list(range(20))
    finally:
        stop.set()
        thread.join(WAIT)
    assert result.sinks[f"forward://127.0.0.1:{receiver.port}"].sent == 20
