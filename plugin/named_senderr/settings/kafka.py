"""What Kafka settings may be, for the sink (settings/ship.py) and the source (settings/kafka_source.py).

The values map one to one onto librdkafka's settings (sinks/kafka.py, sources/kafka.py);
the limits here are librdkafka's own (CONFIGURATION.md of librdkafka 2.x), so a value it
would refuse at start-up is refused before with the key and the fix instead.
"""

from __future__ import annotations

import re

COMPRESSIONS = ("zstd", "lz4", "gzip", "snappy", "none")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
MAX_LINGER_MS = 900_000
MAX_BATCH_SIZE = 2_147_483_647
TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")  # Kafka's legal topic names (clients/.../internals/Topic.java)
