"""``named-senderr serve`` as a process: listening address on stderr, events on stdout, clean stop on SIGTERM."""

from __future__ import annotations

import collections
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import pytest
from fluent.sender import FluentSender

from named_senderr.protocol.fluent_forward import encode_ack
from tests import test_fluent_forward_wire as w
from tests.polling import wait_until
from tests.test_forward_output import Receiver
from tests.test_metrics import scrape as scrape_metrics
from tests.test_ship_servers import count

SAMPLE = Path(__file__).resolve().parent.parent / "plugin" / "named_senderr" / "samples" / "named.log"
LINE = "21-Nov-2026 04:48:37.067 client @0x7f 192.0.2.1#53 (example.com): error sending response: would block"
WAIT = 15.0


class Serve:
    """``serve --forward 127.0.0.1:0``; threads collect stdout lines and stderr text."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, read_stdout: bool = True) -> None:
        command = [sys.executable, "-m", "named_senderr", "serve", "--forward", "127.0.0.1:0", *args]
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
        )
        self.lines: list[dict] = []
        self.stderr = ""
        self.reader = threading.Thread(target=self._stdout, daemon=True)  # unstarted: stdout fills its pipe
        if read_stdout:
            self.reader.start()
        threading.Thread(target=self._stderr, daemon=True).start()
        wait_until(lambda: "listening" in self.stderr or self.proc.poll() is not None)
        found = re.search(r"on 127\.0\.0\.1:(\d+)", self.stderr)
        assert found, self.stderr
        self.port = int(found.group(1))

    def _stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def _stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr += line.decode()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=WAIT)


@pytest.fixture
def serve() -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(*args: str, env: dict[str, str] | None = None, read_stdout: bool = True) -> Serve:
        started.append(Serve(*args, env=env, read_stdout=read_stdout))
        return started[-1]

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(timeout=WAIT)


def test_events_go_to_stdout_as_ndjson_and_sigterm_stops_cleanly(serve):
    server = serve("--format", "flat")
    sender = FluentSender("named", host="127.0.0.1", port=server.port)
    for line in SAMPLE.read_text().splitlines():
        assert sender.emit("log", {"log": line})
    sender.close()
    wait_until(lambda: len(server.lines) == 39)
    assert server.stop() == 0
    assert re.search(r"stopped: connections 1, .*frames \d+, entries \d+, events 39,", server.stderr)
    assert {line["reason"] for line in server.lines} >= {"would_block"}


def test_stdout_defaults_to_ecs(serve):
    server = serve()
    sender = FluentSender("named", host="127.0.0.1", port=server.port)
    assert sender.emit("log", {"message": LINE})
    sender.close()
    wait_until(lambda: server.lines)
    assert server.lines[0]["event"]["dataset"] == "bind.send_error"
    assert server.stop() == 0


def test_shared_key_from_the_environment_turns_on_the_handshake(serve):
    server = serve(env={"NAMED_SENDERR_SHARED_KEY": "k"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        unpacker = msgpack.Unpacker(raw=True)
        while not (objects := list(unpacker)):
            unpacker.feed(sock.recv(4096))
        assert objects[0][0] == b"HELO"
    assert server.stop() == 0


def test_to_forward_sends_events_to_a_fluent_peer(serve):
    receiver = Receiver()
    try:
        server = serve("--to-forward", f"127.0.0.1:{receiver.port}", "--tag", "dns.send_error")
        sender = FluentSender("named", host="127.0.0.1", port=server.port)
        for line in SAMPLE.read_text().splitlines():
            assert sender.emit("log", {"log": line})
        sender.close()
        wait_until(lambda: len(receiver.entries) == 39)
        assert {tag for tag, _, _ in receiver.entries} == {"dns.send_error"}
        assert server.stop() == 0
        assert server.lines == []  # stdout stays empty: the events went to the peer
    finally:
        receiver.stop()


def test_a_bad_address_is_a_usage_error():
    result = subprocess.run(
        [sys.executable, "-m", "named_senderr", "serve", "--forward", "nonsense"], capture_output=True, timeout=WAIT
    )
    assert result.returncode == 2
    assert b"is not HOST:PORT" in result.stderr


def test_to_url_hands_events_to_the_ship_sinks(serve):
    """``--to stdout:?format=flat`` goes through ship's sink, batcher and workers, not the default NDJSON writer."""
    server = serve("--to", "stdout:?format=flat")
    sender = FluentSender("named", host="127.0.0.1", port=server.port)
    for line in SAMPLE.read_text().splitlines():
        assert sender.emit("log", {"log": line})
    sender.close()
    wait_until(lambda: len(server.lines) == 39)  # ship's batch.max_wait (1 s) sends them without a restart
    assert server.stop() == 0
    assert "stdout: sent 39" in server.stderr
    assert "client_port" in server.lines[0] and "event" not in server.lines[0]


def test_the_same_line_at_two_times_is_two_documents_and_a_resent_chunk_adds_none(serve, elasticsearch_url, tmp_path):
    """A line whose time the sender split off (Fluent Bit's syslog or a parser) is told apart by its EventTime;
    the same line twice at the same time is one event, as nothing tells it from a resend."""
    index = f"named-senderr-ids-{uuid.uuid4().hex[:8]}"
    server = serve("--to", f"elasticsearch+{elasticsearch_url}/{index}", "--dead-letter", str(tmp_path / "dead"))
    bare = LINE.split(" ", 2)[2]  # the line without named's own time
    times = [w.event_time(1_700_000_000, 0), w.event_time(1_700_000_001, 0), w.event_time(1_700_000_000, 0)]
    frame = w.forward("t", [w.array(time, w.record(log=bare)) for time in times], w.chunk_option("c1"))
    for _ in range(2):  # the second time as a sender whose ack was lost resends the chunk
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sock.sendall(frame)
            unpacker = msgpack.Unpacker(raw=False)
            while not (answers := list(unpacker)):
                unpacker.feed(sock.recv(4096))
        assert answers == [{"ack": "c1"}]
    assert server.stop() == 0  # SIGTERM: the sink delivers what it holds before the exit
    assert count(elasticsearch_url, index) == 2
    assert "sent 2, already stored 4" in server.stderr


def test_to_and_to_forward_together_is_a_usage_error():
    command = [sys.executable, "-m", "named_senderr", "serve", "--to", "stdout:", "--to-forward", "127.0.0.1:1"]
    result = subprocess.run(command, capture_output=True, timeout=WAIT)
    assert result.returncode == 2
    assert b"choose one output" in result.stderr


def test_when_full_drop_is_a_usage_error_as_a_full_queue_withholds_the_ack():
    command = [sys.executable, "-m", "named_senderr", "serve", "--queue-dir", "q", "--when-full", "drop"]
    result = subprocess.run(command, capture_output=True, timeout=WAIT)
    assert result.returncode == 2
    assert b"--when-full drop does not apply to serve" in result.stderr


def test_metrics_endpoint_counts_what_the_receiver_took(serve):
    server = serve("--format", "flat", "--metrics", "127.0.0.1:0")
    url = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", server.stderr).group(1)
    sender = FluentSender("named", host="127.0.0.1", port=server.port)
    for line in SAMPLE.read_text().splitlines():
        assert sender.emit("log", {"log": line})
    sender.close()

    def scrape() -> str:
        with urllib.request.urlopen(f"{url}/metrics", timeout=WAIT) as answer:
            return answer.read().decode()

    wait_until(lambda: "named_senderr_forward_not_send_errors_total 361" in scrape())  # every line handed off
    assert "named_senderr_forward_events_total 39" in scrape()
    wait_until(lambda: len(server.lines) == 39)
    with urllib.request.urlopen(f"{url}/healthz", timeout=WAIT) as answer:
        assert answer.read() == b"ok\n"
    assert server.stop() == 0


def test_with_a_queue_dir_an_acknowledged_chunk_survives_a_crash_while_the_store_is_down(serve, tmp_path):
    queue = tmp_path / "queue"
    down = serve("--to", "elasticsearch+http://127.0.0.1:1/idx", "--queue-dir", str(queue))  # nothing listens on :1
    with socket.create_connection(("127.0.0.1", down.port), timeout=WAIT) as sock:
        sock.sendall(w.message("t", w.event_time(1_700_000_000, 0), w.record(log=LINE), w.chunk_option("c1")))
        unpacker = msgpack.Unpacker(raw=False)
        while not (answers := list(unpacker)):
            unpacker.feed(sock.recv(4096))
    assert answers == [{"ack": "c1"}]  # acknowledged: the event is on disk, though no store took it
    down.proc.kill()  # kill -9: no drain, no goodbye
    down.proc.wait(timeout=WAIT)
    up = serve("--to", "stdout:?format=flat", "--queue-dir", str(queue))
    wait_until(lambda: len(up.lines) == 1)
    assert up.lines[0]["client_ip"] == "192.0.2.1"
    assert up.stop() == 0


def test_run_config_with_a_forward_source_acknowledges_what_its_sink_printed(tmp_path: Path):
    """``[sources.NAME] type = "forward"``: the same receiver as serve, in any pipeline file."""
    (tmp_path / "pipeline.toml").write_text("""timezone = "UTC"
[sources.fluent]
type = "forward"
port = 0
[sinks.out]
url = "stdout:?format=flat"
inputs = ["fluent"]
""")
    command = [sys.executable, "-m", "named_senderr", "run", "--config", str(tmp_path / "pipeline.toml")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        listening = proc.stderr.readline().decode()
        found = re.search(r"listening for Forward frames on 127\.0\.0\.1:(\d+)", listening)
        assert found, listening
        with socket.create_connection(("127.0.0.1", int(found.group(1))), timeout=WAIT) as sock:
            sock.sendall(w.message("t", w.event_time(1_700_000_000, 0), w.record(log=LINE), w.chunk_option("r1")))
            unpacker = msgpack.Unpacker(raw=False)
            while not (answers := list(unpacker)):
                unpacker.feed(sock.recv(4096))
        assert answers == [{"ack": "r1"}]  # once the stdout sink wrote the event
        assert json.loads(proc.stdout.readline())["client_ip"] == "192.0.2.1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT) == 0
        assert re.search(rb"stdout:\s+sent 1 ", proc.stderr.read())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)


def test_to_forward_acknowledges_a_chunk_only_once_the_peer_acknowledged_it(serve):
    gate = threading.Event()
    receiver = Receiver(reply=lambda chunk: encode_ack(chunk) if gate.wait(WAIT) else b"")
    try:
        server = serve("--to-forward", f"127.0.0.1:{receiver.port}")
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sock.sendall(w.message("t", w.event_time(1_700_000_000, 0), w.record(log=LINE), w.chunk_option("p1")))
            wait_until(lambda: len(receiver.entries) == 1)  # the peer has the event, and has not answered
            sock.settimeout(1.5)
            with pytest.raises(TimeoutError):
                sock.recv(64)
            gate.set()
            sock.settimeout(WAIT)
            assert msgpack.unpackb(sock.recv(64)) == {"ack": "p1"}
        assert server.stop() == 0
    finally:
        gate.set()
        receiver.stop()


def test_privacy_options_apply_to_what_serve_prints(serve):
    server = serve("--format", "flat", "--client-ip", "truncate:/24,/56", "--qname", "drop")
    sender = FluentSender("named", host="127.0.0.1", port=server.port)
    assert sender.emit("log", {"log": LINE})
    sender.close()
    wait_until(lambda: server.lines)
    assert server.lines[0]["client_ip"] == "192.0.2.0" and server.lines[0].get("qname") is None
    assert server.stop() == 0


class Resender:
    """Sends every chunk asking for an ack, and again on a new connection whenever one closes unacknowledged:
    what Fluentd's out_forward does with require_ack_response (one connection per chunk in flight)."""

    def __init__(self, port: int, chunks: dict[str, bytes], deadline: float = 60.0) -> None:
        self.port, self.chunks, self.deadline = port, chunks, deadline
        self.acked: set[str] = set()
        self.resent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        due = {chunk: 0.0 for chunk in self.chunks}  # chunk -> when to (re)send it
        selector = selectors.DefaultSelector()
        end = time.monotonic() + self.deadline  # bounded
        while len(self.acked) < len(self.chunks) and time.monotonic() < end:
            for chunk, at in list(due.items()):
                if at <= time.monotonic():
                    del due[chunk]
                    self._send(selector, chunk, due)
            for key, _ in selector.select(timeout=0.05):
                chunk, unpacker = key.data
                try:
                    data = key.fileobj.recv(4096)
                except ConnectionError:
                    data = b""
                unpacker.feed(data)
                if {"ack": chunk} in list(unpacker):
                    self.acked.add(chunk)
                elif data:
                    continue
                else:  # closed without an ack: refused, send it again a little later
                    self.resent += 1
                    due[chunk] = time.monotonic() + 0.1
                selector.unregister(key.fileobj)
                key.fileobj.close()

    def _send(self, selector: selectors.BaseSelector, chunk: str, due: dict[str, float]) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
            sock.sendall(self.chunks[chunk])
        except OSError:
            due[chunk] = time.monotonic() + 0.1
            return
        selector.register(sock, selectors.EVENT_READ, (chunk, msgpack.Unpacker(raw=False)))


def rollup_chunks(count: int, lines: int, networks: int) -> dict[str, bytes]:
    """Forward-mode chunks two seconds of log time apart, each closing the windows of the one before."""
    chunks = {}
    for n in range(count):
        second = 2 * n
        stamp = f"21-Nov-2026 04:{second // 60:02d}:{second % 60:02d}.067"
        entries = [[1_700_000_000, {"log": f"{stamp} client @0x7f 10.{n}.{k % networks}.{k}#53 (example.com): "
                                           "error sending response: would block"}] for k in range(lines)]  # fmt: skip
        chunks[f"c{n}"] = msgpack.packb(["named", entries, {"chunk": f"c{n}"}])
    return chunks


def test_rollup_counts_a_chunk_refused_by_a_full_queue_and_sent_again_once(serve, tmp_path):
    """Was: the rollup had counted the refused chunk's events (and let go of the windows the refused append
    held), so the sent-again chunk was counted twice and those windows were lost."""
    server = serve("--queue-dir", str(tmp_path / "queue"), "--queue-max-bytes", str(64 * 1024), "--rollup", "1s",
                   "--timezone", "UTC", "--format", "flat", "--metrics", "127.0.0.1:0", read_stdout=False)  # fmt: skip
    url = re.search(r"metrics on (http://\S+)/metrics", server.stderr).group(1)
    chunks = rollup_chunks(count=24, lines=60, networks=30)
    sender = Resender(server.port, chunks)
    refused = "named_senderr_source_refused_total"
    # Nobody reads stdout: its pipe fills, the queue behind it fills, and chunks are refused.
    wait_until(lambda: sum(v for k, v in scrape_metrics(url).items() if k.startswith(refused)) >= 3, 30)
    server.reader.start()
    sender.thread.join(90)
    assert sender.acked == set(chunks) and sender.resent >= 3
    assert server.stop() == 0
    server.reader.join(WAIT)
    per_network = collections.Counter()
    for line in server.lines:
        assert line["first_seen"], line  # every one a rolled-up event
        per_network[line["client_ip"]] += line["repeat_count"]
    # Each chunk's two lines per network counted once: neither twice (sent again) nor lost (a window let go).
    assert per_network == {f"10.{n}.{k}.0": 2 for n in range(24) for k in range(30)}


def test_sigterm_during_an_outage_without_a_queue_ends_in_time_and_leaves_the_chunk_unacknowledged(serve):
    """Was: the sink's retries ran their course (minutes) before serve stopped, whatever --shutdown-timeout said."""
    down = "elasticsearch+http://127.0.0.1:1/idx"  # nothing listens on :1
    server = serve("--to", down, "--shutdown-timeout", "1", "--metrics", "127.0.0.1:0")
    url = re.search(r"metrics on (http://\S+)/metrics", server.stderr).group(1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(w.message("t", w.event_time(1_700_000_000, 0), w.record(log=LINE), w.chunk_option("c1")))
        wait_until(lambda: scrape_metrics(url).get(f'named_senderr_events_retried_total{{sink="{down}"}}', 0) >= 1)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=WAIT) == 0
        assert time.monotonic() - signalled < 1 + 5  # the timeout, and the time to close
        sock.settimeout(WAIT)
        assert sock.recv(4096) == b""  # closed without an ack: the sender keeps the chunk
    wait_until(lambda: "not delivered" in server.stderr)
    assert f"{down} sent 0," in server.stderr
    assert f"1 event(s) not delivered to {down}: the shutdown timeout ended its retries" in server.stderr
