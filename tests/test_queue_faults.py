"""The disk queue under the faults real hosts have: a full disk, and damaged bytes in a segment.

Real processes (``serve``, ``ship --follow``), a real full disk (a small tmpfs the test mounts; root
only, skipped elsewhere) and the real Elasticsearch: every count is taken where a user would take it.
"""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import msgpack
import pytest

from named_senderr.queue.disk import decode_records
from tests.faults import FaultServer, holding_bulk
from tests.polling import wait_until
from tests.test_durability import es_count, generate, poll
from tests.test_forward_serve_cli import Serve
from tests.test_ship_servers import new_index, search
from tests.tmpfs import fill, small_disk

pytestmark = pytest.mark.servers
ENTRIES = 2000  # per Forward frame, as Fluent Bit sends them
STORED = 120.0  # seconds for the store to hold what was acknowledged


def frame(chunk: str, network: str, number: int) -> bytes:
    """A Forward-mode frame of ENTRIES distinct send errors from ``network`` (a /24), asking for an ack."""
    lines = [
        f"21-Nov-2026 04:48:37.067 client @0x7f {network}.{number % 250 + 1}#{1024 + i} (f{number}.example): "
        "error sending response: would block"
        for i in range(ENTRIES)
    ]
    time = msgpack.ExtType(0, struct.pack(">II", 1_700_000_000, 0))
    return msgpack.packb(["named", [[time, {"log": line}] for line in lines], {"chunk": chunk}])


def send(port: int, data: bytes, chunk: str) -> bool:
    """One frame on a fresh connection: True once acknowledged, False when serve closed it unacknowledged."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(data)
        unpacker = msgpack.Unpacker(raw=False)
        while received := sock.recv(4096):
            unpacker.feed(received)
            for answer in unpacker:
                return answer == {"ack": chunk}
    return False


def in_network(base: str, index: str, cidr: str) -> int:
    body = {"size": 0, "track_total_hits": True, "query": {"term": {"client.ip": cidr}}}
    return search(base, index, body)["hits"]["total"]["value"]


def metrics(url: str) -> dict[str, float]:
    """The unlabelled samples of /metrics by name."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    return {name: float(value) for name, value in re.findall(r"^(\w+) (\S+)$", text, re.M)}


def metrics_url(stderr: str) -> str:
    found = re.search(r"metrics on (http://127\.0\.0\.1:\d+)", stderr)
    assert found, stderr
    return found.group(1)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def test_serve_on_a_full_disk_stores_every_acknowledged_chunk_and_never_a_refused_one(
    elasticsearch_url: str, tmp_path: Path, serve: list[Serve]
) -> None:
    """A chunk the full disk takes in part is cut back whole: not stored later, and the chunks after it are."""
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    index = url.rsplit("/", 1)[1]
    with small_disk(tmp_path / "disk", "16m") as disk:
        serve.append(Serve("--to", url, "--queue-dir", str(disk / "queue")))
        port = serve[0].port
        assert all(send(port, frame(f"a{n}", "192.0.2", n), f"a{n}") for n in range(2))
        assert poll(lambda: es_count(elasticsearch_url, index), lambda n: n >= 2 * ENTRIES, STORED) == 2 * ENTRIES
        ballast = fill(disk, leave=64 * 1024)  # less than a chunk: the disk takes part of the next one
        refused = [send(port, frame(f"r{n}", "198.51.100", n), f"r{n}") for n in range(5)]  # never sent again
        ballast.unlink()
        acked = [send(port, frame(f"b{n}", "192.0.2", 10 + n), f"b{n}") for n in range(5)]
        assert refused == [False] * 5 and acked == [True] * 5
        total = 7 * ENTRIES
        assert poll(lambda: es_count(elasticsearch_url, index), lambda n: n >= total, STORED) == total
        assert serve[0].stop() == 0
        serve.append(Serve("--to", url, "--queue-dir", str(disk / "queue")))  # a restart finds nothing left
        assert serve[1].stop() == 0
        assert "sent 0" in serve[1].stderr and "the rest stays queued" not in serve[1].stderr
    assert in_network(elasticsearch_url, index, "192.0.2.0/24") == total  # acknowledged: all stored, lost 0
    assert in_network(elasticsearch_url, index, "198.51.100.0/24") == 0  # refused: none stored


def test_serve_on_a_full_disk_withholds_acks_in_bounded_memory_and_resumes_by_itself(
    elasticsearch_url: str, tmp_path: Path, serve: list[Serve]
) -> None:
    url_index = new_index("elasticsearch", elasticsearch_url, tmp_path).rsplit("/", 1)[1]
    gate = threading.Event()

    with FaultServer(holding_bulk(gate, elasticsearch_url, 90)) as proxy, small_disk(tmp_path / "disk", "16m") as disk:
        url = f"elasticsearch+{proxy.url}/{url_index}?timeout=120"
        serve.append(Serve("--to", url, "--queue-dir", str(disk / "queue"), "--metrics", "127.0.0.1:0"))
        process, port = serve[0], serve[0].port
        endpoint = metrics_url(process.stderr)
        assert send(port, frame("a0", "192.0.2", 0), "a0")  # queued; its delivery hangs at the gate
        ballast = fill(disk)
        before = peak_rss_mb(process.proc.pid)
        refused = [send(port, frame(f"r{n}", "198.51.100", n), f"r{n}") for n in range(150)]
        peak = peak_rss_mb(process.proc.pid)
        during = metrics(endpoint)
        gate.set()  # the store takes a0 now: its cursor save meets the full disk
        assert poll(lambda: es_count(elasticsearch_url, url_index), lambda n: n >= ENTRIES, STORED) == ENTRIES
        ballast.unlink()  # space returns: nothing is restarted
        acked = [send(port, frame(f"b{n}", "192.0.2", 10 + n), f"b{n}") for n in range(3)]
        total = 4 * ENTRIES
        assert poll(lambda: es_count(elasticsearch_url, url_index), lambda n: n >= total, STORED) == total
        after = metrics(endpoint)
        assert process.stop() == 0
    print(f"serve peak RSS: {before:.0f} MB before the disk-full attack, {peak:.0f} MB after 150 refused frames")
    assert refused == [False] * 150 and acked == [True] * 3
    assert peak - before < 50, "memory must not grow with the refused frames"
    assert during["named_senderr_queue_writable"] == 0 and during["named_senderr_queue_write_failures_total"] == 150
    assert during["named_senderr_forward_unacked_total"] == 150
    assert after["named_senderr_queue_writable"] == 1 and after["named_senderr_forward_acks_total"] == 4
    log = process.stderr
    assert log.count("cannot write the queue: No space left on device; free space or move --queue-dir") == 1
    assert log.count("frame not acknowledged") == 1 and log.count("writable again") == 1  # once, not per frame
    assert "cannot save the read cursors (No space left on device)" in log and "read cursors saved again" in log
    assert in_network(elasticsearch_url, url_index, "192.0.2.0/24") == total
    assert in_network(elasticsearch_url, url_index, "198.51.100.0/24") == 0


def follow(tmp_path: Path, log: Path, queue: Path, url: str, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "named_senderr", "ship", "--follow", str(log), "--read-from-head",
           "--queue-dir", str(queue), "--to", url, "--timezone", "UTC", "--no-progress", "--shutdown-timeout", "1",
           "--dead-letter", str(tmp_path / "dead.ndjson"), *extra]  # fmt: skip
    stderr = open(tmp_path / "ship.stderr", "wb")  # noqa: SIM115 - the child holds it; read after
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr)


def stderr_of(tmp_path: Path) -> str:
    return (tmp_path / "ship.stderr").read_text()


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(30)


def touched(segment: Path, start: int, width: int) -> tuple[int, int, int]:
    """(records, their first byte, their bytes) of ``segment`` that the bytes start..start+width overlap."""
    records, _ = decode_records(segment.read_bytes())
    spans, offset = [], 0
    for record in records:
        spans.append((offset, offset + 8 + len(record)))
        offset = spans[-1][1]
    hit = [(a, b) for a, b in spans if a < start + width and b > start]
    return len(hit), hit[0][0], sum(b - a for a, b in hit)


@pytest.mark.parametrize("where", ["middle", "last"])
def test_flipped_bytes_in_a_segment_cost_only_the_records_they_touched_and_are_reported_where(
    elasticsearch_url: str, tmp_path: Path, where: str
) -> None:
    total = 20_000
    log = generate(tmp_path / "named.log", total)
    queue = tmp_path / "queue"
    down = follow(tmp_path, log, queue, "elasticsearch+http://127.0.0.1:1/idx", "--queue-max-bytes", str(32 << 20),
                  "--metrics", "127.0.0.1:0")  # fmt: skip
    wait_until(lambda: "metrics on" in stderr_of(tmp_path), timeout=30)
    endpoint = metrics_url(stderr_of(tmp_path))
    wait_until(lambda: metrics(endpoint)["named_senderr_events_queued_total"] == total, timeout=60)
    assert stop(down) == 0  # nothing was stored: all 20,000 wait in the queue
    segments = sorted(queue.glob("*.seg"))
    assert len(segments) >= 3
    segment = segments[1] if where == "middle" else segments[-1]
    start = segment.stat().st_size // 2
    lost, first, size = touched(segment, start, 16)
    data = bytearray(segment.read_bytes())
    data[start : start + 16] = bytes(b ^ 0xFF for b in data[start : start + 16])
    segment.write_bytes(bytes(data))
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    up = follow(tmp_path, log, queue, url)
    stored = poll(lambda: es_count(elasticsearch_url, url.rsplit("/", 1)[1]), lambda n: n >= total - lost, STORED)
    status = stop(up)
    report = stderr_of(tmp_path)
    print(f"{where} segment: {lost} of {total:,} events lost to 16 flipped bytes, {stored:,} stored")
    assert 1 <= lost <= 2 and stored == total - lost
    assert status == 1  # events were lost to damage: not a plain success
    assert (
        f"queue {queue}: segment {segment.name}, offset {first:,}: skipped {size:,} damaged bytes" in report
        or f"queue {queue}: segment {segment.name}, offset {first:,}: cut {size:,} damaged bytes" in report
    )
    assert "never acknowledged" not in report and f"{size:,} damaged byte(s) of the queue skipped or cut" in report


def collect(process: subprocess.Popen[bytes], lines: list[bytes]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)


def test_ship_follow_on_a_full_disk_waits_with_one_message_and_resumes_when_space_returns(tmp_path: Path) -> None:
    first, more = 2_000, 3_000
    log = generate(tmp_path / "named.log", first)
    with small_disk(tmp_path / "disk", "8m") as disk:
        shipper = follow(tmp_path, log, disk / "queue", "stdout:?format=flat")
        lines: list[bytes] = []
        threading.Thread(target=collect, args=(shipper, lines), daemon=True).start()
        wait_until(lambda: len(lines) == first, timeout=60)
        ballast = fill(disk)
        with open(log, "ab") as handle:
            handle.write(generate(tmp_path / "more.log", more, seed=9).read_bytes())
        wait_until(lambda: "cannot write the queue" in stderr_of(tmp_path), timeout=30)
        assert shipper.poll() is None and len(lines) == first  # waiting, not exiting
        ballast.unlink()
        wait_until(lambda: len(lines) == first + more, timeout=60)
        assert stop(shipper) == 0
    report = stderr_of(tmp_path)
    assert report.count("cannot write the queue: No space left on device") == 1 and "writable again" in report
    assert "Traceback" not in report
