"""Settings of ``named-senderr ship``: one typed object of frozen dataclasses.

The same keys come from a TOML file or from a sink URL's query string
(``loki+https://host:3100?tenant=dns&ca_file=/etc/ca.pem``); both go through
``ship_load`` so a misspelt key is refused the same way, naming
the key, where it was found and the fix. Secrets are never values here: only
the names of the environment variables or files that hold them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from named_senderr.errors import ConfigError
from named_senderr.event import ECS_NAMES
from named_senderr.metrics import parse_address
from named_senderr.settings.compression import HTTP_KINDS, http_compression
from named_senderr.settings.kafka import COMPRESSIONS, MAX_BATCH_SIZE, MAX_LINGER_MS, SASL_MECHANISMS, TOPIC_NAME

DEFAULT_DEAD_LETTER = Path("named-senderr-dead-letter.ndjson")
DEFAULT_TAG = "named_senderr.send_error"  # what a forward:// sink tags its events with
DEFAULT_LABELS = ("job", "host", "reason", "message_kind")
# Flat-record fields with few values: one Loki stream per combination stays cheap.
BOUNDED_LABELS = frozenset(
    {"job", "host", "reason", "message_kind", "category", "severity", "program", "zone_class", "scope"}
)
# Fields with a value per client, query or line: as labels they would explode the stream count.
UNBOUNDED_LABELS = frozenset(
    {"client_ip", "client_port", "qname", "view", "offset", "file", "pid", "client_ptr", "signer", "timestamp"}
    | {"message", "reason_text", "hint", "repeat_count", "zone"}
    | {"destination_ip", "destination_port"}  # a zone per transfer: thousands on big servers
)
MAX_LOKI_LABELS = 15
# What VictoriaLogs may take as its message field (``_msg_field``): every key of the flat record, the Loki line.
FLAT_FIELDS = (BOUNDED_LABELS | UNBOUNDED_LABELS) - {"job"}
_VL_TENANT = re.compile(r"^\d{1,10}(:\d{1,10})?$")  # AccountID[:ProjectID], each a uint32 (lib/logstorage/tenant_id.go)
_INDEX_FORBIDDEN = re.compile(r'[\\/*?"<>| ,#:A-Z]')


@dataclass(frozen=True)
class AuthConfig:
    """One way to authenticate; each secret is named by an environment variable or a file."""

    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    api_key_env: str | None = None
    api_key_file: Path | None = None
    bearer_token_env: str | None = None
    bearer_token_file: Path | None = None

    def __post_init__(self) -> None:
        password = self.password_env or self.password_file
        api_key = self.api_key_env or self.api_key_file
        bearer = self.bearer_token_env or self.bearer_token_file
        schemes = [
            name
            for name, on in (("basic", self.username or password), ("api_key", api_key), ("bearer_token", bearer))
            if on
        ]
        if len(schemes) > 1:
            raise ConfigError(f"auth: {' and '.join(schemes)} are both set; keep one way to authenticate")
        for name in ("password", "api_key", "bearer_token"):
            if getattr(self, f"{name}_env") and getattr(self, f"{name}_file"):
                raise ConfigError(f"auth: {name}_env and {name}_file are both set; keep one")
        if self.username and not password:
            raise ConfigError("auth: username without a password; add password_env or password_file")
        if password and not self.username:
            raise ConfigError("auth: a password without a username; add username")


@dataclass(frozen=True)
class TlsConfig:
    """Certificate checks stay on unless ``verify = false`` says otherwise."""

    verify: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    def __post_init__(self) -> None:
        if self.client_key and not self.client_cert:
            raise ConfigError("tls: client_key without client_cert; add client_cert (PEM)")


@dataclass(frozen=True)
class SinkConfig:
    """One destination. ``url`` is plain http(s) (the kind prefix removed); ``name`` is safe to print."""

    kind: str
    name: str
    url: str = ""
    index: str | None = None
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    timeout: float = 30.0
    workers: int = 2
    labels: tuple[str, ...] = DEFAULT_LABELS
    job: str = "named-senderr"
    tenant: str | None = None
    structured_metadata: bool = True
    msg_field: str | None = None  # VictoriaLogs' ``_msg_field`` on its Loki endpoint (the key is ``_msg_field``)
    format: str = "ecs"
    stream_fields: tuple[str, ...] = DEFAULT_LABELS  # VictoriaLogs: the flat names of its _stream_fields
    tag: str = DEFAULT_TAG  # forward: the Fluentd tag of the events
    topic: str | None = None  # kafka: from the URL's path
    # kafka: of each record batch (compression.type), lz4 when empty; HTTP sinks: settings/compression.py
    compression: str = ""
    linger_ms: int = 5  # kafka: how long the producer gathers records into a batch
    batch_size: int = 1_000_000  # kafka: the most bytes of one record batch (at most the topic's max.message.bytes)
    sasl_mechanism: str = "PLAIN"  # kafka: with username and password_env / password_file

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.workers < 1:
            raise ConfigError(f"{self.name}: timeout must be > 0 and workers >= 1")
        if self.kind in ("elasticsearch", "opensearch"):
            _check_index(self.name, self.index or "")
        if self.kind == "loki":
            _check_labels(self.name, self.labels)
        if self.msg_field is not None and self.msg_field not in FLAT_FIELDS:
            raise ConfigError(
                f"{self.name}: _msg_field {self.msg_field!r} is not a field of the record, so VictoriaLogs would "
                f"store 'missing _msg field'; choose one of {', '.join(sorted(FLAT_FIELDS))} (usually message)"
            )
        if self.kind == "victorialogs":
            _check_labels(self.name, self.stream_fields, "stream field", "VictoriaLogs stream")
            _check_tenant(self.name, self.tenant)
        if self.kind == "forward" and not self.tag:
            raise ConfigError(f"{self.name}: the tag is empty; Fluentd routes by tag, e.g. tag={DEFAULT_TAG}")
        formats = ("ecs", "flat", "raw") if self.kind == "kafka" else ("ecs", "flat")
        if self.format not in formats:
            raise ConfigError(f"{self.name}: format {self.format!r} is not one of {', '.join(formats)}")
        if self.kind in HTTP_KINDS:
            object.__setattr__(self, "compression", http_compression(self.name, self.url, self.compression))
        if self.kind == "kafka":
            object.__setattr__(self, "compression", self.compression or "lz4")
            _check_kafka(self)


@dataclass(frozen=True)
class BatchConfig:
    """A batch leaves when it holds ``max_events`` or ``max_bytes``, or its first event waited ``max_wait`` s."""

    max_events: int = 5000
    max_bytes: int = 4 * 1024 * 1024
    max_wait: float = 1.0

    def __post_init__(self) -> None:
        if self.max_events < 1 or self.max_bytes < 1024 or self.max_wait <= 0:
            raise ConfigError("batch: max_events >= 1, max_bytes >= 1024 and max_wait > 0 are required")


@dataclass(frozen=True)
class RetryConfig:
    """Capped exponential backoff with jitter; a batch is given up after ``max_attempts`` or ``deadline`` s."""

    max_attempts: int = 10
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    deadline: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ConfigError("retry: need max_attempts >= 1 and 0 <= initial_backoff <= max_backoff")
        if self.deadline <= 0:
            raise ConfigError("retry: deadline must be > 0 seconds")


@dataclass(frozen=True)
class QueueConfig:
    """``[queue]``: the disk queue's directory (none: memory only), its size bound and what to do when full."""

    dir: Path | None = None
    max_bytes: int = 256 * 1024 * 1024
    when_full: str = "wait"
    shutdown_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.max_bytes < 64 * 1024:
            raise ConfigError(f"queue: max_bytes {self.max_bytes} is below 65536; give the queue at least 64 KiB")
        if self.when_full not in ("wait", "drop"):
            raise ConfigError(f"queue: when_full {self.when_full!r} is not one of wait, drop")
        if self.shutdown_timeout < 0:
            raise ConfigError("queue: shutdown_timeout must be >= 0 seconds")


@dataclass(frozen=True)
class ShipConfig:
    """Everything ``ship`` needs, checked before the first line is read."""

    sinks: tuple[SinkConfig, ...]
    inputs: tuple[str, ...] = ("-",)
    batch: BatchConfig = field(default_factory=BatchConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    dead_letter: Path = DEFAULT_DEAD_LETTER
    timezone: str | None = None
    host: str | None = None
    rejects: Path | None = None
    progress: bool = True
    queue: QueueConfig = field(default_factory=QueueConfig)
    follow: bool = False  # inputs are globs followed across rotation (needs a queue dir for the checkpoint)
    read_from_head: bool = False
    metrics: str | None = None  # HOST:PORT (or PORT, on loopback) for /metrics and /healthz
    # Privacy and rollup stages (normalize/privacy.py, normalize/rollup.py), from --client-ip, --qname, --rollup.
    client_ip: str | None = None
    qname: str | None = None
    rollup: float | None = None

    def __post_init__(self) -> None:
        if self.follow and self.queue.dir is None:
            raise ConfigError(
                "--follow needs a disk queue for its checkpoint; add --queue-dir DIR (or [queue] dir = ...)"
            )
        if self.metrics is not None:
            parse_address(self.metrics)
        if self.follow and "-" in self.inputs:
            raise ConfigError("--follow takes files or globs, not '-' (stdin)")
        if not self.sinks:
            raise ConfigError("no sink given; add --to URL (e.g. --to loki+http://127.0.0.1:3100) or [[sinks]] url")
        if not self.inputs:
            raise ConfigError("no input given; name files, or '-' for stdin")
        names = [s.name for s in self.sinks]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"the same sink is given twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}"
            )
        if sum(s.kind == "stdout" for s in self.sinks) > 1:
            raise ConfigError("stdout: given twice; keep one stdout sink")


def _check_index(name: str, index: str) -> None:
    if not index:
        raise ConfigError(f"{name}: no index in the URL; end it with the index, e.g. .../named-senderr")
    if _INDEX_FORBIDDEN.search(index) or index[0] in "-_+" or index in (".", ".."):
        raise ConfigError(
            f"{name}: {index!r} is not a valid index name; use lowercase letters, digits, '-', '_' or '.', "
            "not starting with '-', '_' or '+'"
        )


def _check_labels(name: str, labels: tuple[str, ...], what: str = "label", per: str = "Loki stream") -> None:
    """Loki labels and VictoriaLogs stream fields alike: each value makes a stream, so only bounded fields."""
    key = what.replace(" ", "_") + "s"
    for label in labels:
        if label in UNBOUNDED_LABELS:
            found = (
                f'query it with `| json | {label}="..."`), and client_ip, client_port, qname and view are '
                "structured metadata"
                if what == "label"
                else f'query it with `{ECS_NAMES[label]}:="..."`, or `{label}:="..."` with format = "flat")'
            )
            raise ConfigError(
                f"{name}: {what} {label!r} is unbounded (one {per} per value) and is refused; "
                f"remove it from {key}: {label} is in every JSON line already ({found}"
            )
        if label not in BOUNDED_LABELS:
            raise ConfigError(f"{name}: unknown {what} {label!r}; choose from {', '.join(sorted(BOUNDED_LABELS))}")
    if len(set(labels)) != len(labels) or len(labels) > MAX_LOKI_LABELS:
        raise ConfigError(f"{name}: {key} must be distinct and at most {MAX_LOKI_LABELS}")


def _check_tenant(name: str, tenant: str | None) -> None:
    parts = (tenant or "0").split(":")
    if not _VL_TENANT.match(tenant or "0") or max(int(p) for p in parts) >= 2**32:
        raise ConfigError(
            f"{name}: tenant {tenant!r} is not a VictoriaLogs tenant; give ACCOUNT or ACCOUNT:PROJECT, "
            'numbers below 4294967296 (e.g. tenant = "12:0"), sent as the AccountID and ProjectID headers'
        )


def _check_kafka(config: SinkConfig) -> None:
    """Refuse what a Kafka producer cannot do, naming the setting and the fix."""
    name = config.name
    topic = config.topic or ""
    if not TOPIC_NAME.match(topic) or topic in (".", ".."):
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
