"""The Kafka harness itself: the broker the Kafka tests run against answers, and a reserved topic is private."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import AdminClient

from tests.servers import kafka
from tests.servers.kafka import new_topic


def test_new_topic_is_created_with_its_partitions(kafka_bootstrap: str) -> None:
    topic = new_topic(kafka_bootstrap, partitions=3)
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(topic, timeout=10)
    assert len(metadata.topics[topic].partitions) == 3


def test_each_call_reserves_a_different_topic(kafka_bootstrap: str) -> None:
    assert new_topic(kafka_bootstrap) != new_topic(kafka_bootstrap)


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 encodes to "-" first in URL-safe base64: the storage tool would read such an id as an option.
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" + bytes(15))])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    assert kafka.cluster_id() == "AQAAAAAAAAAAAAAAAAAAAA"
