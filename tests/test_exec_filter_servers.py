"""``fluentd-filter --to``: Fluentd's records through the engine into a real Elasticsearch, checked by count.

Each test writes into its own index. The child is driven as out_exec_filter drives it (msgpack on stdin,
the lines as bin as in_tail packs them); with ``--to`` its stdout carries only the records passed back.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import msgpack
import pytest

from named_senderr.cli import main
from tests.polling import wait_until
from tests.test_exec_filter import SAMPLE, WAIT

pytestmark = pytest.mark.servers

BAD_PORT = b"21-Nov-2026 04:48:37.067 client @0x7f 192.0.2.1#99999 (example.com): error sending response: would block"
SAMPLE_EVENTS = 39  # send errors in the bundled sample (tests/test_exec_filter.py)


def new_index(base: str) -> tuple[str, str]:
    """A fresh index with the template installed: (sink URL, index name)."""
    index = f"named-senderr-filter-{uuid.uuid4().hex[:8]}"
    url = f"elasticsearch+{base}/{index}"
    assert main(["setup", "elasticsearch", "--to", url]) == 0
    return url, index


def records() -> bytes:
    lines = [*SAMPLE.read_bytes().splitlines(), BAD_PORT]
    return b"".join(msgpack.packb({"message": line}, use_bin_type=True) for line in lines)


def filter_to(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    log = tmp_path / "filter.log"
    command = [sys.executable, "-m", "named_senderr", "fluentd-filter", "--to", url, "--log-file", str(log)]
    command += ["--dead-letter", str(tmp_path / "dead.ndjson"), *args]
    return subprocess.run(command, input=records(), capture_output=True, timeout=4 * WAIT, check=False)


def documents(base: str, index: str) -> list[dict]:
    httpx.post(f"{base}/{index}/_refresh").raise_for_status()
    reply = httpx.post(f"{base}/{index}/_search", json={"size": 1000, "track_total_hits": True})
    reply.raise_for_status()
    return [hit["_source"] for hit in reply.json()["hits"]["hits"]]


def test_every_event_reaches_elasticsearch_once_reduced_and_rejects_stay_out(elasticsearch_url: str, tmp_path: Path):
    url, index = new_index(elasticsearch_url)
    done = filter_to(tmp_path, url, "--client-ip", "truncate:/24,/56", "--rejects", str(tmp_path / "rejects.ndjson"))
    assert done.returncode == 0 and done.stdout == b""
    docs = documents(elasticsearch_url, index)
    assert len(docs) == SAMPLE_EVENTS
    assert all(doc["client"]["ip"].endswith((".0", "::")) for doc in docs if "client" in doc)
    assert "99999" not in str(docs) and b"invalid_port" in (tmp_path / "rejects.ndjson").read_bytes()
    log = (tmp_path / "filter.log").read_text()
    assert "stopped (eof): 401 records" in log and f"sent {SAMPLE_EVENTS} (0 already stored)" in log


def test_through_the_disk_queue_with_rollup_the_windows_are_stored_and_other_records_come_back(
    elasticsearch_url: str, tmp_path: Path
):
    url, index = new_index(elasticsearch_url)
    queue = tmp_path / "queue"
    done = filter_to(tmp_path, url, "--queue-dir", str(queue), "--rollup", "1h", "--non-matching", "pass")
    assert done.returncode == 0
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(done.stdout)
    passed = list(unpacker)
    assert len(passed) == 400 - SAMPLE_EVENTS and all("reason" not in record for record in passed)
    docs = documents(elasticsearch_url, index)
    assert sum(doc["bind"]["rollup"]["count"] for doc in docs) == SAMPLE_EVENTS
    assert len(docs) < SAMPLE_EVENTS  # windows, not lines


def test_metrics_count_what_the_running_filter_read_and_stored(elasticsearch_url: str, tmp_path: Path):
    url, index = new_index(elasticsearch_url)
    log = tmp_path / "filter.log"
    command = [sys.executable, "-m", "named_senderr", "fluentd-filter", "--to", url, "--log-file", str(log),
               "--dead-letter", str(tmp_path / "dead.ndjson"), "--metrics", "127.0.0.1:0"]  # fmt: skip
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    try:
        wait_until(lambda: log.exists() and "metrics on http" in log.read_text())
        metrics = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", log.read_text()).group(1)  # type: ignore[union-attr]
        proc.stdin.write(records())
        proc.stdin.flush()  # stdin stays open: Fluentd's child runs on
        sent = f'named_senderr_events_sent_total{{sink="{url}"}} {SAMPLE_EVENTS}'
        wait_until(lambda: sent in httpx.get(f"{metrics}/metrics").text, timeout=2 * WAIT)
        text = httpx.get(f"{metrics}/metrics").text
        assert "named_senderr_lines_read_total 401" in text and "named_senderr_events_rejected_total 1" in text
        assert httpx.get(f"{metrics}/healthz").status_code == 200
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=WAIT) == 0
    assert len(documents(elasticsearch_url, index)) == SAMPLE_EVENTS
