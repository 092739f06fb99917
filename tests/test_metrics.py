"""/metrics in Prometheus text format and /healthz, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from named_senderr.engine.shipping import run_ship
from named_senderr.errors import ConfigError
from named_senderr.metrics import Sample, parse_address, render, serve_metrics
from named_senderr.ship_config import QueueConfig, ShipConfig, SinkConfig
from tests.polling import wait_until
from tests.test_backpressure import GatedSink, generated


def scrape(url: str) -> dict[str, float]:
    """``name{labels}`` -> value for every sample line."""
    reply = httpx.get(f"{url}/metrics")
    reply.raise_for_status()
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in reply.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_render_writes_help_and_type_once_and_escapes_label_values() -> None:
    text = render([
        Sample("x_total", "counter", "X.", 1, {"sink": 'a"b\\c'}),
        Sample("x_total", "counter", "X.", 2.5, {"sink": "d"}),
    ])  # fmt: skip
    assert text == '# HELP x_total X.\n# TYPE x_total counter\nx_total{sink="a\\"b\\\\c"} 1\nx_total{sink="d"} 2.5\n'


def test_a_bare_port_listens_on_loopback_only() -> None:
    assert parse_address("9108") == ("127.0.0.1", 9108)
    assert parse_address("[::1]:9108") == ("::1", 9108)


def test_a_malformed_address_is_refused_with_an_example() -> None:
    with pytest.raises(ConfigError, match=r"expected PORT or HOST:PORT, e\.g\. 127\.0\.0\.1:9108"):
        parse_address("localhost:http")


def test_healthz_answers_ok_and_unknown_paths_404() -> None:
    with serve_metrics("127.0.0.1:0", list) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{server.url}/healthz").text == "ok\n"
        assert httpx.get(f"{server.url}/nope").status_code == 404


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
        deadline = time.monotonic() + 10
        while not any("metrics on" in w for w in warnings) and time.monotonic() < deadline:
            time.sleep(0.02)
        url = re.search(r"metrics on (http://\S+)/metrics", " ".join(warnings)).group(1)
        label = f'{{sink="{sink.name}"}}'
        while scrape(url)["named_senderr_events_queued_total"] < 3_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        held = scrape(url)
        assert held["named_senderr_lines_read_total"] == held["named_senderr_events_parsed_total"] == 3_000
        assert held["named_senderr_events_queued_total"] == 3_000 and held["named_senderr_queue_bytes"] > 0
        assert held[f"named_senderr_events_sent_total{label}"] == 0 and held[f"named_senderr_sink_up{label}"] == 1
        gate.set()
        while scrape(url)[f"named_senderr_events_sent_total{label}"] < 3_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scrape(url)[f"named_senderr_events_sent_total{label}"] == 3_000
    finally:
        gate.set()
        stop.set()
        run.join(30)
    assert not run.is_alive() and results[0].signalled


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
            assert httpx.get(f"{server.url}/healthz").text == "ok\n"  # the oldest idle one made room
        finally:
            for sock in idle:
                sock.close()
