"""Hostile peers against real ``serve`` and ``listen`` processes: memory stays bounded, good clients are served.

Every attack runs against a child under a 1 GiB address-space cap (tests/hostile.py)
and measures its peak RSS before and after (``pytest -s`` prints the figures);
each asserts the bound, that a good client sharing the server is served
meanwhile, and the counter of what was refused.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests import test_fluent_forward_wire as w
from tests.hostile import (
    LINE,
    MIB,
    Attacked,
    ack_seconds,
    gzip_bomb,
    measured,
    packed,
    send_in_background,
    unfinished_frame,
)
from tests.polling import wait_until

SERVED_WITHIN = 2.0  # seconds a good client may wait for its ack while an attack is under way
BSD = b"<28>Oct 21 10:22:33 ns1 named[1234]: client 192.0.2.27#40027: error sending response: unset"


@pytest.fixture
def start() -> Iterator[Callable[..., Attacked]]:
    started: list[Attacked] = []

    def run(*args: str, **options: object) -> Attacked:
        started.append(Attacked(*args, **options))  # type: ignore[arg-type]
        return started[-1]

    yield run
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(timeout=15)
        assert b"MemoryError" not in process.stderr
        assert b"please report this" not in process.stderr


def serve(start: Callable[..., Attacked], *args: str, key: str | None = None) -> tuple[Attacked, float]:
    """``serve`` with metrics, warmed up by one good frame; and its peak RSS before the attack."""
    server = start("serve", "--forward", "127.0.0.1:0", "--metrics", "127.0.0.1:0", *args,
                   *(("--shared-key", key) if key else ()))  # fmt: skip
    assert ack_seconds(server.port, key) < SERVED_WITHIN
    return server, server.peak_rss_mb()


def good_clients_meanwhile(port: int, count: int = 10, key: str | None = None) -> float:
    """The longest wait of ``count`` good clients one after the other."""
    return max(ack_seconds(port, key) for _ in range(count))


# --- amplification: a few bytes on the wire must not become gigabytes in serve -------------------


def test_a_65_kb_gzip_bomb_is_refused_in_bounded_memory_while_a_good_client_is_served(start):
    server, base = serve(start)
    bomb = gzip_bomb(64)  # 64 MiB of empty entries
    assert len(bomb) < 70_000
    send_in_background(server.port, bomb)
    assert good_clients_meanwhile(server.port) < SERVED_WITHIN
    wait_until(lambda: server.counter("malformed") == 1)
    assert measured("65 KB gzip bomb", base, server.peak_rss_mb()) < 20
    assert b"100,001 entries in one frame" in server.stderr


def test_a_30_mib_frame_of_empty_entries_costs_its_bytes_and_no_more(start):
    server, base = serve(start)
    send_in_background(server.port, packed(b"\x90" * (30 * MIB), chunk="plain"))
    assert good_clients_meanwhile(server.port) < SERVED_WITHIN
    wait_until(lambda: server.counter("malformed") == 1)
    assert measured("30 MiB frame of empty arrays", base, server.peak_rss_mb()) < 30 + 20


def test_before_the_handshake_a_peer_gets_64_kib_and_is_closed(start):
    server, base = serve(start, key="s3cret")
    attacker = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    attacker.recv(4096)  # HELO
    started = time.monotonic()
    with contextlib.suppress(OSError):
        attacker.sendall(b"\xdd\x00\x0f\x42\x40" + (b"\x9f" + b"\x90" * 15) * 1_000_000)  # 16 MB, no PING
    with contextlib.suppress(ConnectionResetError):
        assert attacker.recv(4096) == b""
    assert time.monotonic() - started < 5  # at once, not at the 10 s handshake timeout
    assert good_clients_meanwhile(server.port, key="s3cret") < SERVED_WITHIN
    wait_until(lambda: server.counter("handshake_failures") == 1)
    assert measured("16 MB before the PING", base, server.peak_rss_mb()) < 10


def test_a_frame_announcing_4_gib_is_refused_at_its_header_for_every_one_of_20_peers(start):
    server, base = serve(start)
    for _ in range(20):
        send_in_background(server.port, b"\x93" + w.s("t") + b"\xc6\xff\xff\xff\xff" + b"\x00" * (30 * MIB))
    assert good_clients_meanwhile(server.port) < SERVED_WITHIN
    wait_until(lambda: server.counter("malformed") == 20)
    assert measured("20 peers announcing 4 GiB", base, server.peak_rss_mb()) < 10


def test_peers_parking_unfinished_frames_together_hold_no_more_than_max_buffer(start):
    server, base = serve(start, "--max-buffer", "64")
    parked = [send_in_background(server.port, unfinished_frame(31 * MIB, 30 * MIB)) for _ in range(20)]
    wait_until(lambda: server.counter("shed_connections") >= 18)  # 64 MiB has room for two of them
    assert good_clients_meanwhile(server.port) < SERVED_WITHIN
    assert server.metrics()["named_senderr_forward_buffered_bytes"] <= 64 * MIB
    assert measured("20 peers parking 30 MiB each", base, server.peak_rss_mb()) < 64 + 2 * 32
    assert b"--max-buffer" in server.stderr
    for sock in parked:
        sock.close()


# --- bad entry times ---------------------------------------------------------------------------


def test_one_bad_time_in_each_of_five_chunks_costs_one_entry_each_and_every_chunk_is_acknowledged(start):
    server, base = serve(start, "--format", "flat")
    bare = w.record(log=LINE.split(" ", 2)[2])  # no time of its own: the entry's time is used
    good = w.array(w.uint(1_700_000_000), bare)
    bad_times = [w.float64(1.7e12), w.float64(1e300), w.uint64(2**64 - 1), w.float64(float("inf")),
                 w.float64(float("nan"))]  # fmt: skip
    for number, time_bytes in enumerate(bad_times):
        entries = [good] * 1999 + [w.array(time_bytes, bare)]
        chunk = f"c{number}"
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
            sock.sendall(w.array(w.s("t"), w.array32(entries), w.chunk_option(chunk)))
            assert sock.recv(64) == w.fmap((w.s("ack"), w.s(chunk)))
    wait_until(lambda: len(server.lines) == 1 + 5 * 1999)  # the warm-up frame, then 1,999 of each chunk
    assert server.counter("bad_times") == 5
    assert server.stderr.count(b"is not between 1970 and 2106") == 5
    measured("five chunks with a bad time", base, server.peak_rss_mb())


# --- slots and time: slowloris and idle sockets --------------------------------------------------


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_200_slowloris_connections_are_closed_at_the_frame_timeout_while_a_good_client_is_served(start):
    server, base = serve(start, "--frame-timeout", "1")
    slow = [socket.create_connection(("127.0.0.1", server.port), timeout=15) for _ in range(200)]
    for sock in slow:
        sock.sendall(b"\x93" + w.s("t"))  # a frame begun, never finished
    assert good_clients_meanwhile(server.port) < SERVED_WITHIN
    wait_until(lambda: all(closed_by_server(sock) for sock in slow))
    assert server.counter("frame_timeouts") == 200
    assert len(re.findall(rb"is still not whole", server.stderr)) == 3  # said at 1, 10 and 100, not 200 times
    assert measured("200 slowloris connections", base, server.peak_rss_mb()) < 20
    for sock in slow:
        sock.close()


def test_idle_sockets_past_the_open_file_limit_neither_lock_a_good_client_out_nor_flood_stderr(start):
    server = start("serve", "--forward", "127.0.0.1:0", "--metrics", "127.0.0.1:0", open_files=1024)
    base = server.peak_rss_mb()
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=15) for _ in range(1074)]
    logged = len(server.stderr)
    assert good_clients_meanwhile(server.port) < SERVED_WITHIN  # each takes the slot of the longest idle
    time.sleep(1)  # what main wrote here: 'accept() out of system resource' tracebacks, 600 KB a second
    assert len(server.stderr) - logged < 2048
    wait_until(lambda: server.counter("evicted_connections") == 1074 - 512 + 1)  # then each good one finds a free slot
    assert server.counter("accept_errors") == 0
    assert b"at the limit of 512 connections (--max-connections)" in server.stderr
    measured("1,074 idle sockets under ulimit -n 1024", base, server.peak_rss_mb())
    for sock in idle:
        sock.close()


def test_idle_connections_to_metrics_hold_a_bounded_number_of_threads_and_a_scrape_is_answered(start):
    server, base = serve(start)
    threads = server.status("Threads")
    port = int(server.metrics_url.rsplit(":", 1)[1])

    def scrape_answered() -> bool:
        with contextlib.suppress(OSError):  # refused while 16 others are answered: a scraper tries again
            return server.counter("frames") == 1
        return False

    idle = [socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(300)]
    wait_until(scrape_answered)  # the oldest silent connection makes room for a scrape
    assert server.status("Threads") <= threads + 16 + 1  # 16 clients, and one evicted on its way out
    measured("300 idle /metrics connections", base, server.peak_rss_mb())
    for sock in idle:
        sock.close()


def test_listen_with_256_idle_tcp_peers_still_takes_a_real_senders_messages(start):
    listener = start("listen", "--syslog", "tcp://127.0.0.1:0", "--format", "flat", "--stats",
                     ready=r"tcp://127\.0\.0\.1:(\d+)")  # fmt: skip
    base = listener.peak_rss_mb()
    idle = [socket.create_connection(("127.0.0.1", listener.port), timeout=15) for _ in range(256)]
    with socket.create_connection(("127.0.0.1", listener.port), timeout=15) as sender:
        sender.sendall(BSD + b"\n")
        wait_until(lambda: len(listener.lines) == 1)  # before: refused at the cap of 256
    measured("listen with 256 idle peers", base, listener.peak_rss_mb())
    assert listener.stop() == 0
    assert b"1 idle evicted connections" in listener.stderr
    for sock in idle:
        sock.close()
