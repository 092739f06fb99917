"""Apache Kafka 4.x (Apache-2.0): one broker in KRaft mode from Maven Central's jars, on loopback.

``org.apache.kafka:kafka_2.13`` and its runtime dependencies are copied once by Maven into the cache;
a session formats a throw-away log dir with the ``StorageTool`` (what ``kafka-storage.sh format
--standalone`` runs) and starts ``kafka.Kafka`` as broker and controller with the machine's Java 17.
Besides PLAINTEXT it listens with SASL/PLAIN (user :data:`SASL_USER`, password :data:`SASL_PASSWORD`) at
``Server.endpoints["sasl"]``, for the sinks' credentials. Topics are never created on first use (``auto.create.topics.enable=false``): each test reserves its own
with :func:`new_topic`, so no two tests share one and a typo in a topic name is an error, as it should be.
"""

from __future__ import annotations

import base64
import os
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from . import (
    STARTUP_TIMEOUT,
    Server,
    ServerError,
    cache_dir,
    cache_lock,
    free_port,
    launch,
    new_data_dir,
    require_tool,
    run_logged,
)
from .java import DEPENDENCY_PLUGIN, java_home

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

VERSION = os.environ.get("NAMED_SENDERR_KAFKA_VERSION", "4.4.0")
SCALA = "2.13"
SASL_USER, SASL_PASSWORD = "alice", "alice-secret"  # a test broker's only account; nothing else knows it
COMPLETE = ".complete"  # written last: a half-copied libs dir is never mistaken for an install

POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>named-senderr.tests</groupId>
  <artifactId>kafka-server</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
"""

# Broker logging: warnings and errors to the server log, plus the line that says it started.
LOG4J2_PROPERTIES = """status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = STDOUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def prepare(version: str = VERSION) -> Path:
    """Copy the broker's jars into ``<cache>/kafka-<version>/libs`` once; later calls return at once."""
    home = cache_dir() / f"kafka-{version}"
    if (home / COMPLETE).exists():
        return home
    mvn = require_tool("mvn")
    with cache_lock(f"kafka-{version}"):
        if (home / COMPLETE).exists():
            return home
        home.mkdir(parents=True, exist_ok=True)
        (home / "pom.xml").write_text(POM.format(scala=SCALA, version=version))
        libs = home / "libs"
        log = home / "prepare.log"
        log.write_text("")
        goal = f"{DEPENDENCY_PLUGIN}:copy-dependencies"
        run_logged(
            [mvn, "-B", "-ntp", goal, "-DincludeScope=runtime", f"-DoutputDirectory={libs}"],
            log,
            cwd=home,
        )
        (home / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        (home / COMPLETE).write_text(version + "\n")
    return home


def cluster_id() -> str:
    """A fresh KRaft cluster id: 16 random bytes, URL-safe base64 without padding (what ``random-uuid`` prints).

    An id that starts with ``-`` is drawn again, as Kafka's own ``Uuid.randomUuid`` does: the storage
    tool's argument parser would read it as an option (one start in 64 failed that way).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def properties(data: Path, port: int, controller_port: int, sasl_port: int) -> str:
    """``server.properties`` for one node that is its own controller, with every replication factor at 1."""
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule required"
    listeners = f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
    listeners += f",SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": listeners,
        "advertised.listeners": listeners,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": f'{plain} user_{SASL_USER}="{SASL_PASSWORD}";',
        "log.dirs": str(data / "logs"),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def java_command(home: Path, data: Path, main: str, *args: str) -> list[str]:
    """``java`` with the broker's classpath, a 512 MiB heap and the quiet logging config."""
    java = str(Path(java_home(), "bin", "java"))
    return [
        java,
        "-Xms256m",
        "-Xmx512m",
        f"-Djava.io.tmpdir={data}",
        f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
        "-cp",
        str(home / "libs" / "*"),
        main,
        *args,
    ]


def port_accepts(port: int, timeout: float) -> bool:
    """True when something accepts TCP connections on the loopback ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def broker_answers(bootstrap: str, timeout: float) -> bool:
    """True when the broker serves metadata: the port accepts and an AdminClient lists topics."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    if not port_accepts(int(bootstrap.rsplit(":", 1)[1]), timeout):
        return False
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "logger": _quiet})
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def _quiet(*_: object) -> None:
    """librdkafka log callback that drops its connection-refused chatter during startup polls."""


def start(home: Path, version: str = VERSION, timeout: float = STARTUP_TIMEOUT) -> Server:
    """Format a fresh log dir and start one KRaft broker+controller on free loopback ports.

    ``Server.url`` is the bootstrap address ``127.0.0.1:PORT``; ``kill()`` then ``resume()`` restarts the
    broker on the same port and log dir, as a crash and a restart would.
    """
    data = new_data_dir("kafka")
    port, controller_port, sasl_port = free_port(), free_port(), free_port()
    config = data / "server.properties"
    config.write_text(properties(data, port, controller_port, sasl_port))
    format_cmd = java_command(home, data, "kafka.tools.StorageTool", "format", "--standalone")
    run_logged([*format_cmd, "-t", cluster_id(), "-c", str(config)], data / "server.log", cwd=data)
    bootstrap = f"127.0.0.1:{port}"
    cmd = java_command(home, data, "kafka.Kafka", str(config))
    try:
        server = launch(
            "kafka",
            version,
            cmd,
            port=port,
            health_path="",
            data_dir=data,
            timeout=timeout,
            probe=lambda wait: broker_answers(bootstrap, wait),
            url=bootstrap,
        )
    except ImportError as exc:  # confluent-kafka is in the test extra; say so rather than crash
        raise ServerError(f"the Kafka health check needs confluent-kafka ({exc}); pip install -e '.[test]'") from exc
    server.endpoints["sasl"] = f"127.0.0.1:{sasl_port}"
    return server


def new_topic(bootstrap: str, partitions: int = 1, config: dict[str, str] | None = None) -> str:
    """Create a topic with a fresh uuid name (one per test) and return the name once the broker has it."""
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"t-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})], operation_timeout=30)
    futures[name].result(timeout=60)
    deadline = time.monotonic() + 60
    while not has_leaders(admin, name, partitions):  # created is not yet writable: wait for the leaders
        if time.monotonic() > deadline:
            raise ServerError(f"topic {name} has no leader for every partition after 60 s")
        time.sleep(0.1)
    return name


def has_leaders(admin: AdminClient, topic: str, partitions: int) -> bool:
    """True when the metadata shows a leader for each of the topic's ``partitions``."""
    found = admin.list_topics(topic, timeout=10).topics.get(topic)
    if found is None or found.error is not None or len(found.partitions) < partitions:
        return False
    return all(p.leader >= 0 and p.error is None for p in found.partitions.values())
