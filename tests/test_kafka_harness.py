"""The Kafka harness itself: the broker the Kafka tests run against answers, and a reserved topic is private."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from tests.servers.kafka import new_topic


def test_new_topic_is_created_with_its_partitions(kafka_bootstrap: str) -> None:
    topic = new_topic(kafka_bootstrap, partitions=3)
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(topic, timeout=10)
    assert len(metadata.topics[topic].partitions) == 3


def test_each_call_reserves_a_different_topic(kafka_bootstrap: str) -> None:
    assert new_topic(kafka_bootstrap) != new_topic(kafka_bootstrap)
