"""``serve`` on the engine into the real Elasticsearch: when a chunk is acknowledged, rollup, and the faults.

The faults are those ``ship`` is tested under (tests/test_durability.py): kill -9 with a queue, a store outage,
a 429 storm with partial bulk failures (the fault-injecting proxy of tests/faults.py in front of the real
server), SIGTERM.

Real ``serve`` processes, real Forward frames on loopback, counts taken in the store. Until serve ran on the
engine, ``serve --to URL`` without ``--queue-dir`` acknowledged a chunk as soon as its events were batched in
memory: a crash then lost acknowledged events. Now a chunk is acknowledged only once they are durably held.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

import msgpack
import pytest

from tests.faults import FaultServer, holding_bulk
from tests.polling import wait_until
from tests.test_durability import es_count, poll, storm, unacked_segments
from tests.test_forward_serve_cli import Serve
from tests.test_queue_faults import ENTRIES, frame, send
from tests.test_ship_servers import new_index, search
from tests.test_streams_servers import delivery_args, index_of, store_behind_proxy

pytestmark = pytest.mark.servers
STORED = 120.0  # seconds for the store to hold what was acknowledged
NO_ACK = 3.0  # seconds an ack must not come while the store holds the events back


def read_ack(sock: socket.socket, timeout: float) -> object:
    """The first answer on ``sock`` within ``timeout`` seconds; TimeoutError when none came."""
    sock.settimeout(timeout)
    unpacker = msgpack.Unpacker(raw=False)
    while data := sock.recv(4096):
        unpacker.feed(data)
        for answer in unpacker:
            return answer
    raise ConnectionError("closed without an answer")


def test_without_a_queue_a_chunk_is_acknowledged_only_once_elasticsearch_stored_its_events(
    elasticsearch_url: str, tmp_path: Path, serve: list[Serve]
) -> None:
    index = new_index("elasticsearch", elasticsearch_url, tmp_path).rsplit("/", 1)[1]
    gate = threading.Event()

    with FaultServer(holding_bulk(gate, elasticsearch_url, 60)) as proxy:
        serve.append(Serve("--to", f"elasticsearch+{proxy.url}/{index}", "--dead-letter", str(tmp_path / "dead")))
        with socket.create_connection(("127.0.0.1", serve[0].port), timeout=60) as sock:
            sock.sendall(frame("held", "192.0.2", 0))
            with pytest.raises(TimeoutError):
                read_ack(sock, NO_ACK)  # the events are batched and sent, but the store has not taken them
            assert es_count(elasticsearch_url, index) == 0
            gate.set()
            assert read_ack(sock, STORED) == {"ack": "held"}
            assert es_count(elasticsearch_url, index) == ENTRIES  # stored before the ack was written
        assert serve[0].stop() == 0


def test_rollup_into_elasticsearch_stores_exact_counts_and_acks_once_the_windows_left(
    elasticsearch_url: str, tmp_path: Path, serve: list[Serve]
) -> None:
    """Three chunks from two /24 networks in one minute: two documents, and every chunk acknowledged at the end."""
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    index = url.rsplit("/", 1)[1]
    serve.append(Serve("--to", url, "--rollup", "60s", "--dead-letter", str(tmp_path / "dead")))
    chunks = [("a", "192.0.2", 0), ("b", "198.51.100", 1), ("c", "192.0.2", 2)]
    socks = [socket.create_connection(("127.0.0.1", serve[0].port), timeout=60) for _ in chunks]
    with contextlib.ExitStack() as stack:
        for sock in socks:
            stack.enter_context(sock)
        for sock, (chunk, network, number) in zip(socks, chunks, strict=True):
            sock.sendall(frame(chunk, network, number))
        with pytest.raises(TimeoutError):
            read_ack(socks[0], NO_ACK)  # the window holds the events: nothing has left, nothing is acknowledged
        assert es_count(elasticsearch_url, index) == 0
        serve[0].proc.send_signal(15)  # SIGTERM: the windows close, the sink delivers, then the acks go out
        answers = [read_ack(sock, STORED) for sock in socks]
    assert serve[0].proc.wait(timeout=60) == 0
    assert answers == [{"ack": chunk} for chunk, _, _ in chunks]
    docs = [hit["_source"] for hit in search(elasticsearch_url, index, {"size": 100})["hits"]["hits"]]
    stored = sorted((d["client"]["ip"], d["event"]["reason"], d["bind"]["rollup"]["count"]) for d in docs)
    assert stored == [("192.0.2.0", "would_block", 2 * ENTRIES), ("198.51.100.0", "would_block", ENTRIES)]


def per_qname(base: str, index: str) -> dict[str, int]:
    body = {"size": 0, "aggs": {"q": {"terms": {"field": "dns.question.name", "size": 10_000}}}}
    buckets = search(base, index, body)["aggregations"]["q"]["buckets"]
    return {bucket["key"]: bucket["doc_count"] for bucket in buckets}


def test_kill_9_with_a_queue_dir_then_restart_stores_every_acknowledged_entry_once(
    elasticsearch_url: str, tmp_path: Path, serve: list[Serve]
) -> None:
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    index = url.rsplit("/", 1)[1]
    queue = str(tmp_path / "queue")
    serve.append(Serve("--to", url, "--queue-dir", queue, "--dead-letter", str(tmp_path / "dead")))
    port, acked, sent = serve[0].port, [], []
    halt = threading.Event()

    def sender() -> None:  # chunks one after the other until serve dies (or 400 were sent)
        for number in range(400):
            if halt.is_set():
                return
            sent.append(number)
            try:
                if send(port, frame(f"k{number}", "192.0.2", number), f"k{number}"):
                    acked.append(number)
            except OSError:
                return

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    poll(lambda: es_count(elasticsearch_url, index), lambda n: n > 0, STORED, interval=0.05)
    serve[0].proc.kill()  # kill -9: no flush, no cursor saved at exit
    serve[0].proc.wait(timeout=30)
    halt.set()
    thread.join(60)
    at_kill = es_count(elasticsearch_url, index)
    assert acked and at_kill < len(acked) * ENTRIES, "the kill must land while acknowledged chunks wait in the queue"
    serve.append(Serve("--to", url, "--queue-dir", queue, "--dead-letter", str(tmp_path / "dead")))
    want = len(acked) * ENTRIES
    poll(lambda: es_count(elasticsearch_url, index), lambda n: n >= want, STORED, interval=0.5)
    assert serve[1].stop() == 0
    counts = per_qname(elasticsearch_url, index)
    print(f"kill -9 after {len(acked)} acknowledged chunks, {at_kill:,} of their {want:,} entries stored then")
    assert all(counts.get(f"f{number}.example") == ENTRIES for number in acked)  # each acked entry once
    assert sum(counts.values()) <= len(sent) * ENTRIES  # an unacknowledged chunk at most once too


def test_a_store_outage_with_a_queue_dir_acknowledges_from_the_queue_and_stores_every_chunk_once_after(
    elasticsearch_url: str, tmp_path: Path, serve: list[Serve]
) -> None:
    chunks = 3
    with store_behind_proxy(elasticsearch_url, tmp_path) as (proxy, down, url):
        serve.append(Serve("--queue-dir", str(tmp_path / "queue"), *delivery_args(tmp_path, url)))
        assert all(send(serve[0].port, frame(f"o{n}", "192.0.2", n), f"o{n}") for n in range(chunks))
        wait_until(lambda: len(proxy.requests) >= 3, STORED)  # the sink is retrying against the outage
        assert es_count(elasticsearch_url, index_of(url)) == 0
        down["now"] = False
        wait_until(lambda: es_count(elasticsearch_url, index_of(url)) >= chunks * ENTRIES, STORED)
        assert serve[0].stop() == 0
    assert per_qname(elasticsearch_url, index_of(url)) == {f"f{n}.example": ENTRIES for n in range(chunks)}
    assert unacked_segments(tmp_path / "queue") == []


def test_a_429_storm_and_partial_bulk_failures_lose_no_acknowledged_entry_and_store_none_twice(
    elasticsearch_url: str, tmp_path: Path, serve: list[Serve]
) -> None:
    chunks, refused = 3, []
    index = index_of(new_index("elasticsearch", elasticsearch_url, tmp_path))
    with FaultServer(storm(elasticsearch_url, index, refused)) as proxy:
        serve.append(Serve(*delivery_args(tmp_path, f"elasticsearch+{proxy.url}/{index}")))
        assert all(send(serve[0].port, frame(f"s{n}", "192.0.2", n), f"s{n}") for n in range(chunks))
        assert serve[0].stop() == 0
    assert per_qname(elasticsearch_url, index) == {f"f{n}.example": ENTRIES for n in range(chunks)}
    summary = f"already stored 0, retried {sum(refused)}, dead-lettered 0"
    wait_until(lambda: "retried" in serve[0].stderr)  # the summary, read by its own thread
    assert sum(refused) > 0 and summary in serve[0].stderr, serve[0].stderr


def test_sigterm_with_a_queue_dir_keeps_the_acknowledged_chunks_the_store_did_not_take_for_the_next_start(
    elasticsearch_url: str, tmp_path: Path, serve: list[Serve]
) -> None:
    chunks, queue = 3, str(tmp_path / "queue")
    with store_behind_proxy(elasticsearch_url, tmp_path) as (proxy, down, url):
        args = ("--queue-dir", queue, "--shutdown-timeout", "1", *delivery_args(tmp_path, url))
        serve.append(Serve(*args))
        assert all(send(serve[0].port, frame(f"t{n}", "192.0.2", n), f"t{n}") for n in range(chunks))
        wait_until(lambda: len(proxy.requests) >= 3, STORED)
        assert serve[0].stop() == 0
        assert es_count(elasticsearch_url, index_of(url)) == 0 and unacked_segments(tmp_path / "queue")
        wait_until(lambda: "the rest stays queued" in serve[0].stderr)  # read by its own thread
        down["now"] = False
        serve.append(Serve(*args))
        wait_until(lambda: es_count(elasticsearch_url, index_of(url)) >= chunks * ENTRIES, STORED)
        assert serve[1].stop() == 0
    assert per_qname(elasticsearch_url, index_of(url)) == {f"f{n}.example": ENTRIES for n in range(chunks)}
    assert unacked_segments(tmp_path / "queue") == []
