"""``tail`` and ``listen`` into the real Elasticsearch: exact counts, and what survives SIGTERM, kill -9, a store
outage and a 429 storm with partial bulk failures (the faults ``ship`` is tested under in test_durability.py).

Before the engine both could only print. A store outage is the fault-injecting proxy of tests/faults.py
answering 503 in front of the real server, then passing requests on to it; the count is Elasticsearch's own.
"""

from __future__ import annotations

import itertools
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.faults import FaultServer, Forward, Reply
from tests.polling import wait_until
from tests.test_durability import es_count, settings, storm, unacked_segments
from tests.test_metrics import scrape
from tests.test_ship_servers import new_index
from tests.test_tail_cli import checkpointed

TIMEOUT = 60.0
LINE = "21-Nov-2026 04:47:35.739 client @0x7f04 192.0.2.7#{n} (l{n}.example): error sending response: would block\n"
MESSAGE = "<28>Oct 21 10:22:33 ns1 named[1234]: client 192.0.2.27#{n} (m{n}.example): error sending response: unset"


class Command:
    """A named-senderr process with its stderr in a file of its own, read as it grows."""

    started = itertools.count()

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.stderr = tmp_path / f"{args[0]}-{next(self.started)}.stderr"
        with self.stderr.open("ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "named_senderr", *args], stdout=subprocess.DEVNULL,
                                         stderr=err, cwd=tmp_path)  # fmt: skip

    def said(self, pattern: str) -> str:
        """The first match of ``pattern`` in what the process said (waits for it)."""
        wait_until(lambda: re.search(pattern, self.stderr.read_text()), TIMEOUT)
        found = re.search(pattern, self.stderr.read_text())
        assert found is not None
        return found.group(found.re.groups and 1)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(TIMEOUT)
        finally:
            self.proc.kill()


@contextmanager
def store_behind_proxy(elasticsearch_url: str, tmp_path: Path) -> Iterator[tuple[FaultServer, dict[str, bool], str]]:
    """A fresh index behind a proxy that answers 503 while ``down["now"]``; yields proxy, switch and sink URL."""
    index = new_index("elasticsearch", elasticsearch_url, tmp_path).rsplit("/", 1)[1]
    down = {"now": True}
    with FaultServer(lambda r, n: Reply(503, b"unavailable") if down["now"] else Forward(elasticsearch_url)) as proxy:
        yield proxy, down, f"elasticsearch+{proxy.url}/{index}"


def index_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def delivery_args(tmp_path: Path, url: str, *extra: str) -> list[str]:
    """Small batches, quick and patient retries, the test's own dead-letter file."""
    return ["--to", url, "--config", str(settings(tmp_path, 100)), "--timezone", "UTC",
            "--dead-letter", str(tmp_path / "dead.ndjson"), *extra]  # fmt: skip


def delivered_by_the_next_start(start: Callable[[], Command], elasticsearch_url: str, url: str, total: int) -> None:
    """Started again (the store up), the command delivers what the last run left queued: ``total`` documents."""
    command = start()
    wait_until(lambda: es_count(elasticsearch_url, index_of(url)) >= total, TIMEOUT)
    assert command.stop() == 0
    assert es_count(elasticsearch_url, index_of(url)) == total


def test_tail_to_elasticsearch_moves_the_checkpoint_only_once_the_events_are_stored(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    total = 1_000
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    log.write_text("".join(LINE.format(n=n) for n in range(total)))
    with store_behind_proxy(elasticsearch_url, tmp_path) as (proxy, down, url):
        tail = Command(tmp_path, "tail", str(log), "--checkpoint", str(checkpoint), "--read-from-head",
                       "--poll-interval", "0.05", *delivery_args(tmp_path, url))  # fmt: skip
        wait_until(lambda: len(proxy.requests) >= 3, TIMEOUT)
        assert checkpointed(checkpoint) == 0  # read and sent, not stored: the checkpoint stays
        down["now"] = False
        wait_until(lambda: checkpointed(checkpoint) == log.stat().st_size, TIMEOUT)
        assert tail.stop() == 0
    assert es_count(elasticsearch_url, index_of(url)) == total


def test_tail_with_a_queue_checkpoints_what_is_queued_and_the_next_start_delivers_it(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    total = 1_000
    log, queue = tmp_path / "named.log", tmp_path / "queue"
    log.write_text("".join(LINE.format(n=n) for n in range(total)))
    with store_behind_proxy(elasticsearch_url, tmp_path) as (_proxy, down, url):
        args = ["tail", str(log), "--read-from-head", "--poll-interval", "0.05", "--queue-dir", str(queue),
                "--shutdown-timeout", "1", *delivery_args(tmp_path, url)]  # fmt: skip
        first = Command(tmp_path, *args)
        wait_until(lambda: checkpointed(queue / "tail-checkpoint.json") == log.stat().st_size, TIMEOUT)
        assert first.stop() == 0  # the store never answered: everything waits in the queue
        assert es_count(elasticsearch_url, index_of(url)) == 0 and unacked_segments(queue)
        assert "wait in the queue" in first.stderr.read_text()
        down["now"] = False
        delivered_by_the_next_start(lambda: Command(tmp_path, *args), elasticsearch_url, url, total)
    assert unacked_segments(queue) == []


def send_tcp(address: tuple[str, int], numbers: range) -> None:
    with socket.create_connection(address, timeout=TIMEOUT) as tcp:
        tcp.sendall(b"".join(MESSAGE.format(n=n).encode() + b"\n" for n in numbers))


def listening(tmp_path: Path, *args: str) -> tuple[Command, dict[str, tuple[str, int]]]:
    """``listen`` and the addresses it said it listens on, by transport."""
    listener = Command(tmp_path, "listen", *args)
    said = listener.said(r"listening on .*")
    return listener, {kind: ("127.0.0.1", int(p)) for kind, p in re.findall(r"(udp|tcp)://127\.0\.0\.1:(\d+)", said)}


def test_listen_to_elasticsearch_stores_every_tcp_message_once(elasticsearch_url: str, tmp_path: Path) -> None:
    """Before the engine, syslog into a store was impossible: listen could only print."""
    total = 2_000
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    listener, address = listening(tmp_path, "--syslog", "tcp://127.0.0.1:0", *delivery_args(tmp_path, url))
    send_tcp(address["tcp"], range(total))
    wait_until(lambda: es_count(elasticsearch_url, index_of(url)) >= total, TIMEOUT)
    assert listener.stop() == 0
    assert es_count(elasticsearch_url, index_of(url)) == total


def test_listen_udp_into_elasticsearch_stores_every_datagram_it_does_not_count_as_dropped(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    total = 500
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    listener, address = listening(tmp_path, "--syslog", "udp://127.0.0.1:0", "--metrics", "127.0.0.1:0",
                                  *delivery_args(tmp_path, url))  # fmt: skip
    metrics = listener.said(r"http://127\.0\.0\.1:\d+")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for n in range(total):
            udp.sendto(MESSAGE.format(n=n).encode(), address["udp"])

    def counted() -> dict[str, float]:
        return {k.removeprefix("named_senderr_syslog_"): v for k, v in scrape(metrics).items() if "syslog" in k}

    wait_until(lambda: counted()["messages_total"] + counted()["kernel_drops_total"] == total, TIMEOUT)
    figures = counted()
    taken = figures["messages_total"] - figures["dropped_total"]
    wait_until(lambda: es_count(elasticsearch_url, index_of(url)) >= taken, TIMEOUT)
    assert listener.stop() == 0
    assert es_count(elasticsearch_url, index_of(url)) == taken > 0, figures


def test_listen_sigterm_with_a_queue_keeps_what_was_not_delivered_and_the_next_start_delivers_it(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    total = 1_000
    queue = tmp_path / "queue"
    with store_behind_proxy(elasticsearch_url, tmp_path) as (_proxy, down, url):
        args = ["--syslog", "tcp://127.0.0.1:0", "--queue-dir", str(queue), "--shutdown-timeout", "1",
                "--metrics", "127.0.0.1:0", *delivery_args(tmp_path, url)]  # fmt: skip
        first, address = listening(tmp_path, *args)
        metrics = first.said(r"http://127\.0\.0\.1:\d+")
        send_tcp(address["tcp"], range(total))
        wait_until(lambda: scrape(metrics)["named_senderr_events_queued_total"] == total, TIMEOUT)
        assert first.stop() == 0
        assert es_count(elasticsearch_url, index_of(url)) == 0 and unacked_segments(queue)
        assert "wait in the queue" in first.stderr.read_text()
        down["now"] = False
        delivered_by_the_next_start(lambda: listening(tmp_path, *args)[0], elasticsearch_url, url, total)
    assert unacked_segments(queue) == []


def test_listen_killed_9_with_a_queue_loses_nothing_it_had_queued(elasticsearch_url: str, tmp_path: Path) -> None:
    total = 1_000
    queue = tmp_path / "queue"
    with store_behind_proxy(elasticsearch_url, tmp_path) as (_proxy, down, url):
        args = ["--syslog", "tcp://127.0.0.1:0", "--queue-dir", str(queue), "--metrics", "127.0.0.1:0",
                *delivery_args(tmp_path, url)]  # fmt: skip
        first, address = listening(tmp_path, *args)
        metrics = first.said(r"http://127\.0\.0\.1:\d+")
        send_tcp(address["tcp"], range(total))
        wait_until(lambda: scrape(metrics)["named_senderr_events_queued_total"] == total, TIMEOUT)
        first.stop(signal.SIGKILL)
        down["now"] = False
        delivered_by_the_next_start(lambda: listening(tmp_path, *args)[0], elasticsearch_url, url, total)
    assert unacked_segments(queue) == []


def test_listen_rides_out_a_store_outage_in_memory_and_stores_every_tcp_message_once_after(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    """No queue: the engine holds the batches and retries them; TCP senders wait meanwhile."""
    total = 1_000
    with store_behind_proxy(elasticsearch_url, tmp_path) as (proxy, down, url):
        listener, address = listening(tmp_path, "--syslog", "tcp://127.0.0.1:0", *delivery_args(tmp_path, url))
        send_tcp(address["tcp"], range(total))
        wait_until(lambda: len(proxy.requests) >= 3, TIMEOUT)
        assert es_count(elasticsearch_url, index_of(url)) == 0
        down["now"] = False
        wait_until(lambda: es_count(elasticsearch_url, index_of(url)) >= total, TIMEOUT)
        assert listener.stop() == 0
    assert es_count(elasticsearch_url, index_of(url)) == total


def test_listen_through_a_429_storm_and_partial_bulk_failures_stores_every_message_once(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    total, refused = 2_000, []
    index = index_of(new_index("elasticsearch", elasticsearch_url, tmp_path))
    with FaultServer(storm(elasticsearch_url, index, refused)) as proxy:
        url = f"elasticsearch+{proxy.url}/{index}"
        listener, address = listening(tmp_path, "--syslog", "tcp://127.0.0.1:0", *delivery_args(tmp_path, url))
        send_tcp(address["tcp"], range(total))
        wait_until(lambda: es_count(elasticsearch_url, index) >= total, TIMEOUT)
        assert listener.stop() == 0
    assert es_count(elasticsearch_url, index) == total
    summary = f"sent {total:,} (0 already stored), retried {sum(refused):,}, dead-lettered 0"
    assert sum(refused) > 0 and summary in listener.stderr.read_text()
