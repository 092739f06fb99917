"""What a ``kafka://`` sink's settings may be: checked once, before a producer exists.

The values map one to one onto librdkafka's producer settings (sinks/kafka.py); the
limits here are librdkafka's own (CONFIGURATION.md of librdkafka 2.x), so a value it
would refuse at start-up is refused here with the key and the fix instead.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from named_senderr.errors import ConfigError

if TYPE_CHECKING:
    from named_senderr.settings.ship import SinkConfig

COMPRESSIONS = ("zstd", "lz4", "gzip", "snappy", "none")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
MAX_LINGER_MS = 900_000
MAX_BATCH_SIZE = 2_147_483_647
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")  # Kafka's legal topic names (clients/.../internals/Topic.java)


def check_kafka(config: SinkConfig) -> None:
    """Refuse what a Kafka producer cannot do, naming the setting and the fix."""
    name = config.name
    topic = config.topic or ""
    if not _TOPIC.match(topic) or topic in (".", ".."):
        raise ConfigError(
            f"{name}: {topic!r} is not a Kafka topic name; end the URL with the topic, e.g. "
            "kafka://127.0.0.1:9092/named-senderr (letters, digits, '.', '_', '-', at most 249)"
        )
    if config.compression not in COMPRESSIONS:
        raise ConfigError(f"{name}: compression {config.compression!r} is not one of {', '.join(COMPRESSIONS)}")
    if config.sasl_mechanism not in SASL_MECHANISMS:
        raise ConfigError(
            f"{name}: sasl_mechanism {config.sasl_mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}"
        )
    if not 0 <= config.linger_ms <= MAX_LINGER_MS:
        raise ConfigError(f"{name}: linger_ms must be between 0 and {MAX_LINGER_MS}")
    if not 1 <= config.batch_size <= MAX_BATCH_SIZE:
        raise ConfigError(f"{name}: batch_size must be between 1 and {MAX_BATCH_SIZE} bytes")
    auth = config.auth
    if auth.api_key_env or auth.api_key_file or auth.bearer_token_env or auth.bearer_token_file:
        raise ConfigError(
            f"{name}: Kafka takes SASL credentials, not an API key or a bearer token; "
            "set username and password_env (or password_file)"
        )
    tls = config.tls
    if not config.url.startswith("kafka+ssl://") and (tls.ca_file or tls.client_cert or not tls.verify):
        raise ConfigError(f"{name}: TLS settings need a TLS connection; use kafka+ssl://")
