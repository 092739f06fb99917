"""What ``setup elasticsearch`` would send: the template from conf/, and lifecycle policies that fit the target."""

from __future__ import annotations

from named_senderr.sinks.es_setup import load_json, plan


def steps(product: str, lifecycle: bool = False, data_stream: bool = False) -> dict:
    return {step.path: step.body for step in plan("named", product, lifecycle, data_stream)}


def test_template_maps_client_ip_as_ip_and_reason_as_keyword() -> None:
    properties = load_json("index-template.json")["template"]["mappings"]["properties"]
    assert properties["client"]["properties"]["ip"] == {"type": "ip"}
    assert properties["event"]["properties"]["reason"] == {"type": "keyword"}
    assert properties["@timestamp"] == {"type": "date"} and properties["message"] == {"type": "text"}


def test_template_maps_a_zone_transfers_zone_and_class_as_keywords() -> None:
    bind = load_json("index-template.json")["template"]["mappings"]["properties"]["bind"]["properties"]
    assert bind["zone"] == {"type": "keyword"} and bind["zone_class"] == {"type": "keyword"}


def test_template_maps_an_internal_send_destination_as_ip_and_port() -> None:
    properties = load_json("index-template.json")["template"]["mappings"]["properties"]
    assert properties["destination"]["properties"] == {"ip": {"type": "ip"}, "port": {"type": "long"}}


def test_plain_setup_is_one_template_for_the_index() -> None:
    assert list(steps("elasticsearch")) == ["/_index_template/named"]
    assert steps("elasticsearch")["/_index_template/named"]["index_patterns"] == ["named"]


def test_data_stream_template_then_the_stream() -> None:
    sent = steps("opensearch", data_stream=True)
    assert list(sent) == ["/_index_template/named", "/_data_stream/named"]
    assert sent["/_index_template/named"]["data_stream"] == {}


def test_ilm_policy_rolls_over_only_a_data_stream() -> None:
    plain = steps("elasticsearch", lifecycle=True)["/_ilm/policy/named"]["policy"]["phases"]
    stream = steps("elasticsearch", lifecycle=True, data_stream=True)["/_ilm/policy/named"]["policy"]["phases"]
    assert list(plain) == ["delete"] and "rollover" in stream["hot"]["actions"]


def test_ilm_policy_is_named_in_the_template() -> None:
    template = steps("elasticsearch", lifecycle=True)["/_index_template/named"]
    assert template["template"]["settings"]["index"]["lifecycle"] == {"name": "named"}


def test_ism_policy_targets_the_backing_indices_of_a_data_stream() -> None:
    policy = steps("opensearch", lifecycle=True, data_stream=True)["/_plugins/_ism/policies/named"]["policy"]
    assert policy["ism_template"] == [{"index_patterns": [".ds-named-*"], "priority": 200}]


def test_ism_policy_without_data_stream_only_deletes() -> None:
    policy = steps("opensearch", lifecycle=True)["/_plugins/_ism/policies/named"]["policy"]
    assert policy["states"][0]["actions"] == []
    assert policy["states"][0]["transitions"][0]["conditions"] == {"min_index_age": "90d"}
