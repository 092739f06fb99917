"""Helpers of the Kafka source tests: produce lines keyed by host, run workers, read the group's offsets."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]], **config: object) -> int:
    """``(key, value)`` records through an idempotent producer with acks=all; how many the broker took."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 20, "compression.type": "lz4", **config})  # fmt: skip
    failed: list[object] = []
    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=lambda err, _msg: err and failed.append(err))
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
        count += 1
        producer.poll(0)
    assert producer.flush(60) == 0 and not failed, failed[:3]
    return count


def by_host(lines: list[bytes], hosts: int) -> list[tuple[bytes, bytes]]:
    """Line ``i`` from host ``ns{i % hosts}``: the key is the host, so each host's lines stay in one partition."""
    return [(f"ns{i % hosts}.example.net".encode(), line) for i, line in enumerate(lines)]


def partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        meta = probe.list_topics(topic, timeout=10).topics[topic]
        return [TopicPartition(topic, p) for p in sorted(meta.partitions)]
    finally:
        probe.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset of each partition (0 where it committed none, or none can be read yet).

    Just after the broker started, its group coordinator may still be loading (NOT_COORDINATOR): that is
    "nothing committed yet" to a poll, which asks again.
    """
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = reader.committed(partitions(bootstrap, topic), timeout=10)
        return {p.partition: max(p.offset, 0) for p in parts}
    except KafkaException as exc:
        if not exc.args[0].retriable() and exc.args[0].code() != KafkaError.NOT_COORDINATOR:
            raise
        return {}
    finally:
        reader.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        return {p.partition: reader.get_watermark_offsets(p, timeout=10)[1] for p in partitions(bootstrap, topic)}
    finally:
        reader.close()


def worker_config(path: Path, bootstrap: str, topic: str, group: str, sink: str, metrics: int | None = None) -> Path:
    """A worker's pipeline: the topic's lines parsed into ``sink``; small batches, patient retries."""
    path.write_text(f"""timezone = "UTC"
dead_letter = "dead.ndjson"
[sources.fleet]
type = "kafka"
bootstrap = "{bootstrap}"
topics = ["{topic}"]
group = "{group}"
batch_records = 1000
[sinks.store]
url = "{sink}"
inputs = ["fleet"]
[batch]
max_events = 2000
max_wait = 0.2
[retry]
initial_backoff = 0.05
max_backoff = 0.5
max_attempts = 100000
deadline = 3600
""" + (f'[metrics]\naddress = "{metrics}"\n' if metrics else ""))  # fmt: skip
    return path


def start_worker(config: Path, name: str) -> subprocess.Popen[bytes]:
    """``run --config`` in its own process; its stdout and stderr in NAME.stdout / NAME.stderr beside the file."""
    out = open(config.parent / f"{name}.stdout", "ab")  # noqa: SIM115 - the child holds them; read after
    err = open(config.parent / f"{name}.stderr", "ab")  # noqa: SIM115
    cmd = [sys.executable, "-m", "named_senderr", "run", "--config", str(config), "--no-progress"]
    return subprocess.Popen(cmd, stdout=out, stderr=err, cwd=config.parent)
