"""The Kafka source: records to lines, poison records, offsets committed only once the store holds the events.

The record decoding is pure and tested as a table; everything else runs the real CLI (``run --config``)
against the real broker (``kafka_bootstrap``) and the real Elasticsearch, and reads the group's committed
offsets where ``kafka-consumer-groups.sh`` would.
"""

from __future__ import annotations

import threading
from pathlib import Path

import msgpack
import orjson
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE

from named_senderr.cli import main
from named_senderr.engine.pipeline import load_pipeline
from named_senderr.errors import ConfigError
from named_senderr.lines import Line
from named_senderr.protocol.msgpack_records import BadRecord
from named_senderr.settings.kafka_source import KafkaSettings
from named_senderr.settings.ship import TlsConfig
from named_senderr.sources.kafka import to_line
from tests import servers
from tests.faults import FaultServer, Forward, Reply
from tests.kafka_workers import by_host, committed, end_offsets, produce, start_worker, worker_config
from tests.servers.kafka import new_topic
from tests.test_durability import ROOT, es_count, generate, poll, terminate
from tests.test_metrics import scrape
from tests.test_ship_servers import new_index, search

LINE = (b"21-Nov-2026 04:48:37.123 client: warning: client @0x7f1 198.51.100.7#5353 (www.example.com): "
        b"view external: error sending response: would block")  # fmt: skip
RAW = KafkaSettings(bootstrap="127.0.0.1:9092", topics=("named",))
JSON = KafkaSettings(bootstrap="127.0.0.1:9092", topics=("named",), format="json")
MSGPACK = KafkaSettings(bootstrap="127.0.0.1:9092", topics=("named",), format="msgpack")
AT = (TIMESTAMP_CREATE_TIME, 1_795_000_000_123)


@pytest.mark.parametrize(
    ("settings", "value", "key", "expected"),
    [
        (RAW, LINE, b"ns1", Line(LINE, host="ns1", time="2026-11-18T11:06:40.123Z")),
        (RAW, LINE, None, Line(LINE, time="2026-11-18T11:06:40.123Z")),
        (RAW, LINE, b"\xff", Line(LINE, time="2026-11-18T11:06:40.123Z")),  # a key that is no text names no host
        (JSON, orjson.dumps({"log": LINE.decode(), "host": "ns2"}), b"ns1",
         Line(LINE, host="ns2", time="2026-11-18T11:06:40.123Z")),  # the record's own host wins over the key
        (MSGPACK, msgpack.packb({"message": LINE}), b"ns1", Line(LINE, host="ns1", time="2026-11-18T11:06:40.123Z")),
        (RAW, b"\xff\xfe not text", b"ns1", BadRecord("not_utf8", "the line is not UTF-8 text")),
        (RAW, None, b"ns1", BadRecord("no_value", "the record has no value (a tombstone)")),
        (RAW, b"x" * (2 << 20), b"ns1", BadRecord("oversize", "2,097,152 bytes, over max_record_bytes = 1,048,576")),
        (MSGPACK, LINE, b"ns1", BadRecord("not_msgpack", "not one msgpack object: ExtraData")),
        (MSGPACK, msgpack.packb([LINE]), b"ns1", BadRecord("not_a_map", "a list, not a map of fields")),
        (JSON, b"{not json", b"ns1", BadRecord("invalid_json", "not JSON (from byte 1 on)")),
        (JSON, b'{"other": 1}', b"ns1", BadRecord("missing_key", "no 'log' or 'message' key; set --key to the record's field")),
        (MSGPACK, msgpack.packb({"log": b"\xc3"}), None, BadRecord("not_utf8", "the line is not UTF-8 text")),
    ],
)  # fmt: skip
def test_a_record_becomes_its_line_or_the_reason_it_holds_none(
    settings: KafkaSettings, value: bytes | None, key: bytes | None, expected: Line | BadRecord
) -> None:
    assert to_line(settings, value, key, AT) == expected


def test_a_line_longer_than_the_parser_takes_is_handed_on_as_its_head_for_the_parser_to_refuse() -> None:
    line = to_line(RAW, b"x" * 100_000, None, (TIMESTAMP_NOT_AVAILABLE, 0))
    assert isinstance(line, Line) and line.oversize and len(line.data) == 64 * 1024 and line.time is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bootstrap": ""}, "bootstrap '': give the brokers as HOST:PORT"),
        ({"bootstrap": "kafka://127.0.0.1:9092"}, "give the brokers as HOST:PORT"),
        ({"topics": ()}, 'no topics; add topics = ["named"]'),
        ({"topics": ("a b",)}, "topic 'a b': Kafka topic names are"),
        ({"format": "avro"}, "format 'avro' is not one of raw, json, msgpack"),
        ({"keys": ("line",)}, 'with format = "raw" the value is the line'),
        ({"start": "beginning"}, "start 'beginning' is not one of earliest, latest"),
        ({"username": "u", "password_env": "NAMED_SENDERR_TEST_UNSET"},
         "password_env names NAMED_SENDERR_TEST_UNSET, which is not set"),
        ({"username": "u"}, "SASL takes both username and password_env"),
        ({"sasl_mechanism": "GSSAPI"}, "sasl_mechanism 'GSSAPI' is not one of PLAIN"),
    ],
)  # fmt: skip
def test_settings_refuse_what_a_consumer_could_not_use_and_name_the_fix(changes: dict, message: str) -> None:
    base = {"bootstrap": "127.0.0.1:9092", "topics": ("named",)}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        KafkaSettings(**(base | changes))


def test_tls_and_sasl_become_the_client_settings_with_the_password_from_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "kafka.password"
    secret.write_text("s3cret\n")
    settings = KafkaSettings(bootstrap="broker:9093", topics=("named",), tls=TlsConfig(ca_file=tmp_path / "ca.pem"),
                             username="worker", password_file=secret)  # fmt: skip
    config = settings.client_config()
    assert {k: config[k] for k in ("security.protocol", "ssl.ca.location", "sasl.username", "sasl.password")} == {
        "security.protocol": "SASL_SSL", "ssl.ca.location": str(tmp_path / "ca.pem"), "sasl.username": "worker",
        "sasl.password": "s3cret"}  # fmt: skip
    assert config["enable.auto.commit"] is False and config["enable.auto.offset.store"] is False


def test_a_pipeline_file_refuses_a_misspelt_kafka_key_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[sources.k]\ntype = "kafka"\nbootstrap = "127.0.0.1:9092"\ntopic = ["named"]\n'
                    '[sinks.out]\nurl = "stdout:"\ninputs = ["k"]\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"sources.k: unknown key 'topic'; did you mean 'topics'\?"):
        load_pipeline(path)


def test_poison_records_are_counted_and_never_block_their_partition(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Not UTF-8, 10 MiB, not msgpack: each rejected by reason, its offset committed, the lines after it delivered."""
    big = {"max.message.bytes": str(12 << 20)}
    raw, packed = new_topic(kafka_bootstrap, 1, big), new_topic(kafka_bootstrap, 1)
    good = [LINE.replace(b"#5353", b"#%d" % port) for port in range(1000, 1006)]
    produce(kafka_bootstrap, raw, [(b"ns1", good[0]), (b"ns1", b"\xff\xfe\x00 not text"), (b"ns1", good[1]),
                                   (b"ns1", b"x" * (10 << 20)), (b"ns1", good[2])],
            **{"message.max.bytes": 12 << 20})  # fmt: skip
    produce(kafka_bootstrap, packed, [(b"ns2", msgpack.packb({"log": good[3]})), (b"ns2", b"\xc1 not msgpack"),
                                      (b"ns2", msgpack.packb({"log": good[4]})), (b"ns2", msgpack.packb(["a list"])),
                                      (b"ns2", msgpack.packb({"log": good[5]}))])  # fmt: skip
    port = servers.free_port()
    config = tmp_path / "poison.toml"
    config.write_text(f"""timezone = "UTC"
[sources.raw]
type = "kafka"
bootstrap = "{kafka_bootstrap}"
topics = ["{raw}"]
group = "poison"
max_record_bytes = 4194304
[sources.packed]
type = "kafka"
bootstrap = "{kafka_bootstrap}"
topics = ["{packed}"]
group = "poison-msgpack"
format = "msgpack"
[sinks.out]
url = "stdout:"
inputs = ["raw", "packed"]
format = "flat"
[metrics]
address = "{port}"
""")
    worker = start_worker(config, "poison")
    try:
        done = lambda: sum(committed(kafka_bootstrap, "poison", raw).values()) + sum(  # noqa: E731
            committed(kafka_bootstrap, "poison-msgpack", packed).values())  # fmt: skip
        poll(done, lambda n: n == 10, timeout=60, interval=0.2)
        assert committed(kafka_bootstrap, "poison", raw) == end_offsets(kafka_bootstrap, raw) == {0: 5}
        assert committed(kafka_bootstrap, "poison-msgpack", packed) == end_offsets(kafka_bootstrap, packed) == {0: 5}
        metrics = scrape(f"http://127.0.0.1:{port}")
    finally:
        assert terminate(worker) == 0
    rejected = {k: v for k, v in metrics.items() if k.startswith("named_senderr_kafka_records_rejected_total")}
    assert rejected == {
        'named_senderr_kafka_records_rejected_total{reason="not_utf8",source="sources.raw"}': 1.0,
        'named_senderr_kafka_records_rejected_total{reason="oversize",source="sources.raw"}': 1.0,
        'named_senderr_kafka_records_rejected_total{reason="not_msgpack",source="sources.packed"}': 1.0,
        'named_senderr_kafka_records_rejected_total{reason="not_a_map",source="sources.packed"}': 1.0,
    }
    printed = [orjson.loads(line) for line in (tmp_path / "poison.stdout").read_bytes().splitlines()]
    assert sorted(event["client_port"] for event in printed) == list(range(1000, 1006))
    assert "oversize" in (tmp_path / "poison.stderr").read_text()


def test_a_store_outage_pauses_consumption_commits_nothing_unstored_then_catches_up_exactly(
    kafka_bootstrap: str, elasticsearch_url: str, tmp_path: Path
) -> None:
    lines = generate(tmp_path / "named.log", 12_000, seed=11).read_bytes().splitlines()
    first, second = lines[:4_000], lines[4_000:]
    topic = new_topic(kafka_bootstrap, 3)
    index = new_index("elasticsearch", elasticsearch_url, tmp_path).rsplit("/", 1)[1]
    down = threading.Event()
    plan = lambda request, n: Reply(503, b"down for maintenance") if down.is_set() else Forward(elasticsearch_url)  # noqa: E731
    with FaultServer(plan, record=False) as proxy:
        port = servers.free_port()
        config = worker_config(tmp_path / "worker.toml", kafka_bootstrap, topic, "outage",
                               f"elasticsearch+{proxy.url}/{index}", metrics=port)  # fmt: skip
        produce(kafka_bootstrap, topic, by_host(first, 30))
        worker = start_worker(config, "worker")
        try:
            assert poll(lambda: sum(committed(kafka_bootstrap, "outage", topic).values()), lambda n: n == 4_000,
                        timeout=90, interval=0.2) == 4_000  # fmt: skip
            down.set()
            produce(kafka_bootstrap, topic, by_host(second, 30))

            def lag() -> float:
                values = scrape(f"http://127.0.0.1:{port}")
                return sum(v for k, v in values.items() if k.startswith("named_senderr_kafka_lag{"))

            assert poll(lag, lambda n: n == 8_000, timeout=30, interval=0.2) == 8_000  # the lag grows to all of it

            def moved() -> bool:  # past what the store holds
                return sum(committed(kafka_bootstrap, "outage", topic).values()) != 4_000 or es_count(
                    elasticsearch_url, index) != 4_000  # fmt: skip

            assert not poll(moved, bool, timeout=5, interval=0.2)  # for a while: nothing committed, nothing stored
            down.clear()
            assert poll(lambda: sum(committed(kafka_bootstrap, "outage", topic).values()), lambda n: n == 12_000,
                        timeout=120, interval=0.2) == 12_000  # fmt: skip
            assert poll(lag, lambda n: n == 0, timeout=30, interval=0.2) == 0
        finally:
            assert terminate(worker) == 0
    assert es_count(elasticsearch_url, index) == 12_000


@pytest.mark.parametrize("name", ["edge.toml", "worker.toml"])
def test_the_shipped_fleet_files_pass_the_check(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """conf/kafka/: the edge (follow -> Kafka) and the worker (Kafka -> Elasticsearch), checked as shipped."""
    assert main(["run", "--config", str(ROOT / "conf" / "kafka" / name), "--check"]) == 0
    wiring = {
        "edge.toml": "sources.named (follow) -> sinks.kafka (kafka://127.0.0.1:9092/named-senderr)",
        "worker.toml": "sources.fleet (kafka) -> sinks.es (elasticsearch+http://127.0.0.1:9200/named-senderr)",
    }
    assert capsys.readouterr().err.strip().endswith(wiring[name])


def test_the_shipped_edge_and_worker_carry_a_log_into_elasticsearch_once(
    kafka_bootstrap: str, elasticsearch_url: str, tmp_path: Path
) -> None:
    """conf/kafka/ as shipped, only the addresses and paths made this test's: named.log -> edge -> Kafka -> worker."""
    log = generate(tmp_path / "named.log", 5_000, seed=21)
    topic = new_topic(kafka_bootstrap, 2)
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    local = {"edge.toml": {"kafka://127.0.0.1:9092/named-senderr": f"kafka://{kafka_bootstrap}/{topic}",
                           "/var/log/named/*.log": str(log), "read_from_head = false": "read_from_head = true",
                           "/var/lib/named-senderr/edge": str(tmp_path / "edge-queue")},
             "worker.toml": {'"127.0.0.1:9092"': f'"{kafka_bootstrap}"', '["named-senderr"]': f'["{topic}"]',
                             "elasticsearch+http://127.0.0.1:9200/named-senderr": url,
                             "/var/lib/named-senderr/": f"{tmp_path}/", '"9108"': f'"{servers.free_port()}"'}}  # fmt: skip
    for name, changes in local.items():
        text = (ROOT / "conf" / "kafka" / name).read_text()
        for shipped, here in changes.items():
            assert shipped in text
            text = text.replace(shipped, here)
        (tmp_path / name).write_text(text)
    edge, worker = start_worker(tmp_path / "edge.toml", "edge"), start_worker(tmp_path / "worker.toml", "worker")
    index = url.rsplit("/", 1)[1]
    try:
        assert poll(lambda: es_count(elasticsearch_url, index), lambda n: n >= 5_000, timeout=120) == 5_000
    finally:
        assert terminate(edge) == 0 and terminate(worker) == 0
    hosts = search(elasticsearch_url, index, {"size": 0, "aggs": {"h": {"terms": {"field": "host.name"}}}})
    assert [(b["key"], b["doc_count"]) for b in hosts["aggregations"]["h"]["buckets"]] == [("ns1.example.net", 5_000)]
    assert sum(committed(kafka_bootstrap, "named-senderr-workers", topic).values()) == 5_000
