"""Events/s through Kafka with 1, 2 and 4 workers, beside the direct path, into a real Elasticsearch.

Starts Elasticsearch and a Kafka broker from the test suite's cache (tests/servers), generates a named log
where every line is a send error, and:
  direct   ``named-senderr ship FILE --to elasticsearch+...`` from start to exit;
  kafka N  the same lines from 30 hosts produced (keyed by host) to a topic of 4 partitions, then N worker
           processes (``run --config``, one consumer group) from their start until the group's committed
           offsets reach the end: parse, ship, commit.
Every stored count is checked afterwards, so a fast but lossy run cannot pass. Wall time includes each
process's start and, for the workers, the group's join; on two cores the workers, Elasticsearch and the
broker share the same CPUs, which is what limits more workers.

    python bench/kafka_bench.py --events 200000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import servers  # noqa: E402
from tests.kafka_workers import by_host, committed, produce, start_worker, worker_config  # noqa: E402
from tests.servers.kafka import new_topic  # noqa: E402
from tests.test_durability import es_count, generate, poll, terminate  # noqa: E402

HOSTS, PARTITIONS = 30, 4


def new_index(es: str, name: str) -> str:
    url = f"elasticsearch+{es}/bench-{name}-{os.getpid()}"
    subprocess.run([sys.executable, "-m", "named_senderr", "setup", "elasticsearch", "--to", url],
                   check=True, stderr=subprocess.DEVNULL)  # fmt: skip
    return url


def direct(es: str, log: Path, events: int) -> float:
    url = new_index(es, log.stem)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "named_senderr", "ship", str(log), "--to", url, "--no-progress",
                    "--timezone", "UTC"], check=True, stderr=subprocess.DEVNULL)  # fmt: skip
    seconds = time.perf_counter() - started
    assert es_count(es, url.rsplit("/", 1)[1]) == events
    return seconds


def through_kafka(es: str, bootstrap: str, lines: list[bytes], workers: int, work: Path) -> tuple[float, float]:
    """(seconds to produce, seconds for ``workers`` to parse, ship and commit everything)."""
    topic = new_topic(bootstrap, PARTITIONS)
    started = time.perf_counter()
    produce(bootstrap, topic, by_host(lines, HOSTS))
    produced = time.perf_counter() - started
    url = new_index(es, f"kafka{workers}")
    config = worker_config(work / f"workers{workers}.toml", bootstrap, topic, f"bench{workers}", url)
    config.write_text(config.read_text().replace("max_events = 2000", "max_events = 5000"))
    started = time.perf_counter()
    procs = [start_worker(config, f"w{workers}-{n}") for n in range(workers)]
    try:
        done = poll(lambda: sum(committed(bootstrap, f"bench{workers}", topic).values()), lambda n: n == len(lines),
                    timeout=1800, interval=0.2)  # fmt: skip
        seconds = time.perf_counter() - started
    finally:
        codes = [terminate(proc, 60) for proc in procs]
    assert done == len(lines) and codes == [0] * workers, (done, codes)
    assert es_count(es, url.rsplit("/", 1)[1]) == len(lines)
    return produced, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    args = parser.parse_args()
    es_server, kafka_server = servers.start("elasticsearch"), servers.start("kafka")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            log = generate(work / "named.log", args.events, seed=3)
            lines = log.read_bytes().splitlines()
            direct(es_server.url, generate(work / "warmup.log", 20_000, seed=4), 20_000)  # JIT-free, but ES warms up
            seconds = direct(es_server.url, log, args.events)
            print(f"{'path':<22}{'seconds':>9}{'events/s':>11}")
            print(f"{'direct (ship)':<22}{seconds:>9.1f}{args.events / seconds:>11,.0f}")
            for workers in map(int, args.workers.split(",")):
                produced, seconds = through_kafka(es_server.url, kafka_server.url, lines, workers, work)
                label = f"kafka, {workers} worker{'s' if workers > 1 else ''}"
                print(f"{label:<22}{seconds:>9.1f}{args.events / seconds:>11,.0f}   (produced in {produced:.1f} s)")
    finally:
        kafka_server.stop()
        es_server.stop()


if __name__ == "__main__":
    main()
