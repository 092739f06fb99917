"""``named-senderr fluentd-filter`` driven exactly as Fluentd's out_exec_filter drives its child.

A subprocess gets concatenated msgpack maps on stdin, in chunks and in writes
that split a map in two; its stdout is read back with a streaming msgpack
Unpacker while stdin is still open, as Fluentd does.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path

import msgpack
import orjson
import pytest

from named_senderr.event import Event
from named_senderr.normalize.timestamp import TimestampNormalizer
from named_senderr.parse.named import NamedLineParser
from named_senderr.sources.exec_filter import BATCH_LINES
from tests.polling import wait_until

SAMPLE = Path(__file__).resolve().parent.parent / "plugin" / "named_senderr" / "samples" / "named.log"
LINE = "21-Nov-2026 04:48:37.067 client @0x7f 192.0.2.1#{port} (example.com): error sending response: would block"
QUERY = "21-Nov-2026 04:48:37.004 queries: info: client @0x7f 192.0.2.9#4076 (example.com): query: example.com IN A"
WAIT = 15.0
INSTALLED = Path(sys.executable).with_name("named-senderr")  # the console script pip installed beside python


def pack(record: object) -> bytes:
    return msgpack.packb(record, use_bin_type=True)


class Child:
    """The filter as a child process; a thread reads its stdout with a streaming Unpacker."""

    def __init__(self, tmp_path: Path, *args: str, program: Path | None = None) -> None:
        self.log_file = tmp_path / "fluentd-filter.log"
        named_senderr = [str(program)] if program else [sys.executable, "-m", "named_senderr"]
        command = [*named_senderr, "fluentd-filter", "--log-file", str(self.log_file), *args]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.records: list = []
        self.stdout_bytes = 0
        self._unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", strict_map_key=False)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while data := self.proc.stdout.read1(65536):
            self.stdout_bytes += len(data)
            self._unpacker.feed(data)
            self.records.extend(self._unpacker)

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def wait_records(self, count: int) -> list:
        wait_until(lambda: len(self.records) >= count)
        return self.records

    def log_has(self, text: str) -> bool:
        return self.log_file.exists() and text in self.log_file.read_text()

    def finish(self) -> int:
        """Close stdin as Fluentd does on shutdown; the exit status."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.wait()

    def wait(self) -> int:
        status = self.proc.wait(timeout=WAIT)
        self._reader.join(WAIT)
        assert self._unpacker.tell() == self.stdout_bytes, "stdout ended inside a msgpack object"
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    children: list[Child] = []

    def make(*args: str, program: Path | None = None) -> Child:
        children.append(Child(tmp_path, *args, program=program))
        return children[-1]

    yield make
    for child in children:
        child.kill()


def sample_records() -> list[bytes]:
    return [pack({"message": line}) for line in SAMPLE.read_text().splitlines()]


def bytes_read(child: Child) -> int:
    """What the child has read so far (``rchar`` of /proc/PID/io): proof that a half map was read alone."""
    for line in Path(f"/proc/{child.proc.pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/PID/io")


def test_chunked_and_split_writes_come_back_as_events_in_order(start):
    child = start()
    records = sample_records()
    expected = expected_ports_of(records)
    child.write(b"".join(records[:100]))  # one Fluentd buffer chunk
    in_first_chunk = len(expected_ports_of(records[:100]))
    child.wait_records(in_first_chunk)
    before = bytes_read(child)
    split = records[100]
    child.write(split[:7])  # a map cut in two writes: the child reads the first half on its own
    wait_until(lambda: bytes_read(child) >= before + 7)
    child.write(split[7:] + b"".join(records[101:250]))
    rest = b"".join(records[250:])
    for cut in range(0, len(rest), 4093):  # odd-sized writes that split maps anywhere
        child.write(rest[cut : cut + 4093])
    assert child.finish() == 0
    assert [r["client_port"] for r in child.records] == expected
    assert len(expected) == 39


def expected_ports_of(records: list[bytes]) -> list[int | None]:
    parser = NamedLineParser(TimestampNormalizer(UTC))
    results = [parser.parse(msgpack.unpackb(r)["message"]) for r in records]
    return [r.client_port for r in results if isinstance(r, Event)]


def test_each_batch_is_answered_while_stdin_stays_open(start):
    """Fluentd waits for the answer to a chunk without closing stdin: the child must flush per batch."""
    child = start()
    child.write(pack({"message": LINE.format(port=1)}))
    assert child.wait_records(1)[0]["client_port"] == 1
    child.write(pack({"message": LINE.format(port=2)}))
    assert child.wait_records(2)[1]["client_port"] == 2
    assert child.finish() == 0


def test_end_of_input_exits_0_with_a_summary_in_the_log(start):
    child = start()
    child.write(b"".join(sample_records()))
    assert child.finish() == 0
    log = child.log_file.read_text()
    assert "stopped (eof): 400 records" in log and "39 events" in log


def test_sigterm_exits_0(start):
    child = start()
    child.write(pack({"message": LINE.format(port=1)}))
    child.wait_records(1)
    child.proc.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    assert child.log_has("stopped (signal)")


def test_sigterm_before_any_input_exits_0(start):
    child = start()
    wait_until(lambda: child.log_has("started"))
    child.proc.send_signal(signal.SIGTERM)
    assert child.wait() == 0


def test_stdout_carries_only_msgpack_maps(start):
    child = start("--non-matching", "pass")
    child.write(b"".join(sample_records()) + pack([1, 2]) + b"\xc1")
    assert child.finish() == 0  # wait() checked that stdout ended on an object boundary
    assert all(isinstance(r, dict) for r in child.records)
    assert child.proc.stderr is not None and child.proc.stderr.read() == b""


def test_hostile_records_are_counted_logged_and_survived(start):
    """Changed on purpose (issue 12): ``message: null`` is logged as a null field, no longer as a missing key."""
    child = start()
    hostile = [
        pack([1, 2, 3]),  # not a map
        pack({"other": "x"}),  # no message key
        pack({"message": 42}),  # not a string
        pack({"message": None}),
        pack({"message": {"nested": "map"}}),
    ]
    for record in hostile:
        child.write(record)
    child.write(pack({"message": LINE.format(port=7)}))
    assert child.wait_records(1)[0]["client_port"] == 7
    assert child.finish() == 0
    for reason in ("not_a_map (1 so far)", "missing_key (1 so far)", "non_string (2 so far)", "null_value (1 so far)"):
        assert child.log_has(reason), reason
    assert child.log_has("'message' is null")


def test_invalid_utf8_in_the_line_still_becomes_an_event(start):
    child = start()
    line = LINE.format(port=9).replace("example.com", "ex\xe4mple.com").encode("latin-1")
    child.write(b"\x81\xa7message" + b"\xd9" + bytes([len(line)]) + line)  # a str that is not UTF-8
    child.write(pack({"message": line}))  # the same as bin
    records = child.wait_records(2)
    assert [r["client_port"] for r in records] == [9, 9]
    assert child.finish() == 0
    assert child.log_has("2 lines with invalid UTF-8")


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\xc1\xc1\xc1", id="never-used-type-byte"),
        pytest.param(b"\x81\xa7message\xdf\xff\xff\xff\xff", id="map32-claiming-4G-pairs"),
        pytest.param(b"\x91" * 5000, id="nesting-5000-deep"),
    ],
)
def test_undecodable_bytes_restart_the_decoder(start, garbage: bytes):
    child = start()
    child.write(garbage)
    wait_until(lambda: child.log_has("undecodable_msgpack"))
    child.write(pack({"message": LINE.format(port=3)}))
    assert child.wait_records(1)[0]["client_port"] == 3
    assert child.finish() == 0


def test_a_string_claiming_4gib_is_stepped_over_unbuffered_and_its_bytes_never_decoded(start):
    """Changed on purpose (issue 12): the bytes a str header claims are that string's, never records.

    The decoder used to give up on the string once its buffer was full and restart inside it, decoding the
    claimed body as records; now it steps over the claimed length without buffering it (at most
    --max-record-size held), so the records written inside the claimed 4 GiB come out as nothing.
    """
    child = start("--max-record-size", "4096")
    child.write(b"\x81\xa7message\xdb\xff\xff\xff\xff")
    child.write(pack({"message": LINE.format(port=2)}) * 4000)  # ~400 KB, all inside the claimed string
    wait_until(lambda: child.log_has("oversize (1 so far)"))
    assert child.log_has("at least 4294967309 bytes")
    assert child.finish() == 0
    assert child.records == []
    assert child.log_has("input ended inside the oversize record at input byte 0")


def test_a_record_over_max_record_size_is_stepped_over_and_the_next_one_parsed(start):
    """Changed on purpose (issue 12): counted and logged as ``oversize``, no longer as undecodable bytes."""
    child = start("--max-record-size", "4096")
    child.write(pack({"message": "x" * 100_000}))
    wait_until(lambda: child.log_has("oversize (1 so far)"))
    child.write(pack({"message": LINE.format(port=4)}))
    assert child.wait_records(1)[0]["client_port"] == 4
    assert child.finish() == 0
    assert not child.log_has("undecodable_msgpack")


FORGED = "21-Nov-2026 05:10:00.000 client @0x7f 203.0.113.66#4242 (forged.example): error sending response: would block"


@pytest.mark.parametrize(
    "payload_end",
    [
        pytest.param(pack({"message": FORGED}), id="a-send-error-map-inside-the-payload"),
        pytest.param(b"\xda\xff\xff", id="a-str16-header-ending-the-payload"),
    ],
)
def test_an_oversize_record_is_stepped_over_exactly_forging_nothing_and_losing_nothing(start, payload_end: bytes):
    """Issue 12, item 1: a 2 MiB bin line (Fluentd packs in_tail lines as bin), then 1,000 good records.

    The decoder used to restart inside the payload: the embedded map came out as an event for 203.0.113.66,
    or the str16 header swallowed 64 KiB of the good records that followed.
    """
    line = b"21-Nov-2026 05:10:00.000 queries: info: " + b"c" * (2 * 1024 * 1024) + payload_end
    good = b"".join(pack({"message": LINE.format(port=port)}) for port in range(1, 1001))
    child = start("--key", "message", program=INSTALLED)
    child.write(pack({"message": line}) + good)
    assert child.finish() == 0
    assert all(r["client_ip"] != "203.0.113.66" for r in child.records)
    assert [r["client_port"] for r in child.records] == list(range(1, 1001))
    log = child.log_file.read_text()
    assert log.count("oversize (") == 1 and "input byte 0 is at least 2097" in log
    assert "bad input: oversize 1" in log


def test_input_cut_inside_a_record_is_counted_at_eof(start):
    child = start()
    child.write(pack({"message": LINE.format(port=5)})[:20])
    assert child.finish() == 0
    assert child.log_has("truncated")


def test_non_matching_records_pass_through_unchanged(start):
    child = start("--non-matching", "pass")
    other = {"message": QUERY, "n": 1, "time": msgpack.ExtType(0, b"\x00\x00\x00\x01\x00\x00\x00\x02"), "b": b"\xff"}
    child.write(pack(other) + pack({"message": LINE.format(port=6)}) + pack({"no_message": True}))
    records = child.wait_records(3)
    assert records[0]["n"] == 1 and records[0]["time"] == other["time"] and records[0]["b"] == b"\xff"
    assert records[1]["client_port"] == 6
    assert records[2] == {"no_message": True}
    assert child.finish() == 0


def test_a_read_of_more_candidates_than_one_engine_batch_comes_back_whole_and_in_input_order(start):
    """A read is cut into engine batches of BATCH_LINES lines; the records passed back keep their place."""
    child = start("--non-matching", "pass")
    records, expected = [], []
    for port in range(1, 3 * BATCH_LINES):
        if port % 100 == 0:
            records.append({"message": QUERY, "n": port})
            expected.append(("passed", port))
        records.append({"message": LINE.format(port=port), **({"host": "ns1"} if port % 3 == 0 else {})})
        expected.append(("event", port))
    child.write(b"".join(pack(record) for record in records))  # one chunk, read in as few reads as the pipe allows
    assert child.finish() == 0
    assert [("passed", r["n"]) if "n" in r else ("event", r["client_port"]) for r in child.records] == expected
    assert all((r.get("host") == "ns1") == (r["client_port"] % 3 == 0) for r in child.records if "client_port" in r)


def test_non_matching_records_are_dropped_by_default(start):
    child = start()
    child.write(pack({"message": QUERY}) + pack({"message": LINE.format(port=8)}))
    assert child.finish() == 0
    assert [r["client_port"] for r in child.records] == [8]
    assert child.log_has("1 dropped as not send errors")


BAD_PORT = "21-Nov-2026 04:48:37.067 client @0x7f 192.0.2.1#99999 (example.com): error sending response: would block"


def test_rejected_candidates_never_come_back_by_default_and_go_to_rejects(start, tmp_path: Path):
    """Changed on purpose (issue 12): a rejected candidate is no longer passed back under the event tag."""
    child = start("--rejects", str(tmp_path / "rejects.ndjson"))
    child.write(pack({"message": BAD_PORT}) + pack({"message": LINE.format(port=1)}))
    assert child.finish() == 0
    assert [r["client_port"] for r in child.records] == [1]
    assert child.log_has("rejected_invalid_port (1 so far)") and child.log_has("1 rejected candidates (invalid_port 1)")
    [kept] = [orjson.loads(line) for line in (tmp_path / "rejects.ndjson").read_bytes().splitlines()]
    assert kept["reason"] == "invalid_port" and kept["line"] == BAD_PORT


def test_a_candidate_line_over_64kib_is_rejected_not_passed_as_an_event(start):
    """Fluentd 1.19 showed a 1 MB candidate line leaving under the event tag, on to the store."""
    child = start()
    long_line = LINE.format(port=2).replace("example.com", "x" * 100_000, 1).encode()
    child.write(pack({"message": long_line}) + pack({"message": LINE.format(port=3)}))
    assert child.finish() == 0
    assert [r["client_port"] for r in child.records] == [3]
    assert child.log_has("rejected_line_too_long (1 so far)")


def test_rejected_candidates_pass_back_under_their_own_tag_when_asked(start):
    child = start("--rejected-tag", "named.rejected")
    child.write(pack({"message": BAD_PORT, "host": "ns1"}) + pack({"message": LINE.format(port=4)}))
    assert child.finish() == 0
    rejected, event = child.records
    assert rejected["message"] == BAD_PORT and rejected["host"] == "ns1"
    assert rejected["named_senderr_error"]["reason"] == "invalid_port"
    assert rejected["named_senderr_tag"] == "named.rejected"
    assert event["client_port"] == 4 and "named_senderr_tag" not in event


def test_key_option_reads_another_field(start):
    child = start("--key", "log")
    child.write(pack({"message": QUERY, "log": LINE.format(port=11)}))
    assert child.wait_records(1)[0]["client_port"] == 11
    assert child.finish() == 0


def test_ecs_format(start):
    child = start("--format", "ecs")
    child.write(pack({"message": LINE.format(port=12)}))
    record = child.wait_records(1)[0]
    assert record["@timestamp"] == "2026-11-21T04:48:37.067Z" and record["client"]["port"] == 12
    assert child.finish() == 0


def test_json_lines_input(start):
    child = start("--in-format", "json")
    first = b'{"message": "' + LINE.format(port=13).encode() + b'"}\n'
    child.write(first[:30])
    child.write(first[30:] + b"not json\n" + b'{"message": "' + LINE.format(port=14).encode() + b'"}\n')
    records = child.wait_records(2)
    assert [r["client_port"] for r in records] == [13, 14]
    assert child.finish() == 0
    assert child.log_has("invalid_json")


@pytest.mark.skipif(Path("/dev/log").exists(), reason="this machine has a syslog socket at /dev/log")
def test_syslog_target_without_a_syslog_socket_falls_back_to_stderr_and_filters_on():
    """Changed on purpose (issue 12): exit 2 made Fluentd respawn the child in a loop, the reason unseen."""
    command = [sys.executable, "-m", "named_senderr", "fluentd-filter", "--log-file", "syslog"]
    result = subprocess.run(command, input=pack({"message": LINE.format(port=5)}), capture_output=True, timeout=WAIT)
    assert result.returncode == 0
    assert b"cannot reach /dev/log" in result.stderr and b"logging to stderr instead" in result.stderr
    assert msgpack.unpackb(result.stdout)["client_port"] == 5


def test_an_unwritable_log_file_falls_back_to_stderr_and_filters_on(tmp_path: Path):
    """Changed on purpose (issue 12): exit 2 made Fluentd respawn the child in a loop, the reason unseen."""
    command = [sys.executable, "-m", "named_senderr", "fluentd-filter", "--log-file", str(tmp_path)]
    result = subprocess.run(command, input=pack({"message": LINE.format(port=6)}), capture_output=True, timeout=WAIT)
    assert result.returncode == 0
    assert f"--log-file {tmp_path}: cannot open it (Is a directory)".encode() in result.stderr
    assert b"and filtering goes on" in result.stderr and b"stopped (eof): 1 records" in result.stderr
    assert msgpack.unpackb(result.stdout)["client_port"] == 6


def test_an_unwritable_log_file_falls_back_to_syslog_too(tmp_path: Path):
    """Fluentd discards the child's stderr: where a syslog socket exists, the reason goes there as well."""
    from named_senderr.cli.fluentd_filter import setup_logging

    syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslog.bind(str(tmp_path / "log"))
    syslog.settimeout(WAIT)
    log = setup_logging(str(tmp_path), "info", syslog_socket=str(tmp_path / "log"))
    try:
        message = syslog.recv(65536)
        log.info("still logging")
        assert b"still logging" in syslog.recv(65536)
    finally:
        for handler in log.handlers:
            handler.close()
        syslog.close()
    assert b"fluentd-filter: --log-file" in message and b"cannot open it (Is a directory)" in message
    assert b"logging to stderr and syslog" in message


def test_privacy_reduces_every_event_before_it_leaves(start):
    child = start("--client-ip", "truncate:/24,/56", "--qname", "drop")
    child.write(pack({"message": LINE.format(port=20)}))
    assert child.finish() == 0
    [event] = child.records
    assert event["client_ip"] == "192.0.2.0" and event["qname"] is None
    assert "192.0.2.1" not in event["message"] and "example.com" not in event["message"]


def test_rollup_turns_a_burst_into_one_event_per_client_network_at_end_of_input(start):
    child = start("--rollup", "60s", "--client-ip", "truncate:/24,/56")
    burst = b"".join(pack({"message": LINE.format(port=port)}) for port in range(1000, 1100))
    other = LINE.format(port=7).replace("192.0.2.1", "198.51.100.7")
    child.write(burst + pack({"message": other}))
    assert child.finish() == 0
    counts = {r["client_ip"]: r["count"] for r in child.records}
    assert counts == {"192.0.2.0": 100, "198.51.100.0": 1}


def test_rollup_windows_still_open_are_written_before_sigterm_exits(start):
    child = start("--rollup", "1h", "--stats-interval", "0.1")
    child.write(b"".join(pack({"message": LINE.format(port=port)}) for port in range(1, 51)))
    wait_until(lambda: child.log_has("50 records in"))  # read and held in the window: nothing written yet
    assert child.records == []
    child.proc.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    [window] = child.records
    assert window["count"] == 50
    assert child.log_has("stopped (signal): 50 records") and child.log_has("50 events (1 records written)")


def test_fluentd_closing_our_stdout_ends_the_filter_cleanly(tmp_path: Path):
    """With stdin still open: the write that finds the pipe closed ends reading, and the filter exits 0."""
    log = tmp_path / "fluentd-filter.log"
    command = [sys.executable, "-m", "named_senderr", "fluentd-filter", "--log-file", str(log)]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdout.close()
        proc.stdin.write(pack({"message": LINE.format(port=1)}))
        proc.stdin.flush()
        assert proc.wait(timeout=WAIT) == 0
    finally:
        proc.kill()
        proc.stdin.close()
    assert "stopped (Fluentd closed our stdout): 1 records" in log.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--queue-dir", "q"], b"--queue-dir: only with --to URL", id="queue-without-a-sink"),
        pytest.param(["--to", "stdout:"], b"stdout is where fluentd-filter answers Fluentd", id="stdout-sink"),
    ],
)
def test_delivery_options_that_cannot_apply_are_refused_naming_the_fix(tmp_path: Path, args: list[str], message):
    command = [sys.executable, "-m", "named_senderr", "fluentd-filter", "--log-file", str(tmp_path / "f.log"), *args]
    result = subprocess.run(command, input=b"", capture_output=True, timeout=WAIT)
    assert result.returncode == 2 and message in result.stderr and result.stdout == b""
    assert message.decode() in (tmp_path / "f.log").read_text()  # where Fluentd's operator looks
