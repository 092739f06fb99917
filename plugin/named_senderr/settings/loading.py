"""Build a ShipConfig from a TOML file, ``--to`` URLs and command-line values.

A TOML key and a URL query key are checked by the same code against the
dataclass fields, so both refuse a misspelt key with the key, the place and a
suggestion. Relative paths in a file are taken relative to that file.
"""

from __future__ import annotations

import contextlib
import difflib
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, urlsplit

from named_senderr.errors import ConfigError
from named_senderr.settings.ship import (
    AuthConfig,
    BatchConfig,
    QueueConfig,
    RetryConfig,
    ShipConfig,
    SinkConfig,
    TlsConfig,
)

SCHEMES = (
    "elasticsearch+http",
    "elasticsearch+https",
    "opensearch+http",
    "opensearch+https",
    "loki+http",
    "loki+https",
    "victorialogs+http",
    "victorialogs+https",
    "forward",
    "kafka",
    "kafka+ssl",
)
URL_FORMS = (
    "elasticsearch+https://HOST:9200/INDEX, opensearch+https://HOST:9200/INDEX, loki+http://HOST:3100, "
    "victorialogs+http://HOST:9428, forward://HOST:24224, kafka://HOST:9092[,HOST:9092]/TOPIC or stdout:"
)
KAFKA_FORM = "kafka://HOST:PORT[,HOST:PORT...]/TOPIC (kafka+ssl:// for TLS), e.g. kafka://127.0.0.1:9092/named-senderr"
LOKI_PUSH_PATH = "/loki/api/v1/push"
VICTORIALOGS_INSERT_PATH = "/insert/jsonline"
# A secret given as a value, and the setting that names where it is kept instead.
SECRET_KEYS = {"password": "password", "secret": "password", "api_key": "api_key", "apikey": "api_key"}
SECRET_KEYS |= {"token": "bearer_token", "bearer_token": "bearer_token"}
_COMMON = frozenset({"url", "auth", "tls", "timeout", "workers"})
KIND_KEYS = {
    "elasticsearch": _COMMON,
    "opensearch": _COMMON,
    "loki": _COMMON | {"labels", "job", "tenant", "structured_metadata", "_msg_field"},
    "victorialogs": _COMMON | {"stream_fields", "job", "tenant", "format"},
    "stdout": frozenset({"url", "format"}),
    "forward": frozenset({"url", "format", "tag", "timeout"}),
    "kafka": frozenset({"url", "auth", "tls", "timeout", "format", "compression", "linger_ms", "batch_size"})
    | {"sasl_mechanism"},
}
# VictoriaLogs' own names for its ingestion settings, and the SinkConfig field each sets. Its Loki endpoint
# renames the named field of the parsed line to _msg (VictoriaLogs v1.52.1 app/vlinsert/loki/loki_json.go:168-171).
VICTORIALOGS_KEYS = {"_msg_field": "msg_field"}
# Its other settings that the Loki endpoint ignores or the labels already set (v1.52.1): _time comes from the
# entry (loki_json.go:139-148,178; insertutil/common_params.go:348 leaves the time fields out), the stream from
# the labels unless _stream_fields overrides them (loki_json.go:43,173-176).
NOT_ON_LOKI = {
    "_time_field": "each Loki entry carries its own time, and VictoriaLogs' Loki endpoint takes _time from it",
    "_stream_fields": "VictoriaLogs makes the Loki labels its stream fields; choose them with labels=... instead",
}
_AUTH_KEYS = frozenset(f.name for f in fields(AuthConfig))
_TLS_KEYS = frozenset(f.name for f in fields(TlsConfig))
_TOP_KEYS = frozenset({"inputs", "timezone", "host", "dead_letter", "rejects", "batch", "retry", "sinks", "queue"})
_TOP_KEYS |= {"follow", "read_from_head", "metrics"}


def load_ship_config(
    path: Path | None, urls: Sequence[str], overrides: Mapping[str, object], default_urls: Sequence[str] = ()
) -> ShipConfig:
    """``urls`` (from ``--to``) replace the file's sinks; ``overrides`` (command-line values) replace its keys.

    An override named ``queue.KEY`` replaces KEY of the ``[queue]`` table. ``default_urls`` are the sinks
    when neither names one (the streaming commands print on stdout).
    """
    table = read_toml(path) if path else {}
    where = str(path) if path else "the command line"
    base = path.parent if path else None
    for key in table:
        if key not in _TOP_KEYS:
            raise ConfigError(unknown_key(key, where, _TOP_KEYS))
    sink_tables = table.get("sinks", [])
    if not isinstance(sink_tables, list) or not all(isinstance(t, dict) for t in sink_tables):
        raise ConfigError(f"{where}: sinks must be an array of tables: [[sinks]] with url = ...")
    if urls or not sink_tables:
        sinks = tuple(sink_from_url(url, {}, "--to", None) for url in urls or default_urls)
    else:
        sinks = tuple(_sink_from_table(t, f"{where}: sinks[{i}]", base) for i, t in enumerate(sink_tables))
    top = {k: v for k, v in table.items() if k not in ("batch", "retry", "sinks", "queue")}
    kwargs = build_kwargs(ShipConfig, top, where, "", base, skip=("sinks", "batch", "retry", "progress", "queue"))
    kwargs.update({k: v for k, v in overrides.items() if v is not None and not k.startswith("queue.")})
    queue = build_kwargs(QueueConfig, _table(table, "queue", where), where, "queue", base)
    queue.update({k[6:]: v for k, v in overrides.items() if v is not None and k.startswith("queue.")})
    return make(
        ShipConfig,
        where,
        sinks=sinks,
        batch=section(BatchConfig, table, "batch", where),
        retry=section(RetryConfig, table, "retry", where),
        queue=make(QueueConfig, where, **queue),
        **kwargs,
    )


def read_toml(path: Path, example: str = "conf/named-senderr.toml") -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file; see {example} for an example") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax at that line") from exc


def sink_from_url(url: str, settings: dict, where: str, base: Path | None) -> SinkConfig:
    """A sink from its URL; ``settings`` are the other keys of its TOML table, if any."""
    if url.split(":", 1)[0] == "stdout":
        options = url[len("stdout:") :].lstrip("/").lstrip("?")
        return _sink("stdout", "stdout:", "", None, settings, _query(options, "stdout:", where), where, base)
    parts = urlsplit(url)
    if parts.scheme in ("kafka", "kafka+ssl"):
        return _kafka_sink(parts, settings, where, base)
    if parts.scheme not in SCHEMES or not parts.hostname:
        shown = url.split("@")[-1] if "@" in url else url
        raise ConfigError(f"{where}: {shown!r} is not a sink URL; use {URL_FORMS}")
    kind, _, transport = parts.scheme.partition("+")
    host = parts.netloc.rpartition("@")[2]
    name = f"{parts.scheme}://{host}{parts.path.rstrip('/')}"
    _refuse_password(parts, name, where)
    query = _query(parts.query, name, where)
    if kind == "forward":
        return _forward_sink(parts, name, settings, query, where, base)
    if parts.username:
        query["username"] = parts.username
    path = parts.path.rstrip("/")
    index = None
    if kind == "loki":
        path = path.removesuffix(LOKI_PUSH_PATH)
    elif kind == "victorialogs":
        path = path.removesuffix(VICTORIALOGS_INSERT_PATH)
    else:
        path, _, index = path.rpartition("/")
    return _sink(kind, name, f"{transport}://{host}{path}", index or None, settings, query, where, base)


def _refuse_password(parts: SplitResult, name: str, where: str) -> None:
    if parts.password is not None:
        raise ConfigError(
            f"{where}: {name}: the URL carries a password, which would show in process lists and logs; "
            "put it in an environment variable and set password_env (or a file and set password_file)"
        )


def _kafka_sink(parts: SplitResult, settings: dict, where: str, base: Path | None) -> SinkConfig:
    """``kafka://HOST:PORT[,HOST:PORT]/TOPIC``: brokers to bootstrap from, and the topic; SASL user as ``USER@``."""
    userinfo, _, brokers = parts.netloc.rpartition("@")
    topic = parts.path.strip("/")
    name = f"{parts.scheme}://{brokers}/{topic}"
    _refuse_password(parts, name, where)
    for broker in brokers.split(","):
        host, _, port = broker.rpartition(":")
        if not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{where}: {name}: {broker!r} is not HOST:PORT; a Kafka sink is {KAFKA_FORM}")
    if "/" in topic or not topic:
        raise ConfigError(f"{where}: {name}: the path must be one topic; a Kafka sink is {KAFKA_FORM}")
    query = _query(parts.query, name, where)
    if userinfo:
        query["username"] = userinfo
    return _sink("kafka", name, f"{parts.scheme}://{brokers}", None, settings, query, where, base, topic=topic)


def _forward_sink(parts: SplitResult, name: str, settings: dict, query: dict, where: str, base) -> SinkConfig:
    """``forward://HOST:PORT``: a Fluentd / Fluent Bit in_forward; flat records unless ``format`` says otherwise."""
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None or port == 0 or parts.path.strip("/") or parts.username:
        raise ConfigError(f"{where}: {name}: a forward sink is forward://HOST:PORT, e.g. forward://127.0.0.1:24224")
    if "format" not in settings:
        query.setdefault("format", "flat")
    return _sink("forward", name, f"tcp://{parts.netloc}", None, settings, query, where, base)


def _sink_from_table(table: dict, where: str, base: Path | None) -> SinkConfig:
    url = table.get("url")
    if not isinstance(url, str):
        raise ConfigError(f'{where}: every [[sinks]] table needs url = "..." ({URL_FORMS})')
    return sink_from_url(url, {k: v for k, v in table.items() if k != "url"}, where, base)


def _sink(
    kind: str, name: str, url: str, index: str | None, settings: dict, query: dict, where: str, base, topic=None
) -> SinkConfig:
    merged = dict(settings)
    for key, value in query.items():
        section = "auth" if key in _AUTH_KEYS else "tls" if key in _TLS_KEYS else None
        target = merged.setdefault(section, {}) if section else merged
        if key in target:
            raise ConfigError(f"{where}: {name}: {key} is given both in the URL and in the table; keep one")
        target[key] = value
    for key in merged:
        if kind == "loki" and key in NOT_ON_LOKI:
            raise ConfigError(f"{where}: {name}: {key} does not apply to loki+ sinks: {NOT_ON_LOKI[key]}; remove it")
        if key in SECRET_KEYS or key not in KIND_KEYS[kind]:
            allowed = KIND_KEYS[kind] - {"url"} | (
                _AUTH_KEYS | _TLS_KEYS if kind not in ("stdout", "forward") else set()
            )
            raise ConfigError(unknown_key(key, f"{where}: {name}", allowed, kind))
    merged = {VICTORIALOGS_KEYS.get(key, key): value for key, value in merged.items()}
    fixed = ("kind", "name", "url", "index", "topic")
    kwargs = build_kwargs(SinkConfig, merged, f"{where}: {name}", "", base, skip=fixed)
    return make(SinkConfig, where, kind=kind, name=name, url=url, index=index, topic=topic, **kwargs)


def section(cls: type, table: dict, key: str, where: str, base: Path | None = None):
    """The ``[key]`` table of ``table`` (empty if absent) checked and made into ``cls``."""
    return make(cls, where, **build_kwargs(cls, _table(table, key, where), where, key, base))


def build_kwargs(cls: type, table: Mapping, where: str, prefix: str, base: Path | None = None, skip=()) -> dict:
    """Check ``table`` against the fields of ``cls`` and convert each value to the field's type."""
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in fields(cls) if f.name not in skip]
    kwargs = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in allowed:
            raise ConfigError(unknown_key(dotted, where, allowed))
        kwargs[key] = _coerce(value, hints[key], dotted, where, base)
    return kwargs


def _coerce(value: object, hint: object, key: str, where: str, base: Path | None) -> object:
    if isinstance(hint, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a table, e.g. [sinks.{key}]")
        return make(hint, where, **build_kwargs(hint, value, where, key, base))  # type: ignore[arg-type]
    if typing.get_origin(hint) is tuple:
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise ConfigError(f'{where}: {key} must be a list of strings, e.g. {key} = ["job", "host"]')
        if typing.get_args(hint)[0] is Path:  # paths relative to the file, like every single Path
            return tuple(_coerce(item, Path, key, where, base) for item in items)
        return tuple(items)
    if hint is bool and isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if hint in (int, float) and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = hint(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if hint is Path and isinstance(value, str):
        path = Path(value).expanduser()
        return base / path if base and not path.is_absolute() else path
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):  # type: ignore[arg-type]
        raise ConfigError(f"{where}: {key} must be {getattr(hint, '__name__', hint)}, not {type(value).__name__}")
    return value


def make(cls: type, where: str, **kwargs: object):
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith(where) else f"{where}: {text}") from None


def _table(table: dict, key: str, where: str) -> dict:
    value = table.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a table: [{key}]")
    return value


def _query(query: str, name: str, where: str) -> dict:
    pairs = parse_qsl(query, keep_blank_values=True)
    keys = [k for k, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigError(f"{where}: {name}: {key} is given twice in the URL; give lists comma-separated")
    return dict(pairs)


def unknown_key(key: str, where: str, allowed, kind: str | None = None) -> str:
    leaf = key.rsplit(".", 1)[-1]
    if leaf in SECRET_KEYS:
        setting = SECRET_KEYS[leaf]
        return (
            f"{where}: {key}: secrets are not taken from a config file or a URL; put the secret in an "
            f"environment variable and name it with {setting}_env, or in a file only you can read and set {setting}_file"
        )
    if kind is not None and any(leaf in keys for keys in KIND_KEYS.values()):
        return f"{where}: {key} does not apply to {kind} sinks; remove it"
    close = difflib.get_close_matches(leaf, sorted(allowed), n=1)
    fix = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(sorted(allowed))}"
    return f"{where}: unknown key {key!r}; {fix}"
