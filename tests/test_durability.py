"""At-least-once through the disk queue, exactly-once in the stores: crashes, outages, throttling, shutdown.

Each test runs the real CLI against the real Elasticsearch or VictoriaLogs (through its Loki push endpoint)
started by the suite and counts what the store holds where a user would count it. ``ship --follow`` keeps its
tail checkpoint in the queue directory and moves it only after the queue's fsync, so a ``kill -9`` loses
nothing; Elasticsearch's deterministic ids absorb what is sent twice, VictoriaLogs keeps it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from named_senderr.cli import main
from tests import servers
from tests.faults import FaultServer, Forward, Plan, Reply, Request
from tests.test_ship_servers import count, logsql, new_index

pytestmark = pytest.mark.servers
ROOT = Path(__file__).resolve().parent.parent


def generate(path: Path, lines: int, seed: int = 53) -> Path:
    subprocess.run([sys.executable, str(ROOT / "bench" / "generate_log.py"), "--lines", str(lines),
                    "--error-rate", "1", "--seed", str(seed), "-o", str(path)], check=True)  # fmt: skip
    return path


def settings(tmp_path: Path, max_events: int = 500) -> Path:
    """Small batches (so a kill lands mid-stream) and quick, patient retries."""
    path = tmp_path / "ship.toml"
    path.write_text(
        f"[batch]\nmax_events = {max_events}\nmax_wait = 0.2\n"
        "[retry]\ninitial_backoff = 0.05\nmax_backoff = 0.5\nmax_attempts = 1000\ndeadline = 600\n"
    )
    return path


def start_follow(tmp_path: Path, url: str, log: Path, *extra: str, batch: int = 500) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "named_senderr", "ship", "--follow", str(log), "--read-from-head",
           "--queue-dir", str(tmp_path / "queue"), "--to", url, "--config", str(settings(tmp_path, batch)),
           "--timezone", "UTC", "--no-progress", "--dead-letter", str(tmp_path / "dead.ndjson"), *extra]  # fmt: skip
    stderr = open(tmp_path / "ship.stderr", "ab")  # noqa: SIM115 - the child holds it; read after
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, cwd=tmp_path)


def poll(what: Callable[[], int], done: Callable[[int], bool], timeout: float, interval: float = 0.1) -> int:
    """Bounded: the last value seen when ``done`` or the deadline came."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def terminate(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout)


def unacked_segments(queue: Path) -> list[Path]:
    return sorted(queue.glob("*.seg"))


def es_count(base: str, index: str) -> int:
    """Documents in ``index``: 0 before its first document created it, -1 while the server is down."""
    try:
        return count(base, index)
    except httpx.HTTPStatusError as exc:
        return 0 if exc.response.status_code == 404 else -1
    except httpx.HTTPError:
        return -1


def test_kill_9_mid_stream_then_restart_leaves_every_event_once_in_elasticsearch(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    total = 100_000
    log = generate(tmp_path / "named.log", total)
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    index = url.rsplit("/", 1)[1]
    first = start_follow(tmp_path, url, log)
    partial = poll(lambda: es_count(elasticsearch_url, index), lambda n: n > 0, timeout=60, interval=0.05)
    first.kill()  # kill -9: no flush, no cursor saved at exit
    first.wait(10)
    partial = es_count(elasticsearch_url, index)
    assert 0 < partial < total, "the kill must land mid-stream"
    second = start_follow(tmp_path, url, log)
    final = poll(lambda: es_count(elasticsearch_url, index), lambda n: n >= total, timeout=180, interval=0.5)
    assert terminate(second) == 0
    assert final == total and es_count(elasticsearch_url, index) == total
    assert unacked_segments(tmp_path / "queue") == []


def test_kill_9_mid_stream_then_restart_loses_no_entry_pushed_to_victorialogs_as_loki(
    victorialogs_url: str, tmp_path: Path
) -> None:
    """Nothing is lost; the batch in flight at the kill may be stored twice, and only that one.

    The Loki sink asks Loki's query API what it kept before a replay (tested on Loki-shaped answers in
    test_loki_stored.py); VictoriaLogs serves no Loki query API and does not deduplicate, so the replayed batch
    (at most one: the consumer acknowledges batch by batch) is sent again unasked.
    """
    total, batch = 30_000, 100
    log = generate(tmp_path / "named.log", total, seed=7)
    job = f"test-{uuid.uuid4().hex[:8]}"
    url = f"loki+{victorialogs_url}/insert?job={job}"

    def stored() -> dict[str, int]:
        """Entries, and distinct events among them (each line of the one input file has its own offset)."""
        rows = logsql(victorialogs_url, f'{{job="{job}"}} | stats count() entries, count_uniq(offset) events')
        return {name: int(value) for name, value in rows[0].items()}

    first = start_follow(tmp_path, url, log, batch=batch)
    poll(lambda: stored()["entries"], lambda n: n > 0, timeout=60, interval=0.05)
    first.kill()
    first.wait(10)
    partial = stored()["entries"]
    assert 0 < partial < total, "the kill must land mid-stream"
    second = start_follow(tmp_path, url, log, batch=batch)
    poll(lambda: stored()["events"], lambda n: n >= total, timeout=180, interval=0.5)
    assert terminate(second) == 0
    time.sleep(1)  # bounded settle: every entry sent is searchable by now
    final = stored()
    assert final["events"] == total and total <= final["entries"] <= total + batch, final
    assert unacked_segments(tmp_path / "queue") == []


def test_sigterm_exits_0_keeps_the_unsent_events_and_the_next_start_drains_them(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    total = 3_000
    log = generate(tmp_path / "named.log", total)
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    index = url.rsplit("/", 1)[1]
    down = {"now": True}
    plan = lambda r, n: Reply(503, b"unavailable") if down["now"] else Forward(elasticsearch_url)  # noqa: E731
    with FaultServer(plan) as proxy:
        proxy_url = f"elasticsearch+{proxy.url}/{index}"
        first = start_follow(tmp_path, proxy_url, log, "--shutdown-timeout", "1")
        poll(lambda: len(proxy.requests), lambda n: n >= 3, timeout=30)
        started = time.monotonic()
        assert terminate(first) == 0 and time.monotonic() - started < 10
        assert unacked_segments(tmp_path / "queue") and es_count(elasticsearch_url, index) == 0
        assert "wait in the queue" in (tmp_path / "ship.stderr").read_text()
        down["now"] = False
        log.write_bytes(b"")  # the second run finds nothing new to read: only the queue holds the events
        second = start_follow(tmp_path, proxy_url, log)
        final = poll(lambda: es_count(elasticsearch_url, index), lambda n: n >= total, timeout=60, interval=0.3)
        assert terminate(second) == 0
    assert final == total and unacked_segments(tmp_path / "queue") == []


@pytest.fixture
def private_elasticsearch() -> servers.Server:
    """A server of this test's own, to stop and start again on the same port and data."""
    try:
        server = servers.start("elasticsearch")
    except servers.ServerError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"elasticsearch unavailable: {exc}", pytrace=False)
        pytest.skip(f"elasticsearch unavailable: {exc}")
    yield server
    server.stop()


def test_a_store_outage_is_bridged_by_the_queue_and_drained_after(private_elasticsearch, tmp_path: Path) -> None:
    server = private_elasticsearch
    log = generate(tmp_path / "named.log", 2_000)
    url = new_index("elasticsearch", server.url, tmp_path)
    index = url.rsplit("/", 1)[1]
    shipper = start_follow(tmp_path, url, log, "--metrics", "127.0.0.1:0")
    assert poll(lambda: es_count(server.url, index), lambda n: n >= 2_000, timeout=60) == 2_000
    server.halt()
    more = generate(tmp_path / "more.log", 3_000, seed=99).read_bytes()
    with open(log, "ab") as handle:
        handle.write(more)
    queue = tmp_path / "queue"
    poll(lambda: len(unacked_segments(queue)), lambda n: n > 0, timeout=30)
    assert shipper.poll() is None and unacked_segments(queue), "the events wait in the queue during the outage"
    server.resume()
    final = poll(lambda: es_count(server.url, index), lambda n: n >= 5_000, timeout=120, interval=0.5)
    poll(lambda: len(unacked_segments(queue)), lambda n: n == 0, timeout=30)
    assert terminate(shipper) == 0
    assert final == 5_000 and es_count(server.url, index) == 5_000
    cursors = orjson.loads((queue / "cursors.json").read_bytes())["cursors"]
    assert unacked_segments(queue) == [] and list(cursors) == [url]


def storm(upstream: str, index: str, refused: list[int]) -> Plan:
    """Four bulk requests refused whole with 429, three half stored (odd items 429), then the real server.

    ``refused`` gets the number of items answered 429, request by request: each is retried once.
    """

    def plan(request: Request, n: int) -> Reply | Forward:
        items = request.body.splitlines(keepends=True)
        if n < 4:  # a storm: the whole batch refused
            refused.append(len(items) // 2)
            return Reply(429, b'{"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}')
        if n < 7:  # partial failure: odd items refused, even ones really stored
            return half_stored(items)
        return Forward(upstream)

    def half_stored(lines: list[bytes]) -> Reply:
        pairs = [lines[i] + lines[i + 1] for i in range(0, len(lines), 2)]
        even = b"".join(pairs[0::2])
        answered = httpx.post(f"{upstream}/{index}/_bulk", content=even,
                              headers={"Content-Type": "application/x-ndjson"}).json()  # fmt: skip
        statuses = iter(next(iter(item.values()))["status"] for item in answered["items"])
        answer = []
        for i in range(len(pairs)):
            status = next(statuses) if i % 2 == 0 else 429
            error = {} if status < 300 else {"error": {"type": "es_rejected_execution_exception", "reason": "busy"}}
            answer.append({"create": {"status": status, **error}})
        refused.append(len(pairs) // 2)
        body = orjson.dumps({"errors": True, "items": answer})
        return Reply(200, body, {"Content-Type": "application/json"})

    return plan


def test_429_storm_and_partial_bulk_failures_lose_nothing_and_retries_are_counted_exactly(
    elasticsearch_url: str, tmp_path: Path, capsys
) -> None:
    total = 5_000
    log = generate(tmp_path / "named.log", total)
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    index = url.rsplit("/", 1)[1]
    refused: list[int] = []  # items answered 429, hence retried, request by request
    with FaultServer(storm(elasticsearch_url, index, refused)) as proxy:
        args = ["ship", str(log), "--to", f"elasticsearch+{proxy.url}/{index}", "--queue-dir", str(tmp_path / "q"),
                "--config", str(settings(tmp_path, 1000)), "--timezone", "UTC", "--no-progress",
                "--dead-letter", str(tmp_path / "dead.ndjson")]  # fmt: skip
        assert main(args) == 0
    err = capsys.readouterr().err
    assert es_count(elasticsearch_url, index) == total
    assert f"sent {total:,} (0 already stored), retried {sum(refused):,}, dead-lettered 0" in err
    assert 0 < sum(refused) <= 4 * 1000 + 3 * 500  # bounded: each refusal retried once, nothing more
