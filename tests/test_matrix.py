"""Every source × queue × sink path delivers the same rolled-up events, privacy and rollup on.

The oracle is ``parse`` on the same generated log; each cell runs the real command as a process, stops the
long-running ones with SIGTERM once their metrics say every send error was parsed, and checks what the
output holds: the flat records on stdout (NDJSON, or msgpack from ``fluentd-filter``), the documents of a
fresh Elasticsearch index, the entries of a fresh VictoriaLogs job (through its Loki push endpoint), or what
a real Forward receiver printed: our own ``serve``, which makes the events again from the lines it receives,
so the fields a line carries are compared (a real Fluentd, when there is one, gets whole records compared).
A rolled-up event's count adds up the send errors.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import msgpack
import orjson
import pytest

from tests.polling import wait_until
from tests.servers import free_port
from tests.test_metrics import scrape
from tests.test_ship_servers import logsql, logsql_counts, new_index, search

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = ("--client-ip", "truncate:/24,/56", "--rollup", "60s", "--timezone", "UTC")
TIMEOUT = 60.0
NAMED_TIME = re.compile(r"^(\d\d)-(\w{3})-(\d{4}) (\d\d:\d\d:\d\d\.\d{3}) ")
MONTHS = {
    m: n for n, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)
}
NOW = msgpack.ExtType(0, bytes(8))  # EventTime 0: the line dates itself
# Where an event came from, not what it says: the only fields a path may set differently.
ORIGIN = ("file", "offset", "host", "program", "pid")
# What a line itself says, and its time: the fields a Forward receiver that parses the lines again gets back.
CARRIED = ("timestamp", "reason", "reason_text", "hint", "client_ip", "qname", "view", "signer", "client_ptr",
           "message_kind", "message")  # fmt: skip
UDP_BURST = 200  # datagrams sent before waiting for listen to read them: inside even a 208 KiB rmem_max buffer
FLUENTD = os.environ.get("FLUENTD") or shutil.which("fluentd")


@dataclass(frozen=True)
class Expected:
    """What ``parse`` makes of the log: the rolled-up events and the number of send errors they count."""

    log: Path
    records: Path  # the log's lines as Fluentd's out_exec_filter writes them to its child: msgpack maps
    events: list[dict]
    errors: int


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> Expected:
    log = tmp_path_factory.mktemp("matrix") / "named.log"
    generate = [sys.executable, str(ROOT / "bench" / "generate_log.py"), "--lines", "3000", "--error-rate", "0.3"]
    subprocess.run([*generate, "--seed", "11", "-o", str(log)], check=True, timeout=TIMEOUT)
    parse = [sys.executable, "-m", "named_senderr", "parse", str(log), *OPTIONS, "--format", "flat"]
    events = [orjson.loads(line) for line in subprocess.run(parse, capture_output=True, check=True).stdout.splitlines()]
    errors = sum(event["count"] for event in events)
    assert len(events) < errors  # the rollup folded some
    records = log.with_suffix(".msgpack")  # in_tail's lines are bin (ASCII-8BIT), under the parser's key
    records.write_bytes(b"".join(msgpack.packb({"message": line}) for line in log.read_bytes().splitlines()))
    return Expected(log, records, events, errors)


def comparable(events: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in e.items() if k not in ORIGIN} for e in events), key=orjson.dumps)


def carried(events: list[dict]) -> list[tuple]:
    return sorted(tuple(event[k] for k in CARRIED) for event in events)


def syslog_frame(line: str) -> bytes:
    """The named line as RFC 5424 syslog, its time (with milliseconds) moved into the header."""
    found = NAMED_TIME.match(line)
    assert found, line
    day, month, year, clock = found.groups()
    stamp = f"{year}-{MONTHS[month]:02d}-{day}T{clock}Z"
    return f"<28>1 {stamp} ns1 named 1234 - - {line[found.end() :]}\n".encode()


class Command:
    """A named-senderr process with stdout and stderr in files of their own."""

    started = itertools.count()

    def __init__(self, tmp_path: Path, args: list[str], stdin: Path | None = None) -> None:
        n = next(self.started)
        self.stdout, self.stderr = tmp_path / f"out-{n}", tmp_path / f"err-{n}"
        with self.stdout.open("ab") as out, self.stderr.open("ab") as err:  # appended: --log-file /dev/stderr
            source = stdin.open("rb") if stdin else subprocess.DEVNULL
            self.proc = subprocess.Popen([sys.executable, "-m", "named_senderr", *args], stdin=source,
                                         stdout=out, stderr=err, cwd=tmp_path)  # fmt: skip

    def said(self, pattern: str) -> str:
        wait_until(lambda: re.search(pattern, self.stderr.read_text()) or self.proc.poll() is not None, TIMEOUT)
        found = re.search(pattern, self.stderr.read_text())
        assert found is not None, self.stderr.read_text()
        return found.group(found.re.groups and 1)

    def finish(self, parsed: int | None = None) -> None:
        """Wait for the exit; a long-running one (``parsed`` given) gets SIGTERM once it parsed that many."""
        if parsed is not None:
            metrics = self.said(r"(http://127\.0\.0\.1:\d+)")
            wait_until(lambda: scrape(metrics).get("named_senderr_events_parsed_total") == parsed, TIMEOUT)
            self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(TIMEOUT) == 0, self.stderr.read_text()
        finally:
            self.proc.kill()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.finish()


def feed_syslog(command: Command, log: Path) -> None:
    port = command.said(r"tcp://127\.0\.0\.1:(\d+)")
    with socket.create_connection(("127.0.0.1", int(port)), timeout=TIMEOUT) as tcp:
        tcp.sendall(b"".join(syslog_frame(line) for line in log.read_text().splitlines()))


def feed_syslog_udp(command: Command, log: Path) -> None:
    """One datagram a line, in bursts the kernel keeps: each waits until listen has read the one before."""
    port = command.said(r"udp://127\.0\.0\.1:(\d+)")
    metrics = command.said(r"(http://127\.0\.0\.1:\d+)")
    frames = [syslog_frame(line) for line in log.read_text().splitlines()]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for n in range(0, len(frames), UDP_BURST):
            for datagram in frames[n : n + UDP_BURST]:
                udp.sendto(datagram, ("127.0.0.1", int(port)))
            sent = min(n + UDP_BURST, len(frames))
            wait_until(lambda: scrape(metrics)["named_senderr_syslog_messages_total"] == sent, TIMEOUT)  # noqa: B023
    figures = scrape(metrics)
    assert figures["named_senderr_syslog_dropped_total"] == figures["named_senderr_syslog_kernel_drops_total"] == 0


def feed_forward(command: Command, log: Path) -> socket.socket:
    """Forward-mode frames of 500 lines, each with a chunk id; the acks wait for the rollup to close."""
    port = command.said(r"on 127\.0\.0\.1:(\d+)")
    tcp = socket.create_connection(("127.0.0.1", int(port)), timeout=TIMEOUT)
    lines = log.read_text().splitlines()
    for n in range(0, len(lines), 500):
        entries = [[NOW, {"log": line}] for line in lines[n : n + 500]]
        tcp.sendall(msgpack.packb(["named", entries, {"chunk": f"c{n}"}]))
    return tcp


def acks(tcp: socket.socket) -> set[str]:
    """The chunk ids the server acknowledged before it closed the connection."""
    unpacker = msgpack.Unpacker(raw=False)
    with tcp:
        while data := tcp.recv(4096):
            unpacker.feed(data)
    return {answer["ack"] for answer in unpacker}


def rotate(command: Command, log: Path, rest: bytes) -> None:
    """Once the follower read all of ``log``: renamed, as logrotate does, and ``rest`` written to a new file."""
    metrics = command.said(r"(http://127\.0\.0\.1:\d+)")
    lines = log.read_bytes().count(b"\n")
    wait_until(lambda: scrape(metrics).get("named_senderr_lines_read_total") == lines, TIMEOUT)
    log.rename(log.with_name(log.name + ".1"))
    log.write_bytes(rest)


SOURCES = {  # source: (command for the memory queue, command with --queue-dir)
    "file": (["ship", "{log}"], ["ship", "{log}"]),
    # ship --follow needs --queue-dir: in memory, following is tail's
    "follow": (
        ["tail", "{log}", "--read-from-head", "--poll-interval", "0.05"],
        ["ship", "--follow", "{log}", "--read-from-head"],
    ),
    "rotation": (  # follow, the file renamed and a new one created halfway through the log
        ["tail", "{log}", "--read-from-head", "--poll-interval", "0.05"],
        ["ship", "--follow", "{log}", "--read-from-head"],
    ),
    "stdin": (["ship", "-"], ["ship", "-"]),
    "syslog": (["listen", "--syslog", "tcp://127.0.0.1:0"], ["listen", "--syslog", "tcp://127.0.0.1:0"]),
    "syslog_udp": (["listen", "--syslog", "udp://127.0.0.1:0"], ["listen", "--syslog", "udp://127.0.0.1:0"]),
    "forward": (["serve", "--forward", "127.0.0.1:0"], ["serve", "--forward", "127.0.0.1:0"]),
    # msgpack records on stdin until its end, as Fluentd's out_exec_filter writes them; the log on stderr
    "exec_filter": (["fluentd-filter", "--key", "message", "--log-file", "/dev/stderr"],) * 2,
}
LONG_RUNNING = {"follow", "rotation", "syslog", "syslog_udp", "forward"}
STDIN = {"stdin": "log", "exec_filter": "records"}  # source: the Expected file it reads on stdin
CELLS = [
    pytest.param(
        source,
        queue,
        sink,
        id=f"{source}({SOURCES[source][queue == 'disk'][0]})-{queue}-{sink}",
        marks=() if sink in ("stdout", "forward") else pytest.mark.servers,  # through getfixturevalue: mark it
    )
    for source in SOURCES
    for queue in ("memory", "disk")
    for sink in ("stdout", "elasticsearch", "victorialogs", "forward")
    # fluentd-filter answers Fluentd on its stdout, where no disk queue fits: --queue-dir is only with --to
    # (the refusal is tested in test_exec_filter.py)
    if (source, queue, sink) != ("exec_filter", "disk", "stdout")
]


def sink_url(sink: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Command | None]:
    """The --to URL, and for a Forward sink the real receiver behind it: ``serve`` printing what it takes."""
    if sink == "stdout":
        return "stdout:?format=flat", None
    if sink == "elasticsearch":
        return new_index("elasticsearch", request.getfixturevalue("elasticsearch_url"), tmp_path), None
    if sink == "victorialogs":
        return f"loki+{request.getfixturevalue('victorialogs_url')}/insert?job=matrix-{uuid.uuid4().hex[:8]}", None
    receiver = Command(tmp_path, ["serve", "--forward", "127.0.0.1:0", "--key", "message", "--format", "flat",
                                  "--timezone", "UTC"])  # fmt: skip
    port = receiver.said(r"on 127\.0\.0\.1:(\d+)")
    return f"forward://127.0.0.1:{port}", receiver


def by_ip(counts: dict) -> dict[str, int]:
    """Events by client IP, those without one (named's own "Sending UDP messages failed") left out."""
    return {ip: n for ip, n in counts.items() if ip}


def stored(sink: str, url: str, request: pytest.FixtureRequest, expected: Expected) -> tuple[int, int, dict, list]:
    """(events, the send errors their counts add up to, events by client IP, their messages) in the store."""
    if sink == "elasticsearch":
        base, index = url.removeprefix("elasticsearch+").rsplit("/", 1)
        aggs = {
            "errors": {"sum": {"field": "bind.repeat_count"}},
            "ips": {"terms": {"field": "client.ip", "size": 1000}},
        }
        found = search(base, index, {"size": 1000, "_source": ["message"], "track_total_hits": True, "aggs": aggs})
        ips = by_ip({b["key"]: b["doc_count"] for b in found["aggregations"]["ips"]["buckets"]})
        messages = sorted(hit["_source"]["message"] for hit in found["hits"]["hits"])
        return found["hits"]["total"]["value"], int(found["aggregations"]["errors"]["value"]), ips, messages
    base, job = request.getfixturevalue("victorialogs_url"), url.rsplit("job=", 1)[1]
    query = f'{{job="{job}"}}'
    total = logsql_counts(base, query, {"": len(expected.events)}, by="")
    [row] = logsql(base, f"{query} | stats sum(repeat_count) errors")
    ips = by_ip(logsql_counts(base, query, by="client_ip"))
    messages = sorted(row["_msg"] for row in logsql(base, f"{query} | fields _msg"))
    return total.get("", 0), int(float(row["errors"])), ips, messages


def printed(command: Command, source: str) -> list[dict]:
    """The flat records on stdout: msgpack maps from fluentd-filter, NDJSON from every other command."""
    if source == "exec_filter":
        return list(msgpack.Unpacker(io.BytesIO(command.stdout.read_bytes()), raw=False))
    return [orjson.loads(line) for line in command.stdout.read_bytes().splitlines()]


def run_cell(source: str, queue: str, url: str | None, expected: Expected, tmp_path: Path) -> Command:
    """The source's command from start to exit; ``url`` None: fluentd-filter's own msgpack stdout."""
    log = expected.log
    if source == "rotation":
        log, lines = tmp_path / "named.log", expected.log.read_bytes().splitlines(keepends=True)
        log.write_bytes(b"".join(lines[: len(lines) // 2]))
    args = [a.format(log=log) for a in SOURCES[source][queue == "disk"]] + list(OPTIONS)
    if url is not None:
        args += ["--to", url, "--dead-letter", str(tmp_path / "dead.ndjson")]
    if queue == "disk":
        args += ["--queue-dir", str(tmp_path / "queue")]
    if source in LONG_RUNNING:
        args += ["--metrics", "127.0.0.1:0"]
    elif source == "file":
        args += ["--no-progress"]
    command = Command(tmp_path, args, stdin=getattr(expected, STDIN[source]) if source in STDIN else None)
    connection = None
    if source == "rotation":
        rotate(command, log, b"".join(lines[len(lines) // 2 :]))
    elif source == "syslog":
        feed_syslog(command, expected.log)
    elif source == "syslog_udp":
        feed_syslog_udp(command, expected.log)
    elif source == "forward":
        connection = feed_forward(command, expected.log)
    command.finish(expected.errors if source in LONG_RUNNING else None)
    if connection is not None:
        assert acks(connection) == {f"c{n}" for n in range(0, 3000, 500)}
    assert not (tmp_path / "dead.ndjson").exists()
    return command


@pytest.mark.parametrize(("source", "queue", "sink"), CELLS)
def test_every_path_delivers_the_events_parse_rolls_up(
    source: str, queue: str, sink: str, expected: Expected, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url, receiver = sink_url(sink, request, tmp_path)
    own_stdout = source == "exec_filter" and sink == "stdout"  # fluentd-filter refuses --to stdout:
    command = run_cell(source, queue, None if own_stdout else url, expected, tmp_path)
    if receiver is not None:  # every batch the sink sent was acknowledged: printed by the receiver
        receiver.stop()
        assert carried(printed(receiver, "forward")) == carried(expected.events)
    elif sink == "stdout":
        assert comparable(printed(command, source)) == comparable(expected.events)
    else:
        ips = by_ip(Counter(event["client_ip"] for event in expected.events))
        messages = sorted(event["message"] for event in expected.events)  # the client IP in them truncated
        assert stored(sink, url, request, expected) == (len(expected.events), expected.errors, ips, messages)


FLUENTD_CONF = """\
<source>
  @type forward
  bind 127.0.0.1
  port {port}
</source>
<match named_senderr.**>
  @type stdout
  <format>
    @type json
  </format>
</match>
"""


@pytest.mark.skipif(FLUENTD is None, reason="no fluentd on PATH; set FLUENTD=/path/to/fluentd to run this")
@pytest.mark.parametrize("queue", ["memory", "disk"])
def test_forward_sink_hands_a_real_fluentd_every_event_whole(queue: str, expected: Expected, tmp_path: Path) -> None:
    """Fluentd's in_forward acknowledges each chunk once its out_stdout wrote the records into Fluentd's log."""
    assert FLUENTD is not None
    port, config, log = free_port(), tmp_path / "fluentd.conf", tmp_path / "fluentd.log"
    config.write_text(FLUENTD_CONF.format(port=port))
    fluentd = subprocess.Popen([FLUENTD, "-c", str(config), "--no-supervisor", "-o", str(log)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_until(lambda: log.exists() and "fluentd worker is now running" in log.read_text(), TIMEOUT)
        run_cell("file", queue, f"forward://127.0.0.1:{port}", expected, tmp_path)
        fluentd.send_signal(signal.SIGTERM)
        assert fluentd.wait(TIMEOUT) == 0
    finally:
        fluentd.kill()
    received = [orjson.loads(line) for line in log.read_bytes().splitlines() if line.startswith(b"{")]
    assert comparable(received) == comparable(expected.events)
