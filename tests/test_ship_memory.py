"""ship's memory stays flat in the size of its input, in the process users run.

``named-senderr`` run as a command tunes the cyclic collector (cli.collect_less_often), so what a
reference cycle holds stays until that rare collection: only a whole process shows it. httpx's
response and its stream form such a cycle around the request and its body, which once kept every
bulk body sent (ship's peak memory grew about 1.3 KB an event: 319 MB for 200,000, 798 MB for 600,000).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import uuid
from pathlib import Path

from named_senderr.settings.loading import sink_from_url
from named_senderr.sinks.http import HttpClient
from tests.faults import FaultServer, Reply
from tests.test_backpressure import generated
from tests.test_ship_victorialogs import count


def finished_peak_rss_mb(argv: list[str]) -> float:
    """The peak resident memory of a whole ``argv`` process, from the kernel; exits 0 or the test fails."""
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    stderr = child.stderr.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    child.stderr.close()
    assert os.waitstatus_to_exitcode(status) == 0, stderr
    return usage.ru_maxrss / 1024


def ship_rss(victorialogs_url: str, log: Path) -> tuple[float, str]:
    job = f"memory-{uuid.uuid4().hex[:8]}"
    url = f"victorialogs+{victorialogs_url}?job={job}"
    ship = [sys.executable, "-m", "named_senderr", "ship", str(log), "--timezone", "UTC", "--no-progress"]
    return finished_peak_rss_mb([*ship, "--to", url]), job


def test_shipping_four_times_the_events_takes_no_more_memory(victorialogs_url: str, tmp_path: Path) -> None:
    (tmp_path / "small").mkdir()
    (tmp_path / "large").mkdir()
    small, large = generated(tmp_path / "small", 20_000), generated(tmp_path / "large", 80_000)
    small_mb, _ = ship_rss(victorialogs_url, small)
    large_mb, job = ship_rss(victorialogs_url, large)
    assert count(victorialogs_url, job) == 80_000
    # 60,000 more events held would be about 80 MB more
    assert large_mb - small_mb < 20, f"peak RSS {small_mb:.0f} MB for 20,000 events, {large_mb:.0f} MB for 80,000"


def test_a_request_body_is_freed_as_soon_as_its_answer_is_read() -> None:
    gc.disable()
    try:
        with FaultServer(lambda request, n: Reply(200, b'{"errors":false}'), record=False) as server:
            client = HttpClient(sink_from_url(f"elasticsearch+{server.url}/memory", {}, "test", None))
            body = b"x" * 1_000_000
            reply = client.post("/memory/_bulk", body, "application/x-ndjson")
            client.close()
        assert reply.status == 200
        assert sys.getrefcount(body) == 2, "something still refers to the body: only a cyclic collection frees it"
    finally:
        gc.enable()
