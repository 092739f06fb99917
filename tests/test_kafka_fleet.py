"""The fleet topology under a crash: a consumer group of worker processes between Kafka and Elasticsearch.

300,000 lines from 30 hosts in a 6-partition topic, keyed by host; 3 workers (``run --config``, real
processes) in one group. One is killed with SIGKILL mid-run (its partitions go to the others, who re-read
from the last committed offsets) and one more joins. Elasticsearch ends with every event exactly once:
the re-read ones carry the same deterministic ids and are found stored.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.kafka_workers import by_host, committed, end_offsets, produce, start_worker, worker_config
from tests.servers.kafka import new_topic
from tests.test_durability import es_count, generate, poll, terminate
from tests.test_ship_servers import new_index, search

pytestmark = pytest.mark.servers
LINES, HOSTS, PARTITIONS = 300_000, 30, 6


def test_a_worker_killed_and_one_added_leave_every_event_once_in_elasticsearch(
    kafka_bootstrap: str, elasticsearch_url: str, tmp_path: Path
) -> None:
    lines = generate(tmp_path / "named.log", LINES, seed=15).read_bytes().splitlines()
    records = by_host(lines, HOSTS)
    assert len(set(records)) == LINES  # no two alike: the expected documents are exactly these
    topic = new_topic(kafka_bootstrap, PARTITIONS)
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    index = url.rsplit("/", 1)[1]
    config = worker_config(tmp_path / "worker.toml", kafka_bootstrap, topic, "fleet", url)
    started = time.monotonic()
    produce(kafka_bootstrap, topic, records)
    workers = [start_worker(config, f"worker{n}") for n in range(3)]
    try:
        stored = poll(lambda: es_count(elasticsearch_url, index), lambda n: n >= LINES // 4, timeout=180)
        workers[0].kill()  # SIGKILL: nothing flushed, nothing committed at exit
        assert workers[0].wait(10) == -9
        assert stored < LINES, "the kill must land mid-run"
        workers.append(start_worker(config, "worker3"))
        done = poll(lambda: sum(committed(kafka_bootstrap, "fleet", topic).values()), lambda n: n == LINES,
                    timeout=300, interval=0.5)  # fmt: skip
        assert done == LINES and committed(kafka_bootstrap, "fleet", topic) == end_offsets(kafka_bootstrap, topic)
        elapsed = time.monotonic() - started
    finally:
        codes = [terminate(worker) if worker.poll() is None else worker.returncode for worker in workers]
    assert codes == [-9, 0, 0, 0]
    assert es_count(elasticsearch_url, index) == LINES, f"after {elapsed:.0f} s"
    answer = search(elasticsearch_url, index, {"size": 0, "aggs": {"hosts": {"terms": {"field": "host.name",
                                               "size": HOSTS + 1}}}})  # fmt: skip
    per_host = {bucket["key"]: bucket["doc_count"] for bucket in answer["aggregations"]["hosts"]["buckets"]}
    assert per_host == dict(Counter(key.decode() for key, _ in records))
