"""The syslog receiver on real loopback sockets (port 0): UDP, TCP, limits, garbage."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from named_senderr.errors import ConfigError
from named_senderr.sources.peers import PeerLimits
from named_senderr.sources.syslog import SyslogConfig, SyslogEndpoint, SyslogStats, serve

BSD = b"<28>Oct 21 10:22:33 ns1 named[1234]: client 192.0.2.27#40027: error sending response: unset"
RFC5424 = b"<28>1 2021-08-01T00:00:09Z ns1 named 4040 - - client 192.0.2.28#40028: error sending response: unset"
DEADLINE = 5.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` every 10 ms, for at most DEADLINE seconds."""
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up after {DEADLINE} s waiting for {what}")
        time.sleep(0.01)


class Receiver:
    def __init__(self, config: SyslogConfig) -> None:
        self.messages: list[bytes] = []
        self.senders: list[tuple[str, bool]] = []  # each message's sender address, and whether it may wait
        self.warnings: list[str] = []
        self.stats = SyslogStats()
        self.stop = threading.Event()
        ready: queue.Queue = queue.Queue()
        self.thread = threading.Thread(
            target=serve,
            args=(config, self.deliver, self.warnings.append, self.stop, ready.put, self.stats),
            daemon=True,
        )
        self.thread.start()
        self.urls = {url.split(":")[0]: int(url.rsplit(":", 1)[1]) for url in ready.get(timeout=DEADLINE)}

    def deliver(self, messages: list[bytes], senders: list[str], wait: bool) -> None:
        self.senders.extend((sender, wait) for sender in senders)
        self.messages.extend(messages)

    def until(self, count: int) -> list[bytes]:
        wait_for(lambda: len(self.messages) >= count, f"{count} messages")
        return self.messages


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoints = (SyslogEndpoint("udp", "127.0.0.1", 0), SyslogEndpoint("tcp", "127.0.0.1", 0))
    server = Receiver(SyslogConfig(endpoints, max_message_bytes=1000, peers=PeerLimits(max_connections=2)))
    yield server
    server.stop.set()
    server.thread.join(DEADLINE)
    assert not server.thread.is_alive()


def tcp(receiver: Receiver) -> socket.socket:
    return socket.create_connection(("127.0.0.1", receiver.urls["tcp"]), timeout=DEADLINE)


def closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(DEADLINE)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_udp_datagrams_are_one_message_each_in_either_rfc(receiver):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(BSD + b"\n", ("127.0.0.1", receiver.urls["udp"]))
        sock.sendto(RFC5424, ("127.0.0.1", receiver.urls["udp"]))
    assert sorted(receiver.until(2)) == sorted([BSD, RFC5424])


def test_every_message_comes_with_its_senders_address_and_only_tcp_ones_may_wait(receiver):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(BSD, ("127.0.0.1", receiver.urls["udp"]))
        receiver.until(1)
    with tcp(receiver) as sock:
        sock.sendall(BSD + b"\n" + RFC5424 + b"\n")
        receiver.until(3)
    assert receiver.senders == [("127.0.0.1", False), ("127.0.0.1", True), ("127.0.0.1", True)]


def test_udp_message_over_the_limit_is_counted_and_dropped(receiver):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(BSD + b"x" * 1000, ("127.0.0.1", receiver.urls["udp"]))
        sock.sendto(BSD, ("127.0.0.1", receiver.urls["udp"]))
    assert receiver.until(1) == [BSD]
    wait_for(lambda: receiver.stats.oversize == 1, "the oversize count")


def test_udp_datagrams_the_kernel_drops_are_counted_to_the_last():
    """The consumer stalls and the smallest receive buffer overflows: delivered + counted drops = sent."""
    release, taken = threading.Event(), []

    def stalled(messages: list[bytes], _senders: list[str], _wait: bool) -> None:
        release.wait(DEADLINE)
        taken.extend(messages)

    stats, stop, ready = SyslogStats(), threading.Event(), queue.Queue()
    config = SyslogConfig((SyslogEndpoint("udp", "127.0.0.1", 0),), udp_receive_buffer=4096)
    thread = threading.Thread(target=serve, args=(config, stalled, lambda _: None, stop, ready.put, stats), daemon=True)
    thread.start()
    address = ("127.0.0.1", int(ready.get(timeout=DEADLINE)[0].rsplit(":", 1)[1]))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(500):
            sock.sendto(BSD, address)
        release.set()
        markers = 0

        def marker_arrived() -> bool:
            """A marker behind all the rest; resent until the buffer has room for one (drops are counted too)."""
            nonlocal markers
            if RFC5424 not in taken:
                sock.sendto(RFC5424, address)
                markers += 1
            return RFC5424 in taken

        wait_for(marker_arrived, "a marker datagram behind the burst")
    stop.set()
    thread.join(DEADLINE)
    assert stats.kernel_drops > 0
    assert len(taken) + stats.kernel_drops == 500 + markers


def test_tcp_octet_counted_and_newline_framing_on_one_connection(receiver):
    with tcp(receiver) as sock:
        sock.sendall(str(len(RFC5424)).encode() + b" " + RFC5424 + BSD + b"\n")
    assert receiver.until(2) == [RFC5424, BSD]


def test_tcp_last_message_without_newline_is_delivered_on_close(receiver):
    with tcp(receiver) as sock:
        sock.sendall(BSD)
    assert receiver.until(1) == [BSD]


def test_tcp_oversize_frame_is_counted_and_the_connection_closed(receiver):
    with tcp(receiver) as sock:
        sock.sendall(BSD + b"\n" + b"5000 <13>")
        assert closed_by_peer(sock)
    assert receiver.until(1) == [BSD]
    assert receiver.stats.oversize == 1
    assert any("limit 1000" in w and "connection closed" in w for w in receiver.warnings)


def test_tcp_garbage_is_counted_logged_and_the_connection_closed(receiver):
    with tcp(receiver) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        assert closed_by_peer(sock)
    wait_for(lambda: receiver.stats.malformed == 1, "the malformed count")
    assert any("malformed frame" in w for w in receiver.warnings)


def test_receiver_keeps_serving_after_garbage(receiver):
    with tcp(receiver) as sock:
        sock.sendall(b"garbage\n")
        assert closed_by_peer(sock)
    with tcp(receiver) as sock:
        sock.sendall(BSD + b"\n")
    assert receiver.until(1) == [BSD]


def test_at_the_connection_cap_the_longest_idle_connection_makes_room(receiver):
    first, second = tcp(receiver), tcp(receiver)
    try:
        first.sendall(BSD + b"\n")
        receiver.until(1)
        second.sendall(RFC5424 + b"\n")
        receiver.until(2)  # first has been idle the longest
        with tcp(receiver) as third:
            third.sendall(BSD + b"\n")
            assert closed_by_peer(first)
            receiver.until(3)
        assert (receiver.stats.evicted_connections, receiver.stats.refused_connections) == (1, 0)
        assert any("--max-connections" in w for w in receiver.warnings)
    finally:
        first.close()
        second.close()


def test_at_the_connection_cap_with_none_idle_a_new_connection_is_refused_and_counted(receiver):
    first, second = tcp(receiver), tcp(receiver)
    try:
        first.sendall(b"<13>a message")  # no LF yet: each is inside a message
        second.sendall(b"<13>another one")
        wait_for(lambda: receiver.stats.buffered_bytes == 13 + 15, "both connections inside a message")
        with tcp(receiver) as third:
            assert closed_by_peer(third)
        assert (receiver.stats.refused_connections, receiver.stats.evicted_connections) == (1, 0)
    finally:
        first.close()
        second.close()


@pytest.fixture
def impatient() -> Iterator[Receiver]:
    """A TCP receiver that closes silent connections after 0.3 s and unfinished messages after 0.5 s."""
    limits = PeerLimits(idle_timeout=0.3, frame_timeout=0.5)
    server = Receiver(SyslogConfig((SyslogEndpoint("tcp", "127.0.0.1", 0),), peers=limits))
    yield server
    server.stop.set()
    server.thread.join(DEADLINE)


def test_tcp_idle_connection_is_closed_after_the_idle_timeout_and_counted(impatient):
    with tcp(impatient) as sock:
        sock.sendall(BSD + b"\n")
        assert closed_by_peer(sock)
    assert impatient.until(1) == [BSD]
    assert impatient.stats.idle_timeouts == 1


def test_tcp_message_not_whole_within_the_frame_timeout_is_closed_counted_and_said(impatient):
    with tcp(impatient) as slow:
        slow.sendall(b"<28>Oct 21 10:22:33 ns1 named[1]: a message that never ends")
        with tcp(impatient) as good:
            good.sendall(BSD + b"\n")
            assert impatient.until(1) == [BSD]  # served meanwhile
        assert closed_by_peer(slow)
    assert impatient.stats.frame_timeouts == 1
    assert any("--frame-timeout" in w for w in impatient.warnings)


def test_endpoint_without_host_binds_loopback():
    assert SyslogEndpoint.parse("udp://:5514") == SyslogEndpoint("udp", "127.0.0.1", 5514)
    assert SyslogEndpoint.parse("tcp://[::1]:6514").url() == "tcp://[::1]:6514"


@pytest.mark.parametrize("url", ["udp://127.0.0.1", "http://127.0.0.1:5514", "tcp://127.0.0.1:99999", "5514"])
def test_bad_endpoint_names_the_url_and_shows_an_example(url):
    with pytest.raises(ConfigError, match=r"expected udp://HOST:PORT .* e\.g\. udp://127\.0\.0\.1:5514"):
        SyslogEndpoint.parse(url)


def test_port_already_taken_is_a_config_error_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = SyslogConfig((SyslogEndpoint("tcp", "127.0.0.1", port),))
        with pytest.raises(ConfigError, match=f"tcp://127.0.0.1:{port}: cannot listen"):
            serve(config, print, print, threading.Event())
