"""ship's configuration: TOML and URL keys checked the same way, every refusal names the key and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from named_senderr.errors import ConfigError
from named_senderr.event import to_flat
from named_senderr.settings.loading import load_ship_config, sink_from_url
from named_senderr.settings.ship import FLAT_FIELDS
from tests.test_sink_elasticsearch import event

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ship.toml"
    path.write_text(text)
    return path


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_ship_config(write(tmp_path, text), [], {})
    return str(caught.value)


def test_example_config_loads() -> None:
    config = load_ship_config(ROOT / "conf" / "named-senderr.toml", [], {})
    assert [s.kind for s in config.sinks] == ["elasticsearch", "loki"]
    assert config.sinks[1].tenant == "dns"


def test_unknown_top_level_key_names_key_file_and_suggestion(tmp_path: Path) -> None:
    message = refusal(tmp_path, 'dead_leter = "x"\n[[sinks]]\nurl = "stdout:"\n')
    assert str(tmp_path / "ship.toml") in message
    assert "'dead_leter'" in message and "did you mean 'dead_letter'" in message


def test_unknown_nested_key_names_its_path(tmp_path: Path) -> None:
    text = '[[sinks]]\nurl = "loki+http://h:3100"\n[sinks.tls]\nca_flie = "/ca.pem"\n'
    message = refusal(tmp_path, text)
    assert "tls.ca_flie" in message and "did you mean 'ca_file'" in message


def test_unknown_url_query_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'tennant'.*did you mean 'tenant'"):
        sink_from_url("loki+http://h:3100?tennant=dns", {}, "--to", None)


def test_key_of_another_sink_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="labels does not apply to elasticsearch sinks"):
        sink_from_url("elasticsearch+http://h:9200/idx?labels=job", {}, "--to", None)


def test_wrong_type_names_key_and_expected_type(tmp_path: Path) -> None:
    message = refusal(tmp_path, '[batch]\nmax_events = "many"\n[[sinks]]\nurl = "stdout:"\n')
    assert "batch.max_events must be int, not str" in message


def test_secret_value_in_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    text = '[[sinks]]\nurl = "elasticsearch+https://h:9200/i"\n[sinks.auth]\nusername = "u"\npassword = "hunter2"\n'
    message = refusal(tmp_path, text)
    assert "password_env" in message and "password_file" in message
    assert "hunter2" not in message


def test_password_in_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        sink_from_url("elasticsearch+https://elastic:hunter2@h:9200/i", {}, "--to", None)
    assert "password_env" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("label", ["client_ip", "client_port", "qname", "view", "offset"])
def test_unbounded_loki_label_is_refused(label: str) -> None:
    with pytest.raises(ConfigError, match=f"label '{label}' is unbounded"):
        sink_from_url(f"loki+http://h:3100?labels=job,{label}", {}, "--to", None)


def test_unknown_loki_label_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown label 'colour'; choose from"):
        sink_from_url("loki+http://h:3100?labels=job,colour", {}, "--to", None)


def test_unknown_scheme_lists_the_url_forms() -> None:
    with pytest.raises(ConfigError, match=r"not a sink URL; use elasticsearch\+https://HOST:9200/INDEX"):
        sink_from_url("https://h:9200/idx", {}, "--to", None)


def test_elasticsearch_url_without_index_is_refused() -> None:
    with pytest.raises(ConfigError, match="no index in the URL"):
        sink_from_url("elasticsearch+http://h:9200", {}, "--to", None)


def test_invalid_index_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="'Named' is not a valid index name"):
        sink_from_url("opensearch+http://h:9200/Named", {}, "--to", None)


def test_url_path_is_prefix_and_index() -> None:
    sink = sink_from_url("opensearch+https://h:9200/proxy/es/named", {}, "--to", None)
    assert (sink.kind, sink.url, sink.index) == ("opensearch", "https://h:9200/proxy/es", "named")


def test_loki_push_path_in_url_is_accepted() -> None:
    assert sink_from_url("loki+http://h:3100/loki/api/v1/push", {}, "--to", None).url == "http://h:3100"


def test_url_query_fills_auth_and_tls() -> None:
    sink = sink_from_url("loki+https://u@h:3100?password_env=LOKI_PW&verify=false&tenant=t", {}, "--to", None)
    assert (sink.auth.username, sink.auth.password_env, sink.tls.verify, sink.tenant) == ("u", "LOKI_PW", False, "t")


def test_two_auth_schemes_are_refused() -> None:
    with pytest.raises(ConfigError, match="basic and api_key are both set"):
        sink_from_url("elasticsearch+https://u@h:9200/i?password_env=P&api_key_env=K", {}, "--to", None)


def test_to_urls_replace_the_files_sinks(tmp_path: Path) -> None:
    path = write(tmp_path, '[[sinks]]\nurl = "loki+http://h:3100"\n')
    config = load_ship_config(path, ["stdout:"], {})
    assert [s.name for s in config.sinks] == ["stdout:"]


def test_command_line_values_replace_file_values(tmp_path: Path) -> None:
    path = write(tmp_path, 'host = "a"\ninputs = ["x.log"]\n[[sinks]]\nurl = "stdout:"\n')
    config = load_ship_config(path, [], {"host": "b", "inputs": None})
    assert (config.host, config.inputs) == ("b", ("x.log",))


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'dead_letter = "dl.ndjson"\n[[sinks]]\nurl = "loki+https://h:3100"\n[sinks.tls]\nca_file = "ca.pem"\n'
    )
    config = load_ship_config(path, [], {})
    assert config.dead_letter == tmp_path / "dl.ndjson"
    assert config.sinks[0].tls.ca_file == tmp_path / "ca.pem"


def test_no_sink_is_refused_with_an_example() -> None:
    with pytest.raises(ConfigError, match="no sink given; add --to URL"):
        load_ship_config(None, [], {})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    message = refusal(tmp_path, "[[sinks]\n")
    assert str(tmp_path / "ship.toml") in message and "not valid TOML" in message


def test_batch_limits_are_validated(tmp_path: Path) -> None:
    message = refusal(tmp_path, '[batch]\nmax_events = 0\n[[sinks]]\nurl = "stdout:"\n')
    assert "max_events >= 1" in message


def test_config_is_frozen() -> None:
    config = load_ship_config(None, ["stdout:"], {})
    with pytest.raises(AttributeError):
        config.host = "x"  # type: ignore[misc]


def test_victorialogs_msg_field_is_taken_under_its_own_name() -> None:
    assert (
        sink_from_url("loki+http://h:9428/insert?_msg_field=reason_text", {}, "--to", None).msg_field == "reason_text"
    )


def test_msg_field_naming_no_field_of_the_record_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"_msg_field 'mesage' is not a field of the record.*usually message"):
        sink_from_url("loki+http://h:9428/insert?_msg_field=mesage", {}, "--to", None)


def test_the_fields_msg_field_may_name_are_those_of_the_flat_record() -> None:
    assert set(to_flat(event())) == FLAT_FIELDS


@pytest.mark.parametrize(("key", "why"), [("_time_field", "takes _time from it"), ("_stream_fields", "labels=")])
def test_victorialogs_settings_its_loki_endpoint_ignores_are_refused_with_the_reason(key: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"{key} does not apply to loki\\+ sinks: .*{re.escape(why)}"):
        sink_from_url(f"loki+http://h:9428/insert?{key}=x", {}, "--to", None)


@pytest.mark.parametrize(
    "url",
    ["elasticsearch+http://127.0.0.1:9200/idx", "opensearch+http://localhost:9200/idx", "loki+http://[::1]:3100",
     "victorialogs+http://127.0.0.2:9428"],
)  # fmt: skip
def test_compression_defaults_to_none_on_a_loopback_host(url: str) -> None:
    assert sink_from_url(url, {}, "--to", None).compression == "none"


@pytest.mark.parametrize("url", ["elasticsearch+https://es.example.net:9200/idx", "loki+http://192.0.2.10:3100"])
def test_compression_defaults_to_gzip_level_1_on_any_other_host(url: str) -> None:
    assert sink_from_url(url, {}, "--to", None).compression == "gzip"


def test_compression_from_the_url_overrides_the_default() -> None:
    sink = sink_from_url("elasticsearch+http://127.0.0.1:9200/idx?compression=gzip:6", {}, "--to", None)
    assert sink.compression == "gzip:6"


def test_unknown_compression_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"compression 'zstd' is not one of none, gzip \(level 1\) or gzip:1"):
        sink_from_url("elasticsearch+http://127.0.0.1:9200/idx?compression=zstd", {}, "--to", None)


def test_kafka_compression_still_defaults_to_lz4() -> None:
    assert sink_from_url("kafka://127.0.0.1:9092/topic", {}, "--to", None).compression == "lz4"
