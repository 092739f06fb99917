"""A Kafka worker's memory stays flat in the length of its topic, in the process users run.

librdkafka prefetches into the consumer's local queue until it holds ``queued.min.messages``
records (100,000 by default) or ``queued.max.messages.kbytes`` (64 MiB): a worker reading a
backlog grew about 630 bytes a record it had not yet taken (75 MB peak for 20,000 send
errors, 113 MB for 80,000, 138 MB for 320,000) although it takes 2,000 at a time.
"""

from __future__ import annotations

from pathlib import Path

from tests.kafka_workers import by_host, produce, start_worker, worker_config
from tests.polling import wait_until
from tests.servers.kafka import new_topic
from tests.test_backpressure import generated
from tests.test_durability import terminate
from tests.test_queue_faults import peak_rss_mb


def worker_rss(kafka_bootstrap: str, tmp_path: Path, events: int) -> float:
    """A worker's peak memory once it printed every event of a topic of ``events`` send errors."""
    lines = generated(tmp_path, events).read_bytes().splitlines()
    topic = new_topic(kafka_bootstrap, 1)
    produce(kafka_bootstrap, topic, by_host(lines, 1))
    config = worker_config(tmp_path / "worker.toml", kafka_bootstrap, topic, "memory", "stdout:")
    worker = start_worker(config, "worker")
    try:
        printed = tmp_path / "worker.stdout"
        wait_until(lambda: printed.read_bytes().count(b"\n") == events, timeout=60)
        peak = peak_rss_mb(worker.pid)
    finally:
        assert terminate(worker) == 0, (tmp_path / "worker.stderr").read_text()
    return peak


def test_a_worker_reading_four_times_the_backlog_takes_no_more_memory(kafka_bootstrap: str, tmp_path: Path) -> None:
    (tmp_path / "small").mkdir()
    (tmp_path / "large").mkdir()
    small_mb = worker_rss(kafka_bootstrap, tmp_path / "small", 20_000)
    large_mb = worker_rss(kafka_bootstrap, tmp_path / "large", 80_000)
    # 60,000 more records prefetched would be about 38 MB more
    assert large_mb - small_mb < 20, f"peak RSS {small_mb:.0f} MB for 20,000 records, {large_mb:.0f} MB for 80,000"
