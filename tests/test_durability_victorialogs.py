"""kill -9 mid-stream into a real VictoriaLogs, then restart: every event stored exactly once.

VictoriaLogs keeps every copy it is sent, so nothing on the server absorbs the batch the killed run
had sent but not yet acknowledged in its disk queue: only the restarted run's question (``drop_stored``:
which of these ids do you hold?) keeps it from being stored twice.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.faults import FaultServer, Forward, Reply, Request
from tests.test_durability import generate, poll, start_follow, terminate, unacked_segments
from tests.test_ship_victorialogs import count, logsql, new_job

pytestmark = pytest.mark.servers


def finish(tmp_path: Path, url: str, log: Path, base: str, job: str, total: int) -> None:
    """Start again, let it drain, stop it: exactly ``total`` entries, nothing left in the queue."""
    second = start_follow(tmp_path, url, log)
    final = poll(lambda: count(base, job), lambda n: n >= total, timeout=180, interval=0.3)
    assert terminate(second) == 0
    assert final == total and count(base, job) == total
    assert unacked_segments(tmp_path / "queue") == []


def test_kill_9_mid_stream_then_restart_leaves_every_event_once_in_victorialogs(
    victorialogs_url: str, tmp_path: Path
) -> None:
    total = 100_000
    log = generate(tmp_path / "named.log", total, seed=11)
    job = new_job()
    url = f"victorialogs+{victorialogs_url}?job={job}"
    first = start_follow(tmp_path, url, log)
    poll(lambda: count(victorialogs_url, job), lambda n: n > 0, timeout=60, interval=0.05)
    first.kill()  # kill -9: no flush, no cursor saved at exit
    first.wait(10)
    partial = count(victorialogs_url, job)
    assert 0 < partial < total, "the kill must land mid-stream"
    finish(tmp_path, url, log, victorialogs_url, job, total)
    distinct = logsql(victorialogs_url, f'{{job="{job}"}} | uniq by (event.id) | stats count() n')
    assert distinct == [{"n": str(total)}]


def test_kill_9_while_a_stored_batch_waits_for_its_answer_then_restart_stores_it_once(
    victorialogs_url: str, tmp_path: Path
) -> None:
    """The worst moment, made certain: the third batch is in VictoriaLogs, its 200 not yet back, at the kill."""
    total = 5_000
    log = generate(tmp_path / "named.log", total, seed=12)
    job = new_job()
    inserts: list[int] = []
    held, killed = threading.Event(), threading.Event()

    def plan(request: Request, n: int) -> Reply | Forward:
        if not request.path.startswith("/insert"):
            return Forward(victorialogs_url)
        inserts.append(n)
        if len(inserts) == 3:  # store it for real, then keep the answer until the shipper is dead
            upstream = f"{victorialogs_url}{request.path}"
            headers = {"Content-Type": request.headers["content-type"]}
            httpx.post(upstream, content=request.body, headers=headers).raise_for_status()
            held.set()
            killed.wait(30)
            return Reply(200)
        return Forward(victorialogs_url)

    with FaultServer(plan) as proxy:  # both runs ship through it: the queue's cursor is kept per sink URL
        url = f"victorialogs+{proxy.url}?job={job}"
        first = start_follow(tmp_path, url, log)
        assert held.wait(60), "the third batch never came"
        first.kill()
        first.wait(10)
        killed.set()
        assert count(victorialogs_url, job) == 3 * 500, "three batches stored, two of them acknowledged"
        finish(tmp_path, url, log, victorialogs_url, job, total)
    assert "sent 4,000 (500 already stored)" in (tmp_path / "ship.stderr").read_text()
