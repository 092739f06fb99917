"""Events (ECS or flat JSON) or their original lines to a Kafka topic, keyed by host, through librdkafka.

The producer is idempotent with ``acks=all``: librdkafka numbers every record, resends on its own
what a broker did not confirm, and the broker drops a resent record it already has, so a broker
that dies and comes back within ``timeout`` neither loses nor doubles a record. Records are keyed
by the event's host with Java's murmur2 partitioner, so one server's lines land on one partition in
their order, the same one a Java producer would choose. ``send`` hands a batch to the producer and
waits, at most ``timeout`` plus a margin, for every record's delivery report (``message.timeout.ms``
is ``timeout``, so each has one by then); the batch counts as stored only for the records whose
report said so. What a report means is ``classify_reports``, a pure function: a record too large
for the topic is dead-lettered, a missing topic or refused credentials stop the sink with the fix,
timeouts and lost brokers go back to the driver, which alone retries. A record that timed out may
still have been written before its broker went away: re-sent by the driver it is then there twice
(at least once, never lost); each record carries its deterministic id (``event.id`` / ``event_id``
and the ``event_id`` header), so the stores behind a consumer keep one copy.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from named_senderr.event import Event
from named_senderr.settings.kafka_source import security_settings
from named_senderr.settings.secrets import read_secret
from named_senderr.settings.ship import SinkConfig
from named_senderr.sinks.ids import event_id, identified
from named_senderr.sinks.outcome import Outcome, SinkFailed

Item = tuple[bytes, bytes, str]  # (key: the host, value: the JSON record or the line, the event id)
FLUSH_MARGIN = 5.0  # seconds past message.timeout.ms for the last delivery reports to arrive
PROBE_TIMEOUT = 10.0  # at start: how long to wait for the topic's metadata before going on without it
# One record alone is refused for good: dead-letter it, the others go on.
DEAD = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_RECORD}
DEAD |= {KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_MSG}
# Worth sending again though librdkafka does not call them retriable: the broker may be back by then.
RETRY = {KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._PURGE_QUEUE}
RETRY |= {KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_ENOUGH_REPLICAS}
RETRY |= {KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, KafkaError.LEADER_NOT_AVAILABLE}
RETRY |= {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError._UNKNOWN_PARTITION}
REFUSED_CREDENTIALS = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}
_PENDING = KafkaError(KafkaError._MSG_TIMED_OUT, "no delivery report within the flush timeout")
log = logging.getLogger(__name__)


def producer_settings(config: SinkConfig) -> dict[str, Any]:
    """librdkafka's settings for ``config``: idempotent, acks=all, the batching, compression and security asked."""
    scheme, _, brokers = config.url.partition("://")
    settings: dict[str, Any] = {
        "bootstrap.servers": brokers,
        "client.id": "named-senderr",
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",  # Java's: a host lands where a Java producer would put it
        "compression.type": config.compression,
        "linger.ms": config.linger_ms,
        "batch.size": config.batch_size,
        "message.timeout.ms": int(config.timeout * 1000),
        "logger": log,
    }
    password = read_secret(config.auth.password_env, config.auth.password_file, "password", config.name)
    tls = config.tls if scheme == "kafka+ssl" else None
    settings |= security_settings(tls, config.auth.username, password, config.sasl_mechanism)
    return settings


class KafkaSink:
    """One idempotent producer for one topic."""

    workers = 1  # one batch at a time: with per-partition order kept by librdkafka, a host's lines stay in order

    def __init__(self, config: SinkConfig, ingest_time: str) -> None:
        self.name = config.name
        self.topic = config.topic or ""
        self._form = config.format
        self._ingest_time = ingest_time
        self._flush_timeout = config.timeout + FLUSH_MARGIN
        self._cwd = os.getcwd()  # relative input paths resolve against it in the ids
        settings = producer_settings(config)
        self.max_message_bytes = topic_limit(settings, self.topic, self.name)
        if self.max_message_bytes:  # a batch above the topic's limit would be refused whole
            settings["batch.size"] = min(config.batch_size, self.max_message_bytes)
        self._refusals: list[KafkaError] = []  # the brokers refused the credentials (librdkafka's error_cb)
        self._producer = Producer(settings | {"error_cb": partial(_note_refusal, self._refusals)})

    def encode(self, event: Event) -> tuple[Item, int]:
        ident = event_id(event, self._cwd)
        if self._form == "raw":
            value = event.original.encode("utf-8", "surrogateescape")
        else:
            value = orjson.dumps(identified(event, self._form, self._ingest_time, ident))
        key = (event.host or "").encode("utf-8", "surrogateescape")
        return (key, value, ident), len(key) + len(value) + len(ident)

    def send(self, items: list[Item]) -> Outcome:
        """Produce every item, wait for their reports (bounded), and say what each became."""
        reports: list[KafkaError | None] = [_PENDING] * len(items)
        produced = len(items)
        for index, (key, value, ident) in enumerate(items):
            report = partial(_record, reports, index)
            try:
                self._producer.produce(self.topic, value, key, headers={"event_id": ident}, on_delivery=report)
            except BufferError:  # the producer's own queue is full: the rest waits for the driver's retry
                produced = index
                break
            except KafkaException as exc:  # refused before sending (larger than message.max.bytes)
                reports[index] = exc.args[0]
        if self._producer.flush(self._flush_timeout):
            self._producer.purge(in_queue=True, in_flight=False)  # never sent: safe to send again
            self._producer.poll(0)  # their reports (_PURGE_QUEUE) arrive now
        for index in range(produced, len(items)):
            reports[index] = KafkaError(KafkaError._QUEUE_FULL, "the producer's queue was full")
        if self._refusals:  # the records only time out: say why instead
            refusal = self._refusals[-1]
            self._refusals.clear()
            return Outcome(fatal=topic_refused(self.topic, refusal))
        return classify_reports(items, reports, self.topic)

    def dead_record(self, item: Item) -> dict:
        key, value, ident = item
        record: dict[str, Any] = {"event_id": ident, "key": key.decode("utf-8", "replace")}
        if self._form == "raw":
            record["line"] = value.decode("utf-8", "replace")
        else:
            record["document"] = orjson.Fragment(value)
        return record

    def drop_stored(self, items: list[Item]) -> list[Item]:
        return items  # a producer cannot ask what a topic holds; the ids let the stores behind it tell

    def close(self) -> None:
        self._producer.flush(self._flush_timeout)


def _record(reports: list[KafkaError | None], index: int, error: KafkaError | None, _message: Message) -> None:
    """Delivery report callback: None when the broker confirmed the record."""
    reports[index] = error


def _note_refusal(refusals: list[KafkaError], error: KafkaError) -> None:
    """Error callback: keep what says the credentials are wrong; the rest librdkafka retries and logs itself."""
    if error.code() in REFUSED_CREDENTIALS:
        refusals.append(error)


def topic_limit(settings: dict[str, Any], topic: str, name: str) -> int | None:
    """The topic's ``max.message.bytes``, or None when the brokers cannot tell now; a missing topic stops here.

    Asked once at start, before the first event, so a typo in the topic name is an error then rather
    than a batch that fails later. Brokers that are down now only leave the limit unknown.
    """
    wanted = ("bootstrap.", "security.", "sasl.", "ssl.", "enable.ssl.", "logger")
    admin_settings = {key: value for key, value in settings.items() if key.startswith(wanted)}
    refusals: list[KafkaError] = []
    admin_settings |= {"log_level": 4, "error_cb": partial(_note_refusal, refusals)}  # log_level: no exit notice
    admin = AdminClient(admin_settings)
    try:
        metadata = admin.list_topics(topic, timeout=PROBE_TIMEOUT)
    except KafkaException as exc:
        admin.poll(0)  # a refused login shows only as an error callback, the request as a transport error
        if refusals:
            raise SinkFailed(f"{name}: {topic_refused(topic, refusals[0])}") from None
        log.warning("%s: cannot read the topic's metadata now (%s); going on without it", name, exc.args[0])
        return None
    found = metadata.topics.get(topic)
    error = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART) if found is None else found.error
    if error is not None:
        raise SinkFailed(f"{name}: {topic_refused(topic, error)}")
    try:
        future = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
        entries = next(iter(future.values())).result(timeout=PROBE_TIMEOUT)
        return int(entries["max.message.bytes"].value)
    except (KafkaException, KeyError, ValueError, TypeError) as exc:  # no DescribeConfigs right: batch.size as set
        log.warning("%s: cannot read max.message.bytes of %s (%s)", name, topic, exc)
        return None


def topic_refused(topic: str, error: KafkaError) -> str:
    """Why the sink cannot write to ``topic``, with the fix."""
    if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        return (
            f"topic {topic!r} does not exist; create it (kafka-topics.sh --create --topic {topic} "
            "--partitions N) or enable auto.create.topics.enable on the brokers"
        )
    if error.code() in REFUSED_CREDENTIALS:
        return f"the brokers refused the credentials ({error.str()}); check username, password_env or password_file"
    if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return f"not allowed to write to topic {topic!r}; grant this user WRITE (and IDEMPOTENT_WRITE)"
    return f"topic {topic!r}: {error.name()}: {error.str()}"


def classify_reports(items: list[Item], reports: list[KafkaError | None], topic: str) -> Outcome:
    """What the delivery reports of one batch mean, item by item (pure)."""
    outcome = Outcome()
    for item, error in zip(items, reports, strict=True):
        if error is None:
            outcome.delivered += 1
            continue
        code = error.code()
        reason = f"{error.name()}: {error.str()}"
        if code in DEAD:
            size = len(item[1])
            outcome.dead.append((item, f"{reason} ({size} bytes; the limit is the topic's max.message.bytes)"))
        elif code in RETRY or (error.retriable() and not error.fatal()):
            outcome.retry.append(item)
            outcome.error = reason
            outcome.unanswered = outcome.unanswered or code == KafkaError._MSG_TIMED_OUT
        else:
            outcome.fatal = topic_refused(topic, error)
            return outcome
    return outcome
