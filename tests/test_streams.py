"""``tail`` and ``listen`` on the engine: backpressure and drops of the syslog source, options every command has.

The syslog source runs in a real runner against a sink held shut (tests/test_backpressure.py's GatedSink),
on real loopback sockets; the CLI tests run the real command as a process.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from named_senderr.engine.delivery import SinkLanes
from named_senderr.engine.runner import Runner
from named_senderr.event import ingest_now
from named_senderr.lines import Batch
from named_senderr.queue.driver import DeadLetter
from named_senderr.queue.retry import RetryPolicy
from named_senderr.settings.ship import BatchConfig
from named_senderr.sinks.outcome import Outcome
from named_senderr.sources.file_tail import TailConfig
from named_senderr.sources.follow import FollowSource
from named_senderr.sources.syslog import SyslogConfig, SyslogEndpoint
from named_senderr.sources.syslog_source import SyslogSource
from named_senderr.telemetry import Stats
from tests.polling import wait_until
from tests.test_backpressure import GatedSink
from tests.test_engine import parse_lines
from tests.test_metrics import scrape
from tests.test_tail_cli import DEADLINE, LINE, Process, checkpointed

MESSAGE = "<28>Oct 21 10:22:33 ns1 named[1234]: client 192.0.2.27#{port}: error sending response: unset"
BARE = "client @0x7f04 192.0.2.7#{port} (a.example): error sending response: would block\n"  # no time of its own


class SayingGatedSink(GatedSink):
    """GatedSink that says when a batch reached it, so a test knows the batch left the sink's queue."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__(gate)
        self.sending = threading.Event()

    def send(self, items: list) -> Outcome:
        self.sending.set()
        return super().send(items)


def holds_for(predicate: Callable[[], bool], seconds: float) -> None:
    """Bounded: fail as soon as ``predicate`` turns false within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate()
        time.sleep(0.01)


@dataclass
class Listening:
    """A syslog source in a runner whose one sink takes nothing until ``gate`` opens."""

    source: SyslogSource
    sink: SayingGatedSink
    gate: threading.Event
    ports: dict[str, int]


@pytest.fixture
def held_back(tmp_path: Path) -> Iterator[Listening]:
    """One event per sink batch, one batch sending and one waiting: the third finds the pipeline full."""
    gate, ready = threading.Event(), queue.Queue()
    endpoints = (SyslogEndpoint("udp", "127.0.0.1", 0), SyslogEndpoint("tcp", "127.0.0.1", 0))
    warnings: list[str] = []
    source = SyslogSource(SyslogConfig(endpoints), Stats(), warnings.append, ready.put)
    sink = SayingGatedSink(gate)
    lanes = SinkLanes([sink], RetryPolicy(), DeadLetter(tmp_path / "dead"), BatchConfig(max_events=1), {})
    stop = threading.Event()
    runner = Runner([source], parse_lines(source.stats), [], lanes, stop)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    ports = {url.split(":")[0]: int(url.rsplit(":", 1)[1]) for url in ready.get(timeout=DEADLINE)}
    yield Listening(source, sink, gate, ports)
    gate.set()
    stop.set()
    thread.join(DEADLINE)
    assert not thread.is_alive()


def test_listen_counts_as_dropped_the_udp_batches_a_full_pipeline_refuses(held_back: Listening) -> None:
    syslog = held_back.source.syslog
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for n in range(5):  # one at a time: each its own batch
            udp.sendto(MESSAGE.format(port=40000 + n).encode(), ("127.0.0.1", held_back.ports["udp"]))
            wait_until(lambda n=n: syslog.messages == n + 1)
            wait_until(held_back.sink.sending.is_set)
    assert syslog.dropped == 3  # the first is being sent, the second waits: no room for the rest
    held_back.gate.set()
    wait_until(lambda: len(held_back.sink.items) == 2)
    assert held_back.source.stats.events == 2 and syslog.messages == 5


def test_listen_holds_a_tcp_sender_back_while_the_pipeline_is_full_and_drops_nothing(held_back: Listening) -> None:
    syslog = held_back.source.syslog
    with socket.create_connection(("127.0.0.1", held_back.ports["tcp"]), timeout=DEADLINE) as tcp:
        for n in range(3):  # the third finds no room and waits, inside the event loop
            tcp.sendall(MESSAGE.format(port=40000 + n).encode() + b"\n")
            wait_until(lambda n=n: syslog.messages == n + 1)
            wait_until(held_back.sink.sending.is_set)
        tcp.sendall(b"".join(MESSAGE.format(port=40010 + n).encode() + b"\n" for n in range(2)))
        holds_for(lambda: syslog.messages == 3, 0.5)  # so what the sender sends next is not even read
        held_back.gate.set()
        wait_until(lambda: len(held_back.sink.items) == 5)
    assert syslog.dropped == 0 and syslog.messages == 5


def listen(*args: str) -> tuple[Process, dict[str, str]]:
    """``listen`` started with ``args``; the URLs it said it serves, by scheme (udp, tcp, http)."""
    process = Process("listen", *args)
    urls: dict[str, str] = {}
    while not {"udp", "tcp"} & urls.keys():
        line = process.stderr.get(timeout=DEADLINE).decode()
        urls.update(re.findall(r"(udp|tcp|http)(://127\.0\.0\.1:\d+)", line))
    return process, {scheme: f"{scheme}{rest}" for scheme, rest in urls.items()}


def port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_listen_serves_its_syslog_counters_on_metrics_and_healthz() -> None:
    listener, urls = listen("--syslog", "udp://127.0.0.1:0", "--metrics", "127.0.0.1:0", "--format", "flat")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(MESSAGE.format(port=40001).encode(), ("127.0.0.1", port(urls["udp"])))
        listener.events(1)
        samples = scrape(urls["http"])
        assert samples["named_senderr_syslog_messages_total"] == 1 and samples["named_senderr_events_parsed_total"] == 1
        assert samples["named_senderr_syslog_dropped_total"] == 0
        assert httpx.get(f"{urls['http']}/healthz").text == "ok\n"
    finally:
        assert listener.stop() == 0


def test_listen_summary_counts_its_endpoints_as_inputs() -> None:
    """Was "from 0 input(s)" before the engine: the listener counted none."""
    listener, _ = listen("--syslog", "udp://127.0.0.1:0", "--syslog", "tcp://127.0.0.1:0", "--stats")
    assert listener.stop() == 0
    summary = b"".join(iter(lambda: listener.stderr.get(timeout=DEADLINE), b"  events              0\n"))
    assert b"from 2 syslog endpoint(s)" in summary


def test_tail_summary_counts_every_file_it_followed_across_a_rotation(tmp_path: Path) -> None:
    """Was "1 input(s)" before the engine: the number of globs, whatever was read."""
    log = tmp_path / "named.log"
    log.write_text(LINE.format(port=1000))
    tail = Process("tail", str(tmp_path / "named.log*"), "--read-from-head", "--poll-interval", "0.05", "--stats")
    tail.events(1)
    log.rename(tmp_path / "named.log.1")
    log.write_text(LINE.format(port=1001))
    tail.events(1)
    assert tail.stop() == 0
    first = tail.stderr.get(timeout=DEADLINE).decode()
    assert "from 2 file(s) followed through 1 glob(s)" in first, first


def test_tail_applies_the_privacy_options_before_printing(tmp_path: Path) -> None:
    log = tmp_path / "named.log"
    log.write_text(LINE.format(port=1000))
    tail = Process("tail", str(log), "--read-from-head", "--poll-interval", "0.05", "--format", "flat",
                   "--client-ip", "truncate:/24,/56", "--qname", "drop")  # fmt: skip
    [event] = tail.events(1)
    assert tail.stop() == 0
    assert (event["client_ip"], event.get("qname")) == ("192.0.2.0", None)


def test_tail_rollup_prints_one_event_per_window_the_last_one_when_stopped(tmp_path: Path) -> None:
    log = tmp_path / "named.log"
    log.write_text("".join(LINE.format(port=1000 + n) for n in range(5)))
    tail = Process("tail", str(log), "--read-from-head", "--poll-interval", "0.05", "--format", "flat",
                   "--rollup", "3600s", "--metrics", "127.0.0.1:0")  # fmt: skip
    metrics = re.findall(r"http://127\.0\.0\.1:\d+", tail.stderr.get(timeout=DEADLINE).decode())[0]
    wait_until(lambda: scrape(metrics)["named_senderr_events_parsed_total"] == 5)
    assert tail.stdout.empty()  # held in the window
    assert tail.stop(signal.SIGINT) == 0
    [event] = tail.events(1)
    assert event["repeat_count"] == 5 and tail.stdout.empty()


def test_tail_writes_a_rejected_line_to_rejects_as_it_comes(tmp_path: Path) -> None:
    """A follower runs until killed: a rejected line waiting in a buffer would be lost with it."""
    log, rejects = tmp_path / "named.log", tmp_path / "rejects.ndjson"
    log.write_text(LINE.format(port=99999))  # a candidate, rejected: no such port
    tail = Process("tail", str(log), "--read-from-head", "--poll-interval", "0.05", "--rejects", str(rejects))
    try:
        wait_until(lambda: rejects.exists() and b'"invalid_port"' in rejects.read_bytes())
    finally:
        assert tail.stop(signal.SIGKILL) == -signal.SIGKILL


def test_follow_hands_a_poll_on_in_parts_and_moves_the_checkpoint_past_each(tmp_path: Path) -> None:
    """What ``tail`` prints in parts of PRINT_EVERY lines: a kill -9 repeats one part, not a whole poll."""
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    log.write_text("".join(LINE.format(port=1000 + n) for n in range(5)))
    size = len(LINE.format(port=1000))
    stop, seen = threading.Event(), []

    def emit(batch: Batch, *, wait: bool = True) -> bool:
        seen.append((len(batch.lines), checkpointed(checkpoint)))  # where the parts before this one left it
        batch.ack()
        if len(seen) == 3:
            stop.set()
        return True

    source = FollowSource(TailConfig((str(log),), checkpoint, read_from_head=True), Stats(), print, batch_lines=2)
    source.run(emit, stop)
    source.close()
    assert seen == [(2, 0), (2, 2 * size), (1, 4 * size)] and checkpointed(checkpoint) == 5 * size


def test_listen_delivers_the_datagrams_buffered_at_sigterm_and_drops_none() -> None:
    """Was: what the kernel held when the signal came was read, then refused as "arrived while stopping"."""
    listener, urls = listen("--syslog", "udp://127.0.0.1:0", "--format", "flat", "--stats")
    count = 2000
    os.kill(listener.proc.pid, signal.SIGSTOP)  # nothing is read: every datagram waits in the kernel's buffer
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for n in range(count):
                udp.sendto(MESSAGE.format(port=1000 + n).encode(), ("127.0.0.1", port(urls["udp"])))
        listener.proc.send_signal(signal.SIGTERM)  # pending: it is the first thing the listener sees
    finally:
        os.kill(listener.proc.pid, signal.SIGCONT)
    assert listener.proc.wait(timeout=DEADLINE) == 0
    while b"  syslog  " not in (summary := listener.stderr.get(timeout=DEADLINE)):
        pass  # bounded: the process ended, its stderr is finite
    syslog = re.search(rb"([\d,]+) messages, ([\d,]+) dropped .* ([\d,]+) UDP datagrams dropped", summary)
    assert syslog is not None and syslog.groups() == (b"2,000", b"0", b"0"), summary
    wait_until(lambda: listener.stdout.qsize() >= count)


def test_tail_stamps_a_line_without_a_time_with_when_it_was_read_not_when_tail_started(tmp_path: Path) -> None:
    """Was: the ingest time of every such line was the start of the run, however long ago that was."""
    log = tmp_path / "named.log"
    log.write_text(BARE.format(port=1000))
    tail = Process("tail", str(log), "--read-from-head", "--poll-interval", "0.05")
    try:
        [first] = tail.events(1)
        later = datetime.fromisoformat(first["@timestamp"]) + timedelta(seconds=1.1)
        wait_until(lambda: datetime.now(UTC) > later)  # a gap any millisecond clock shows
        appended = ingest_now()
        with log.open("a") as stream:
            stream.write(BARE.format(port=1001))
        [second] = tail.events(1)
    finally:
        assert tail.stop() == 0
    assert second["bind"]["timestamp_valid"] is False and second["@timestamp"] >= appended > first["@timestamp"]
