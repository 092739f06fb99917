"""Open a sink by its kind, the one place that maps configuration to sink classes."""

from __future__ import annotations

import sys

from named_senderr.errors import ConfigError
from named_senderr.settings.ship import SinkConfig
from named_senderr.sinks.elasticsearch import BulkSink
from named_senderr.sinks.forward import ForwardSink
from named_senderr.sinks.loki import LokiSink
from named_senderr.sinks.outcome import Sink
from named_senderr.sinks.stdout import StdoutSink
from named_senderr.sinks.victorialogs import VictoriaLogsSink


def open_sink(config: SinkConfig, ingest_time: str) -> Sink:
    if config.kind == "loki":
        return LokiSink(config, ingest_time)
    if config.kind == "victorialogs":
        return VictoriaLogsSink(config, ingest_time)
    if config.kind == "forward":
        return ForwardSink(config, ingest_time)
    if config.kind == "kafka":
        return open_kafka(config, ingest_time)
    if config.kind == "stdout":
        return StdoutSink(config, ingest_time, sys.stdout.buffer)
    return BulkSink(config, ingest_time)


def open_kafka(config: SinkConfig, ingest_time: str) -> Sink:
    """The Kafka sink needs confluent-kafka, an optional extra: say how to get it rather than fail to import."""
    try:
        from named_senderr.sinks.kafka import KafkaSink
    except ImportError as exc:
        raise ConfigError(
            f"{config.name}: Kafka sinks need confluent-kafka ({exc}); pip install 'named-senderr[kafka]'"
        ) from None
    return KafkaSink(config, ingest_time)
