"""``--to kafka://…``: the real CLI into a real Kafka 4.4 broker, read back with a real consumer.

Counts come from the partitions' high watermarks (an idempotent producer writes no control records,
so they are the number of records stored): exact, and a record stored twice shows at once.
Each test reserves its own topic; the crash test runs its own broker, which it kills.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from fluent.sender import FluentSender

from named_senderr.cli import main
from named_senderr.cli.ship import EXIT_DEAD_LETTERED
from named_senderr.errors import ConfigError
from named_senderr.settings.loading import sink_from_url
from named_senderr.sinks.kafka import classify_reports
from tests import servers
from tests.polling import wait_until
from tests.servers import kafka
from tests.servers.kafka import new_topic
from tests.test_forward_serve_cli import SAMPLE

pytestmark = pytest.mark.servers
HOSTS = 5
CATEGORIES = ("security: debug 3", "client: warning")


def hosts_log(path: Path, lines: int) -> Path:
    """Send-error lines from HOSTS hosts; line ``n`` asks for ``qN.example.org``, so order is checkable."""
    rows = []
    for n in range(lines):
        seconds, millis = divmod(n, 1000)
        rows.append(
            f"2026-11-21T04:{seconds // 60:02d}:{seconds % 60:02d}.{millis:03d}Z dns-{n % HOSTS:02d} named[42]: "
            f"{CATEGORIES[n % 2]}: client @0x7f0000{n:06x} 192.0.2.{n % 250 + 1}#{1024 + n} (q{n}.example.org): "
            "view external: send failed: no pending connections\n"
        )
    path.write_text("".join(rows))
    return path


def ship(tmp_path: Path, url: str, *inputs: str) -> int:
    config = tmp_path / "ship.toml"
    config.write_text("[batch]\nmax_events = 200\n[retry]\ninitial_backoff = 0.05\nmax_backoff = 0.5\n")
    args = ["--config", str(config), "--timezone", "UTC", "--dead-letter", str(tmp_path / "dead.ndjson")]
    return main(["ship", *inputs, "--to", url, *args, "--no-progress"])


def stored(bootstrap: str, topic: str, missing: int | None = None) -> int:
    """Records in ``topic``: the sum of its partitions' high watermarks; ``missing`` if the broker cannot say now."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "count"})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions)
    except KafkaException:
        if missing is None:
            raise
        return missing
    finally:
        consumer.close()


def consume(bootstrap: str, topic: str) -> list[tuple[int, bytes, bytes, dict[str, bytes]]]:
    """Every record of ``topic`` as (partition, key, value, headers), in each partition's order."""
    expected = stored(bootstrap, topic)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"read-{topic}", "auto.offset.reset": "earliest"}
        | {"enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    records: list[tuple[int, bytes, bytes, dict[str, bytes]]] = []

    def read() -> bool:
        for message in consumer.consume(500, timeout=0.5):
            assert message.error() is None, message.error()
            headers = dict(message.headers() or [])
            records.append((message.partition() or 0, message.key() or b"", message.value() or b"", headers))
        return len(records) >= expected

    try:
        wait_until(read, timeout=60)
    finally:
        consumer.close()
    return records


def test_every_event_arrives_once_keyed_by_its_host(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = new_topic(kafka_bootstrap, partitions=3)
    assert (
        ship(tmp_path, f"kafka://{kafka_bootstrap}/{topic}?format=flat", str(hosts_log(tmp_path / "h.log", 600))) == 0
    )
    assert stored(kafka_bootstrap, topic) == 600
    records = consume(kafka_bootstrap, topic)
    assert all(orjson.loads(value)["host"] == key.decode() for _, key, value, _ in records)
    assert {key for _, key, _, _ in records} == {f"dns-{h:02d}".encode() for h in range(HOSTS)}


def test_one_hosts_lines_stay_in_their_order(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = new_topic(kafka_bootstrap, partitions=3)
    assert (
        ship(tmp_path, f"kafka://{kafka_bootstrap}/{topic}?format=flat", str(hosts_log(tmp_path / "h.log", 600))) == 0
    )
    partitions: dict[bytes, set[int]] = defaultdict(set)
    sequence: dict[bytes, list[int]] = defaultdict(list)
    for partition, key, value, _ in consume(kafka_bootstrap, topic):
        partitions[key].add(partition)
        sequence[key].append(int(orjson.loads(value)["qname"][1:].split(".")[0]))
    assert all(len(p) == 1 for p in partitions.values())  # one host, one partition
    assert all(numbers == sorted(numbers) and len(numbers) == 600 // HOSTS for numbers in sequence.values())


def test_ecs_records_carry_their_event_id_in_the_record_and_a_header(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = new_topic(kafka_bootstrap)
    assert ship(tmp_path, f"kafka://{kafka_bootstrap}/{topic}", str(SAMPLE)) == 0
    records = consume(kafka_bootstrap, topic)
    assert len(records) == 39
    documents = [(orjson.loads(value), headers) for _, _, value, headers in records]
    assert all(doc["event"]["dataset"] == "bind.send_error" for doc, _ in documents)
    assert all(doc["event"]["id"].encode() == headers["event_id"] for doc, headers in documents)
    assert len({doc["event"]["id"] for doc, _ in documents}) == 39


def test_raw_format_ships_the_original_lines(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = new_topic(kafka_bootstrap)
    log = hosts_log(tmp_path / "h.log", 50)
    assert ship(tmp_path, f"kafka://{kafka_bootstrap}/{topic}?format=raw&compression=zstd", str(log)) == 0
    values = [value.decode() for _, _, value, _ in consume(kafka_bootstrap, topic)]
    assert sorted(values) == sorted(log.read_text().splitlines())


def test_serve_hands_forwarded_events_to_kafka(kafka_bootstrap: str, serve, tmp_path: Path) -> None:
    from tests.test_forward_serve_cli import Serve

    topic = new_topic(kafka_bootstrap)
    server = Serve("--to", f"kafka://{kafka_bootstrap}/{topic}", "--dead-letter", str(tmp_path / "dead"))
    serve.append(server)
    sender = FluentSender("named", host="127.0.0.1", port=server.port)
    for line in SAMPLE.read_text().splitlines():
        assert sender.emit("log", {"log": line})
    sender.close()
    wait_until(lambda: stored(kafka_bootstrap, topic) == 39, timeout=60)
    assert server.stop() == 0
    assert stored(kafka_bootstrap, topic) == 39


def test_an_event_over_the_topics_limit_is_dead_lettered_and_the_others_stored(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(kafka_bootstrap, config={"max.message.bytes": "900"})
    log = hosts_log(tmp_path / "h.log", 30)
    # random, so no compression brings it under the limit; 923 characters, within what a DNS name can be
    qname = ".".join(uuid.uuid4().hex for _ in range(28))
    huge = f"2026-11-21T05:00:00.000Z dns-09 named[42]: client: warning: client @0x7f01 192.0.2.9#53 ({qname}): "
    huge += "view external: send failed: no pending connections\n"
    log.write_text(log.read_text() + huge)
    assert ship(tmp_path, f"kafka://{kafka_bootstrap}/{topic}?format=raw", str(log)) == EXIT_DEAD_LETTERED
    assert stored(kafka_bootstrap, topic) == 30
    dead = [orjson.loads(line) for line in (tmp_path / "dead.ndjson").read_text().splitlines()]
    assert [d["key"] for d in dead] == ["dns-09"]
    assert "MSG_SIZE_TOO_LARGE" in dead[0]["reason"] and "max.message.bytes" in dead[0]["reason"]


def test_a_missing_topic_stops_the_ship_naming_the_topic_and_the_fix(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ship(tmp_path, f"kafka://{kafka_bootstrap}/no-such-topic", str(SAMPLE)) != 0
    error = capsys.readouterr().err
    assert "topic 'no-such-topic' does not exist" in error and "auto.create.topics.enable" in error


def test_sasl_credentials_from_the_environment_are_taken(
    kafka_server: servers.Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = new_topic(kafka_server.url)
    monkeypatch.setenv("KAFKA_PASSWORD", kafka.SASL_PASSWORD)
    url = f"kafka://{kafka.SASL_USER}@{kafka_server.endpoints['sasl']}/{topic}?password_env=KAFKA_PASSWORD"
    assert ship(tmp_path, url, str(SAMPLE)) == 0
    assert stored(kafka_server.url, topic) == 39


def test_a_wrong_sasl_password_stops_the_ship_with_the_fix_and_no_secret(
    kafka_server: servers.Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = new_topic(kafka_server.url)
    (tmp_path / "password").write_text("not-the-password\n")
    url = f"kafka://{kafka.SASL_USER}@{kafka_server.endpoints['sasl']}/{topic}?password_file={tmp_path / 'password'}"
    assert ship(tmp_path, url, str(SAMPLE)) != 0
    error = capsys.readouterr().err
    assert "refused the credentials" in error and "password_env or password_file" in error
    assert "not-the-password" not in error
    assert stored(kafka_server.url, topic) == 0


@pytest.fixture
def private_kafka() -> servers.Server:
    """A broker of this test's own: it is killed mid-run."""
    try:
        server = servers.start("kafka")
    except servers.ServerError as exc:
        pytest.skip(f"kafka unavailable: {exc}")
    yield server
    server.stop()


def test_a_broker_killed_mid_run_and_restarted_loses_nothing_and_doubles_nothing(
    private_kafka: servers.Server, tmp_path: Path
) -> None:
    """SIGKILL of the broker JVM while a ship is producing; restarted on the same port and log dir.

    librdkafka resends what the dead broker never confirmed, numbered as before, and the restarted
    broker drops what it had already written: the topic ends with every event exactly once.
    """
    bootstrap = private_kafka.url
    topic = new_topic(bootstrap, partitions=3)
    lines = 20_000
    log = hosts_log(tmp_path / "h.log", lines)
    config = tmp_path / "ship.toml"
    config.write_text("[batch]\nmax_events = 100\nmax_wait = 0.2\n[retry]\nmax_attempts = 1000\ndeadline = 600\n")
    cmd = [sys.executable, "-m", "named_senderr", "ship", str(log), "--to", f"kafka://{bootstrap}/{topic}?timeout=120",
           "--queue-dir", str(tmp_path / "queue"), "--config", str(config), "--timezone", "UTC", "--no-progress",
           "--dead-letter", str(tmp_path / "dead.ndjson")]  # fmt: skip
    with (tmp_path / "ship.stderr").open("wb") as stderr:
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_until(lambda: stored(bootstrap, topic, missing=0) > 0, timeout=120)
            private_kafka.kill()
            assert process.poll() is None  # the broker died mid-run
            private_kafka.resume()
            assert process.wait(timeout=300) == 0, (tmp_path / "ship.stderr").read_text()
        finally:
            process.kill()
    assert stored(bootstrap, topic) == lines
    ids = {headers["event_id"] for _, _, _, headers in consume(bootstrap, topic)}
    assert len(ids) == lines
    assert not (tmp_path / "dead.ndjson").exists()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("kafka://127.0.0.1:9092/t?compresion=zstd", "unknown key 'compresion'; did you mean 'compression'?"),
        ("kafka://127.0.0.1:9092/t?password=s3cret", "secrets are not taken from a config file or a URL"),
        ("kafka://alice:s3cret@127.0.0.1:9092/t", "the URL carries a password"),
        ("kafka://127.0.0.1:9092/t?ca_file=/ca.pem", "TLS settings need a TLS connection; use kafka+ssl://"),
        ("kafka://127.0.0.1/t", "'127.0.0.1' is not HOST:PORT"),
        ("kafka://127.0.0.1:9092/", "the path must be one topic"),
        ("kafka://127.0.0.1:9092/t?format=raw&compression=brotli", "compression 'brotli' is not one of"),
        ("kafka://127.0.0.1:9092/t?workers=4", "workers does not apply to kafka sinks"),
        ("kafka://127.0.0.1:9092/t?api_key_env=K", "Kafka takes SASL credentials"),
    ],
)
def test_a_bad_kafka_url_is_refused_with_the_fix(url: str, expected: str) -> None:
    with pytest.raises(ConfigError) as refused:
        sink_from_url(url, {}, "--to", None)
    assert expected in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_raw_is_a_format_of_kafka_sinks_only() -> None:
    with pytest.raises(ConfigError, match="format 'raw' is not one of ecs, flat"):
        sink_from_url("victorialogs+http://127.0.0.1:9428?format=raw", {}, "--to", None)


ITEM = (b"dns-01", b"{}", "id")


@pytest.mark.parametrize(
    ("error", "fate"),
    [
        (None, "delivered"),
        (KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), "dead"),
        (KafkaError(KafkaError._MSG_TIMED_OUT), "retry"),
        (KafkaError(KafkaError._TRANSPORT), "retry"),
        (KafkaError(KafkaError.NOT_ENOUGH_REPLICAS), "retry"),
        (KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART), "fatal"),
        (KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), "fatal"),
    ],
)
def test_each_delivery_report_is_classified(error: KafkaError | None, fate: str) -> None:
    outcome = classify_reports([ITEM], [error], "logs")
    fates = {
        "delivered": outcome.delivered == 1,
        "dead": len(outcome.dead) == 1,
        "retry": outcome.retry == [ITEM],
        "fatal": outcome.fatal is not None,
    }
    assert [name for name, on in fates.items() if on] == [fate]


def test_a_missing_topic_reported_mid_run_names_the_topic_and_the_fix() -> None:
    outcome = classify_reports([ITEM], [KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)], "logs")
    assert outcome.fatal is not None and "topic 'logs' does not exist; create it" in outcome.fatal
