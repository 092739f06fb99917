"""/metrics (through prometheus_client) and /healthz, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import httpx
import prometheus_client
import pytest
from prometheus_client.core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from named_senderr.engine.shipping import run_ship
from named_senderr.errors import ConfigError
from named_senderr.metrics import Sample, SampleCollector, parse_address, serve_metrics
from named_senderr.ship_config import QueueConfig, ShipConfig, SinkConfig
from tests.polling import wait_until
from tests.test_backpressure import GatedSink, generated

PROMETHEUS_ACCEPT = (  # what Prometheus 3 sends when it scrapes
    "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=underscores;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)


def get(url: str, accept: str | None = None) -> httpx.Response:
    reply = httpx.get(url, headers={"Accept": accept} if accept else {})
    reply.raise_for_status()
    return reply


def families(url: str) -> dict[str, Metric]:
    """The metric families of a text-format scrape, parsed by prometheus_client's own parser."""
    reply = get(f"{url}/metrics")
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {family.name: family for family in text_string_to_metric_families(reply.text)}


def scrape(url: str) -> dict[str, float]:
    """``name{labels}`` -> value for every sample, labels as the text format writes them."""
    samples = {}
    for family in families(url).values():
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def metrics_url(warnings: list[str]) -> str:
    wait_until(lambda: any("metrics on" in w for w in warnings), 10)
    return re.search(r"metrics on (http://\S+)/metrics", " ".join(warnings)).group(1)


def test_a_scrape_is_text_format_0_0_4_with_help_and_type_once_and_label_values_escaped() -> None:
    tricky = 'a"b\\c\nd'
    samples = [Sample("x_total", "counter", "X.", 1, {"sink": tricky}), Sample("x_total", "counter", "X.", 2.5,
               {"sink": "e"}), Sample("y", "gauge", "Y.", 7)]  # fmt: skip
    with serve_metrics("127.0.0.1:0", lambda: samples) as server:
        text = get(f"{server.url}/metrics").text
        parsed = families(server.url)
    assert text.count("# HELP x_total X.\n") == 1 and text.count("# TYPE x_total counter\n") == 1
    assert 'x_total{sink="a\\"b\\\\c\\nd"} 1.0\n' in text and 'x_total{sink="e"} 2.5\n' in text
    assert text.count("# TYPE y gauge\n") == 1 and "\ny 7.0\n" in text
    assert [(s.labels["sink"], s.value) for s in parsed["x"].samples] == [(tricky, 1.0), ("e", 2.5)]


def test_prometheus_asking_for_openmetrics_gets_valid_openmetrics() -> None:
    with serve_metrics("127.0.0.1:0", lambda: [Sample("x_total", "counter", "X.", 4, {"sink": "s"})]) as server:
        reply = get(f"{server.url}/metrics", PROMETHEUS_ACCEPT)
    assert reply.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    parsed = {family.name: family for family in openmetrics_families(reply.text)}  # strict: fails on bad syntax
    assert parsed["x"].type == "counter" and parsed["x"].samples[0].value == 4


def test_a_counter_not_named_total_is_refused_by_name() -> None:
    collector = SampleCollector(lambda: [Sample("x_count", "counter", "X.", 1)])
    with pytest.raises(ValueError, match="metric x_count: expected a gauge or a counter named"):
        list(collector.collect())


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the process collector reads /proc")
def test_process_metrics_are_exposed() -> None:
    with serve_metrics("127.0.0.1:0", list) as server:
        samples = scrape(server.url)
    assert samples["process_cpu_seconds_total"] > 0 and samples["process_resident_memory_bytes"] > 0
    assert samples["process_open_fds"] >= 3 and samples["process_start_time_seconds"] > 1.7e9


def test_each_endpoint_has_its_own_registry_and_the_global_one_stays_empty_of_ours() -> None:
    with (
        serve_metrics("127.0.0.1:0", lambda: [Sample("a_total", "counter", "A.", 1)]) as first,
        serve_metrics("127.0.0.1:0", lambda: [Sample("b_total", "counter", "B.", 2)]) as second,
    ):
        assert "a_total" in scrape(first.url) and "b_total" not in scrape(first.url)
        assert "b_total" in scrape(second.url) and "a_total" not in scrape(second.url)
    global_names = {family.name for family in prometheus_client.REGISTRY.collect()}
    assert not {"a", "b"} & global_names


def test_healthz_answers_ok_and_unknown_paths_404() -> None:
    with serve_metrics("127.0.0.1:0", list) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{server.url}/healthz").text == "ok\n"
        assert httpx.get(f"{server.url}/nope").status_code == 404


def test_a_bare_port_listens_on_loopback_only() -> None:
    assert parse_address("9108") == ("127.0.0.1", 9108)
    assert parse_address("[::1]:9108") == ("::1", 9108)


def test_a_malformed_address_is_refused_with_an_example() -> None:
    with pytest.raises(ConfigError, match=r"expected PORT or HOST:PORT, e\.g\. 127\.0\.0\.1:9108"):
        parse_address("localhost:http")


def test_a_silent_connection_is_closed_after_the_client_timeout() -> None:
    with serve_metrics("127.0.0.1:0", list, client_timeout=0.3) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
            started = time.monotonic()
            assert silent.recv(1) == b""  # closed by the server, its thread gone
            assert time.monotonic() - started < 3


def test_idle_connections_hold_at_most_max_clients_threads_and_a_scrape_is_still_answered() -> None:
    before = threading.active_count()
    with serve_metrics("127.0.0.1:0", list, max_clients=4) as server:
        port = int(server.url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(50)]
        try:
            wait_until(lambda: server.evicted == 46)
            wait_until(lambda: threading.active_count() - before <= 1 + 4)  # serve_forever and four clients
            assert "process_cpu_seconds_total" in get(f"{server.url}/metrics").text  # the oldest idle made room
        finally:
            for sock in idle:
                sock.close()


def test_follow_exposes_reading_queue_and_per_sink_counters(tmp_path: Path) -> None:
    log = generated(tmp_path, 3_000)
    gate = threading.Event()
    sink = GatedSink(gate)
    queue = QueueConfig(dir=tmp_path / "queue", shutdown_timeout=5)
    config = ShipConfig(sinks=(SinkConfig(kind="stdout", name=sink.name),), inputs=(str(log),), queue=queue,
                        follow=True, read_from_head=True, metrics="127.0.0.1:0",
                        dead_letter=tmp_path / "dead.ndjson")  # fmt: skip
    warnings: list[str] = []
    stop = threading.Event()
    results = []
    run = threading.Thread(target=lambda: results.append(run_ship(config, warnings.append, sinks=[sink], stop=stop)))
    run.start()
    try:
        url = metrics_url(warnings)
        label = f'{{sink="{sink.name}"}}'
        wait_until(lambda: scrape(url)["named_senderr_events_queued_total"] >= 3_000, 10)
        held = scrape(url)
        assert held["named_senderr_lines_read_total"] == held["named_senderr_events_parsed_total"] == 3_000
        assert held["named_senderr_events_queued_total"] == 3_000 and held["named_senderr_queue_bytes"] > 0
        assert held[f"named_senderr_events_sent_total{label}"] == 0 and held[f"named_senderr_sink_up{label}"] == 1
        gate.set()
        wait_until(lambda: scrape(url)[f"named_senderr_events_sent_total{label}"] >= 3_000, 10)
        assert scrape(url)[f"named_senderr_events_sent_total{label}"] == 3_000
    finally:
        gate.set()
        stop.set()
        run.join(30)
    assert not run.is_alive() and results[0].signalled
