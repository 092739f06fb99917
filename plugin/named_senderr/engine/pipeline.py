"""``run --config pipeline.toml``: named sources, transforms and sinks, wired by ``inputs``, run on the engine.

Each ``[sources.NAME]``, ``[transforms.NAME]`` and ``[sinks.NAME]`` table is
checked by the same code as ``ship``'s TOML (settings.loading): a misspelt key is
refused with the table, the key and a suggestion. The wiring is checked as a
whole (engine/graph.py) before anything is opened. Every line is parsed first,
whatever its source (ParseLines is the one place a candidate is rejected);
then the events go through the graph the ``inputs`` draw (engine/topology.py):
a source may feed sinks straight and transforms too, sources may take
different branches, and each sink gets what its inputs pass on, through
``run_pipeline``, with or without the ``[queue]``. An ack waits for every sink
a batch's events went to and for every transform still holding some.
A new source type is one entry in ``SOURCES``: its settings and how to open it.
"""

from __future__ import annotations

import difflib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from named_senderr.engine.contracts import Source
from named_senderr.engine.graph import transform_order
from named_senderr.engine.printing import Warn
from named_senderr.engine.shipping import ShipResult, new_result, run_pipeline
from named_senderr.engine.stages import RollupConfig, TransformConfig, stages
from named_senderr.engine.topology import Node, Topology
from named_senderr.errors import ConfigError
from named_senderr.normalize.privacy import PrivacyConfig, compile_privacy
from named_senderr.normalize.rollup import parse_window
from named_senderr.settings.kafka_source import KafkaSettings
from named_senderr.settings.loading import build_kwargs, make, read_toml, section, sink_from_url, unknown_key
from named_senderr.settings.secrets import read_secret
from named_senderr.settings.ship import BatchConfig, QueueConfig, RetryConfig, ShipConfig, SinkConfig
from named_senderr.sources.file_tail import TailConfig
from named_senderr.sources.files import SAMPLE_LOG, FileSource
from named_senderr.sources.follow import FollowSource
from named_senderr.sources.forward_server import DEFAULT_KEYS, ForwardServerConfig, ForwardSource
from named_senderr.telemetry import Stats

EXAMPLE = "conf/pipeline.toml"
TOP_KEYS = frozenset({"timezone", "host", "dead_letter", "rejects", "batch", "retry", "queue", "metrics"})
TOP_KEYS |= {"sources", "transforms", "sinks"}


@dataclass(frozen=True)
class FileSettings:
    """``type = "file"``: files, plain or gzip, read once from start to end in the order given."""

    paths: tuple[Path, ...] = ()
    sample: bool = False  # also the log shipped with named-senderr (what ``ship --sample`` reads)

    def __post_init__(self) -> None:
        if not self.paths and not self.sample:
            raise ConfigError('paths names no file; e.g. paths = ["/var/log/named/named.log"] (or sample = true)')
        if any(path.name == "-" for path in self.paths):
            raise ConfigError('paths: "-" is standard input; read it with a source of type = "stdin"')

    def inputs(self) -> tuple[str, ...]:
        return tuple(map(str, self.paths)) + ((str(SAMPLE_LOG),) if self.sample else ())


@dataclass(frozen=True)
class StdinSettings:
    """``type = "stdin"``: standard input until it ends."""


@dataclass(frozen=True)
class FollowSettings:
    """``type = "follow"``: globs followed across rotation; the checkpoint moves once the events are durable."""

    paths: tuple[Path, ...] = ()
    checkpoint: Path | None = None  # unset: NAME.checkpoint.json in the [queue] dir
    read_from_head: bool = False
    poll_interval: float = 0.25
    rotate_wait: float = 5.0
    allow_checkpoint_symlink: bool = False

    def __post_init__(self) -> None:
        if self.checkpoint is None:
            raise ConfigError(
                'no checkpoint; add checkpoint = "FILE" (where it keeps how far it read), or a [queue] dir to keep it in'
            )
        self.tail()  # its own checks, now rather than once running

    def tail(self) -> TailConfig:
        return TailConfig(tuple(map(str, self.paths)), self.checkpoint, self.poll_interval, self.rotate_wait,
                          self.read_from_head, self.allow_checkpoint_symlink)  # fmt: skip


@dataclass(frozen=True)
class ForwardSettings:
    """``type = "forward"``: Fluentd / Fluent Bit Forward frames; a chunk is acknowledged once its events are durable."""

    host: str = "127.0.0.1"
    port: int = 24224
    keys: tuple[str, ...] = DEFAULT_KEYS  # record fields of the log line, the first present is read
    shared_key_file: Path | None = None  # the handshake's key: in a file or a variable, never here
    shared_key_env: str | None = None

    def __post_init__(self) -> None:
        if self.shared_key_file is not None and self.shared_key_env is not None:
            raise ConfigError("shared_key_file and shared_key_env are both set; keep one")
        self.server()  # the receiver's own checks, and the key read, now rather than once running

    def server(self) -> ForwardServerConfig:
        key = read_secret(self.shared_key_env, self.shared_key_file, "shared_key", "the forward source")
        return ForwardServerConfig(self.host, self.port, self.keys, key)


class _ToWarn(logging.Handler):
    """A source's log lines (a receiver's) onto the run's warnings, as every other message of ``run``."""

    def __init__(self, warn: Warn) -> None:
        super().__init__(logging.INFO)
        self.warn = warn

    def emit(self, record: logging.LogRecord) -> None:
        self.warn(record.getMessage())


def open_forward(settings: ForwardSettings, context: SourceContext) -> ForwardSource:
    log = logging.getLogger(f"named_senderr.{context.name}")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.handlers = [_ToWarn(context.warn)]
    return ForwardSource(settings.server(), context.stats, log, name=context.name)


def open_kafka(settings: KafkaSettings, context: SourceContext) -> Source:
    """Imported here: confluent-kafka is an extra, needed only by pipelines that read Kafka."""
    try:
        from named_senderr.sources.kafka import KafkaSource
    except ImportError as exc:
        raise ConfigError(f"{context.name}: type = \"kafka\" needs confluent-kafka ({exc}); "
                          "pip install 'named-senderr[kafka]'") from None  # fmt: skip
    return KafkaSource(settings, context.stats, context.warn, name=context.name)


@dataclass(frozen=True)
class SourceContext:
    """What every source is opened with: its name (``sources.NAME``), the run's counters, where warnings go."""

    name: str
    stats: Stats
    warn: Warn


@dataclass(frozen=True)
class SourceKind:
    """One source type: its settings (a frozen dataclass, checked like every table) and how to open it.

    ``endless``: it reads until stopped, so a queued sink out of retries waits and tries again rather than
    ending the run. ``uses``: what two sources cannot share (stdin, a checkpoint file, later a port).
    """

    settings: type
    open: Callable[[Any, SourceContext], Source]
    endless: bool = False
    uses: Callable[[Any], Iterable[str]] = lambda settings: ()


SOURCES: dict[str, SourceKind] = {
    "file": SourceKind(FileSettings, lambda s, c: FileSource(s.inputs(), c.stats, c.warn, name=c.name)),
    "stdin": SourceKind(StdinSettings, lambda s, c: FileSource(("-",), c.stats, c.warn, name=c.name),
                        uses=lambda s: ["standard input"]),
    "follow": SourceKind(FollowSettings, lambda s, c: FollowSource(s.tail(), c.stats, c.warn, name=c.name),
                         endless=True, uses=lambda s: [f"the checkpoint {s.checkpoint}"]),
    "forward": SourceKind(ForwardSettings, open_forward, endless=True,
                          uses=lambda s: [f"port {s.port} of {s.host}"] if s.port else []),
    "kafka": SourceKind(KafkaSettings, open_kafka, endless=True),
}  # fmt: skip
TRANSFORMS: dict[str, type] = {"privacy": PrivacyConfig, "rollup": RollupConfig}


@dataclass(frozen=True)
class SourceSpec:
    name: str
    kind: str
    settings: Any


@dataclass(frozen=True)
class TransformSpec:
    name: str
    config: TransformConfig
    inputs: tuple[str, ...]  # names of sources and transforms


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: where /metrics and /healthz are served."""

    address: str = ""

    def __post_init__(self) -> None:
        if not self.address:
            raise ConfigError('metrics: no address; add address = "9108" (loopback) or "HOST:PORT"')


@dataclass(frozen=True)
class PipelineConfig:
    """A checked pipeline: sources, the transforms (each after its inputs), and the delivery (sinks, queue, metrics)."""

    sources: tuple[SourceSpec, ...]
    transforms: tuple[TransformSpec, ...]
    sinks: tuple[str, ...]  # the table names, in the order of delivery.sinks
    reads: tuple[tuple[str, ...], ...]  # each sink's inputs, in the same order
    delivery: ShipConfig

    @property
    def endless(self) -> bool:
        return any(SOURCES[source.kind].endless for source in self.sources)

    def describe(self) -> str:
        """One line a person can check the wiring by: the chain, or what each transform and sink reads."""
        kinds = {RollupConfig: "rollup", PrivacyConfig: "privacy"}
        label = {s.name: f"sources.{s.name} ({s.kind})" for s in self.sources}
        label |= {t.name: f"transforms.{t.name} ({kinds[type(t.config)]})" for t in self.transforms}
        sinks = [f"sinks.{name} ({c.name})" for name, c in zip(self.sinks, self.delivery.sinks, strict=True)]
        feed = {s.name for s in self.sources}
        chain = True
        for transform in self.transforms:
            chain = chain and set(transform.inputs) == feed
            feed = {transform.name}
        if chain and all(set(reads) == feed for reads in self.reads):
            return " -> ".join([", ".join(label[s.name] for s in self.sources), *(label[t.name] for t in
                                self.transforms), ", ".join(sinks)])  # fmt: skip
        wires = [(t.inputs, label[t.name]) for t in self.transforms] + list(zip(self.reads, sinks, strict=True))
        return "; ".join(f"{', '.join(label[name] for name in inputs)} -> {to}" for inputs, to in wires)

    def topology(self, clock: Callable[[], float] = time.monotonic) -> Topology:
        """The stages, each reading its inputs by their qualified names (the sources' own names)."""
        table = {s.name: "sources" for s in self.sources} | {t.name: "transforms" for t in self.transforms}
        built = stages([t.config for t in self.transforms], clock)

        def names(inputs: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(f"{table[name]}.{name}" for name in inputs)

        nodes = [Node(f"transforms.{t.name}", stage, names(t.inputs))
                 for t, stage in zip(self.transforms, built, strict=True)]  # fmt: skip
        return Topology(nodes, [names(reads) for reads in self.reads])


def run_config(pipeline: PipelineConfig, warn: Warn, report: Callable[[ShipResult], None] | None = None,
               stop: threading.Event | None = None) -> ShipResult:  # fmt: skip
    """Open the sources and run them through ``run_pipeline`` along the graph of the file."""
    result = new_result(pipeline.delivery)
    sources = [SOURCES[spec.kind].open(spec.settings, SourceContext(f"sources.{spec.name}", result.stats, warn))
               for spec in pipeline.sources]  # fmt: skip
    return run_pipeline(sources, pipeline.delivery, result, warn, report, stop=stop,
                        topology=pipeline.topology(), endless=pipeline.endless)  # fmt: skip


def load_pipeline(path: Path) -> PipelineConfig:
    """Read and check ``path`` whole: every table, every key, the wiring. Nothing is opened yet."""
    table = read_toml(path, EXAMPLE)
    where, base = str(path), path.parent
    for key in table:
        if key not in TOP_KEYS:
            raise ConfigError(unknown_key(key, where, TOP_KEYS))
    queue = section(QueueConfig, table, "queue", where, base)
    sources = _components(table, "sources", where, required=True)
    specs = tuple(_source(name, t, f"{where}: sources.{name}", base, queue) for name, t in sources.items())
    _check_shared(where, specs)
    transforms = _components(table, "transforms", where)
    built = {name: _transform(t, f"{where}: transforms.{name}", base) for name, t in transforms.items()}
    sinks = _components(table, "sinks", where, required=True)
    sink_configs = tuple(_sink(t, f"{where}: sinks.{name}", base) for name, t in sinks.items())
    wiring = {name: _inputs(t, f"{where}: transforms.{name}") for name, t in transforms.items()}
    sink_wiring = {name: _inputs(t, f"{where}: sinks.{name}") for name, t in sinks.items()}
    metrics = section(MetricsConfig, table, "metrics", where).address if "metrics" in table else None
    top = {k: v for k, v in table.items() if k in ("timezone", "host", "dead_letter", "rejects")}
    order = transform_order(where, list(sources), wiring, sink_wiring)
    _check_sink_names(where, list(sinks), sink_configs)
    delivery = make(
        ShipConfig,
        where,
        sinks=sink_configs,
        batch=section(BatchConfig, table, "batch", where),
        retry=section(RetryConfig, table, "retry", where),
        queue=queue,
        metrics=metrics,
        **build_kwargs(ShipConfig, top, where, "", base),
    )
    steps = tuple(TransformSpec(name, built[name], tuple(wiring[name])) for name in order)
    return PipelineConfig(specs, steps, tuple(sinks), tuple(tuple(sink_wiring[name]) for name in sinks), delivery)


def _components(table: dict, key: str, where: str, required: bool = False) -> dict[str, dict]:
    value = table.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(t, dict) for t in value.values()):
        ship = " (the [[sinks]] list is ship --config's format)" if key == "sinks" else ""
        raise ConfigError(f"{where}: {key} must be tables by name, [{key}.NAME]{ship}")
    if required and not value:
        example = '[sources.logs] type = "file"' if key == "sources" else '[sinks.out] url = "stdout:"'
        raise ConfigError(f"{where}: no [{key}.NAME] table; add one, e.g. {example} (see {EXAMPLE})")
    return value


def _kind(table: dict, where: str, kinds: Iterable[str], what: str) -> str:
    kind = table.get("type")
    names = sorted(kinds)
    if not isinstance(kind, str):
        raise ConfigError(f'{where}: no type; add type = "{names[0]}" (one of {", ".join(names)})')
    if kind not in names:
        close = difflib.get_close_matches(kind, names, n=1)
        fix = f"did you mean {close[0]!r}?" if close else f"one of {', '.join(names)}"
        raise ConfigError(f"{where}: type {kind!r} is no {what}; {fix}")
    return kind


def _source(name: str, table: dict, where: str, base: Path, queue: QueueConfig) -> SourceSpec:
    kind = _kind(table, where, SOURCES, "source")
    settings = SOURCES[kind].settings
    if "inputs" in table:
        raise ConfigError(f"{where}: a source has no inputs; remove the key (transforms and sinks name theirs)")
    kwargs = build_kwargs(settings, {k: v for k, v in table.items() if k != "type"}, where, "", base)
    if "checkpoint" in {f.name for f in fields(settings)} and "checkpoint" not in kwargs and queue.dir is not None:
        kwargs["checkpoint"] = queue.dir / f"{name}.checkpoint.json"  # kept with the events it vouches for
    return SourceSpec(name, kind, make(settings, where, **kwargs))


def _check_shared(where: str, specs: Iterable[SourceSpec]) -> None:
    users: dict[str, str] = {}
    for spec in specs:
        for thing in SOURCES[spec.kind].uses(spec.settings):
            if thing in users:
                raise ConfigError(f"{where}: sources.{users[thing]} and sources.{spec.name} both use {thing}; keep one")
            users[thing] = spec.name


def _inputs(table: dict, where: str) -> list[str]:
    inputs = table.get("inputs", [])
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise ConfigError(f'{where}: inputs must be a list of names, e.g. inputs = ["logs"]')
    return inputs


def _transform(table: dict, where: str, base: Path) -> TransformConfig:
    kind = _kind(table, where, TRANSFORMS, "transform")
    settings = {k: v for k, v in table.items() if k not in ("type", "inputs")}
    if isinstance(settings.get("window"), str):  # a duration: 60s, 5m, 1h or seconds
        try:
            settings["window"] = parse_window(settings["window"])
        except ConfigError:
            raise ConfigError(f'{where}: window {settings["window"]!r}: give 1 s or more, e.g. "60s" or "5m"') from None
    config = make(TRANSFORMS[kind], where, **build_kwargs(TRANSFORMS[kind], settings, where, ""))
    if isinstance(config, PrivacyConfig):
        config = PrivacyConfig(_key_file(config.client_ip, base), _key_file(config.qname, base))
        if config.client_ip is None and config.qname is None:
            raise ConfigError(f"{where}: changes nothing; set client_ip, qname or both, or remove the table")
        try:
            compile_privacy(config)  # the key file is read now, so a missing one is named before anything runs
        except ConfigError as exc:
            text = str(exc).replace("--client-ip", "client_ip").replace("--qname", "qname")
            raise ConfigError(f"{where}: {text}") from None
    return config


def _key_file(mode: str | None, base: Path) -> str | None:
    """``hash:KEYFILE`` with KEYFILE relative to the pipeline file, as every path in it is."""
    kind, _, key = (mode or "").partition(":")
    if kind != "hash" or not key or key.startswith("env:"):
        return mode
    return f"hash:{base / Path(key).expanduser()}"  # an absolute path stays as it is


def _sink(table: dict, where: str, base: Path) -> SinkConfig:
    url = table.get("url")
    if not isinstance(url, str):
        raise ConfigError(f'{where}: no url; add url = "stdout:" or a --to URL, e.g. "loki+http://127.0.0.1:3100"')
    return sink_from_url(url, {k: v for k, v in table.items() if k not in ("url", "inputs")}, where, base)


def _check_sink_names(where: str, names: list[str], configs: tuple[SinkConfig, ...]) -> None:
    """Sinks are known to the queue and the counters by their URL: two tables may not name the same one."""
    seen: dict[str, str] = {}
    for name, config in zip(names, configs, strict=True):
        key = "stdout" if config.kind == "stdout" else config.name
        if key in seen:
            raise ConfigError(f"{where}: sinks.{seen[key]} and sinks.{name} both send to {config.name}; keep one")
        seen[key] = name
