"""``named-senderr listen`` as a process: syslog in over UDP and TCP, NDJSON events out."""

from __future__ import annotations

import re
import socket

from tests.test_tail_cli import DEADLINE, Process

BSD = b"<28>Oct 21 10:22:33 ns1 named[1234]: client 192.0.2.27#40027: error sending response: unset"
RFC5424 = b"<28>1 2021-08-01T00:00:09Z ns1 named 4040 - - client 192.0.2.28#40028 (a.example): send failed: no pending connections"


def bound_ports(listener: Process) -> dict[str, int]:
    line = listener.stderr.get(timeout=DEADLINE).decode()
    return {transport: int(port) for transport, port in re.findall(r"(udp|tcp)://127\.0\.0\.1:(\d+)", line)}


def test_listen_prints_one_event_per_syslog_message_on_udp_and_tcp():
    listener = Process("listen", "--syslog", "udp://127.0.0.1:0", "--syslog", "tcp://:0", "--format", "flat")
    ports = bound_ports(listener)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(BSD, ("127.0.0.1", ports["udp"]))
    [from_udp] = listener.events(1)
    with socket.create_connection(("127.0.0.1", ports["tcp"]), timeout=DEADLINE) as tcp:
        tcp.sendall(str(len(RFC5424)).encode() + b" " + RFC5424)
    [from_tcp] = listener.events(1)
    assert (from_udp["client_port"], from_udp["reason"], from_udp["host"]) == (40027, "unclassified", "ns1")
    assert (from_tcp["client_port"], from_tcp["reason"], from_tcp["qname"]) == (40028, "would_block", "a.example")
    assert listener.stop() == 0


def test_listen_survives_garbage_and_says_so_on_stderr():
    listener = Process("listen", "--syslog", "tcp://127.0.0.1:0", "--format", "flat")
    ports = bound_ports(listener)
    with socket.create_connection(("127.0.0.1", ports["tcp"]), timeout=DEADLINE) as tcp:
        tcp.sendall(b"\xff\xfe garbage\n")
        assert tcp.recv(1) == b""
    assert b"malformed frame" in listener.stderr.get(timeout=DEADLINE)
    with socket.create_connection(("127.0.0.1", ports["tcp"]), timeout=DEADLINE) as tcp:
        tcp.sendall(BSD + b"\n")
    assert listener.events(1)[0]["client_ip"] == "192.0.2.27"
    assert listener.stop() == 0
