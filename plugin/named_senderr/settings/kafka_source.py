"""Settings of the Kafka source (``[sources.NAME] type = "kafka"``): the brokers, the group, the record format.

Checked without the client library, so a pipeline file is refused or accepted
the same way whether or not ``confluent-kafka`` is installed. TLS and SASL
follow the Kafka sink's keys: certificate checks stay on unless ``verify = false``,
and the SASL password comes from ``password_env`` or ``password_file``, never
from the file itself. ``client_config`` is what librdkafka is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from named_senderr.errors import ConfigError
from named_senderr.settings.kafka import SASL_MECHANISMS, TOPIC_NAME
from named_senderr.settings.secrets import read_secret
from named_senderr.settings.ship import TlsConfig

FORMATS = ("raw", "json", "msgpack")  # a record's value: the line itself, or a JSON / msgpack map holding it
DEFAULT_KEYS = ("log", "message")  # json / msgpack: the fields of the line, as Fluent Bit's and Fluentd's records
MAX_RECORD_BYTES = 1024 * 1024  # larger records are refused (counted) without being decoded
# librdkafka prefetches up to 100,000 records or 64 MiB by default: a worker reading a backlog held
# that much it had not yet taken (about 630 bytes a record). A few batches ahead keep it as fast,
# if a full queue delays the next fetch briefly (librdkafka's 1 s default halved a backlog's speed).
PREFETCH_BATCHES = 5
PREFETCH_KIB = 16 * 1024
PREFETCH_BACKOFF_MS = 50
_BROKER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")


@dataclass(frozen=True)
class KafkaSettings:
    """``type = "kafka"``: a consumer group reading ``topics``; offsets move once the events are durable."""

    bootstrap: str = ""  # HOST:PORT[,HOST:PORT...]
    topics: tuple[str, ...] = ()
    group: str = "named-senderr"
    format: str = "raw"
    keys: tuple[str, ...] = DEFAULT_KEYS
    start: str = "earliest"  # where a group with no committed offset starts: earliest or latest
    batch_records: int = 2000  # records one batch holds at most
    max_record_bytes: int = MAX_RECORD_BYTES
    client_id: str = "named-senderr"
    tls: TlsConfig | None = None  # a [tls] table (even empty) turns TLS on
    username: str | None = None  # SASL, as the sink's: the password named by password_env or password_file
    password_env: str | None = None
    password_file: Path | None = None
    sasl_mechanism: str = "PLAIN"

    def __post_init__(self) -> None:
        brokers = [b.strip() for b in self.bootstrap.split(",") if b.strip()]
        if not brokers or not all(_BROKER.match(b) for b in brokers):
            raise ConfigError(
                f'bootstrap {self.bootstrap!r}: give the brokers as HOST:PORT, e.g. bootstrap = "127.0.0.1:9092"'
            )
        if not self.topics:
            raise ConfigError('no topics; add topics = ["named"] (the topic the edges produce to)')
        for topic in self.topics:
            if not TOPIC_NAME.match(topic) or topic in (".", ".."):
                raise ConfigError(f"topic {topic!r}: Kafka topic names are 1-249 of letters, digits, '.', '_', '-'")
        if not self.group.strip():
            raise ConfigError('group is empty; workers that share a group = "..." share the partitions')
        if self.format not in FORMATS:
            raise ConfigError(f"format {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.format == "raw" and self.keys != DEFAULT_KEYS:
            raise ConfigError('keys name fields of a record map; with format = "raw" the value is the line: remove it')
        if self.start not in ("earliest", "latest"):
            raise ConfigError(f"start {self.start!r} is not one of earliest, latest")
        if self.batch_records < 1 or self.max_record_bytes < 1024:
            raise ConfigError("batch_records >= 1 and max_record_bytes >= 1024 are required")
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(f"sasl_mechanism {self.sasl_mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}")
        if bool(self.username) != bool(self.password_env or self.password_file):
            raise ConfigError("SASL takes both username and password_env (or password_file); give both or neither")
        self.client_config()  # the password read now, so a missing one is named before anything runs

    def client_config(self) -> dict[str, str | int | bool]:
        """The librdkafka settings: manual commits of the offsets we store ourselves, TLS and SASL if set."""
        config: dict[str, str | int | bool] = {
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group,
            "client.id": self.client_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": self.start,
            "queued.min.messages": min(PREFETCH_BATCHES * self.batch_records, 10_000_000),  # librdkafka's maximum
            "queued.max.messages.kbytes": PREFETCH_KIB,
            "fetch.queue.backoff.ms": PREFETCH_BACKOFF_MS,
        }
        password = read_secret(self.password_env, self.password_file, "password", "the kafka source")
        return config | security_settings(self.tls, self.username, password, self.sasl_mechanism)


def security_settings(
    tls: TlsConfig | None, username: str | None, password: str | None, mechanism: str
) -> dict[str, str | int | bool]:
    """librdkafka's security settings, the same for the source and the sink: SASL with a username and its
    password, TLS when ``tls`` is given (``verify`` off turns off the host-name check too)."""
    settings: dict[str, str | int | bool] = {}
    if username and password is not None:
        settings |= {"sasl.mechanisms": mechanism, "sasl.username": username, "sasl.password": password}
    sasl = "SASL_" if "sasl.username" in settings else ""
    settings["security.protocol"] = sasl + ("SSL" if tls else "PLAINTEXT")
    if tls is not None:
        for key, path in (("ssl.ca.location", tls.ca_file), ("ssl.certificate.location", tls.client_cert),
                          ("ssl.key.location", tls.client_key)):  # fmt: skip
            if path is not None:
                settings[key] = str(path)
        settings["enable.ssl.certificate.verification"] = tls.verify
        if not tls.verify:
            settings["ssl.endpoint.identification.algorithm"] = "none"
    return settings
