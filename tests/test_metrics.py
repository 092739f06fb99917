"""/metrics (through prometheus_client) and /healthz, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import dataclasses
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import prometheus_client
import pytest
from prometheus_client.core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from named_senderr.engine.shipping import ShipResult, new_result, run_pipeline, run_ship
from named_senderr.errors import ConfigError
from named_senderr.lines import Batch, Emit, Line
from named_senderr.metrics import Sample, parse_address
from named_senderr.metrics_endpoint import SampleCollector, serve_metrics
from named_senderr.settings.loading import load_ship_config
from named_senderr.settings.ship import BatchConfig, QueueConfig, ShipConfig, SinkConfig
from tests.polling import wait_until
from tests.test_backpressure import GatedSink, generated
from tests.test_ship_servers import count, new_index

LINE = b"21-Nov-2026 05:10:00.000 client @0x7f 192.0.2.%d#4%04d (a.example): error sending response: would block"
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


class HeldSource:
    """Emits its batches, then stays until the pipeline stops, as a long-running source does."""

    def __init__(self, name: str, batches: int, lines: int = 10, wait: bool = True) -> None:
        self.name = name
        self.batches = [[LINE % (b % 250, b * lines + n) for n in range(lines)] for b in range(batches)]
        self.wait = wait
        self.taken = 0

    def run(self, emit: Emit, stop: threading.Event) -> None:
        for lines in self.batches:
            if not emit(Batch([Line(data) for data in lines]), wait=self.wait):
                break
            self.taken += 1
        stop.wait(60)

    def close(self) -> None:
        pass


class ReceiverSource(HeldSource):
    """A source with counters of its own, shaped like serve's Forward receiver counters."""

    def samples(self) -> Iterator[Sample]:
        yield Sample("named_senderr_forward_connections_total", "counter", "Forward receiver: connections", 3)
        yield Sample("named_senderr_forward_acks_total", "counter", "Forward receiver: acks", self.taken)


def running(config: ShipConfig, sources: list, sinks: list | None) -> tuple[str, ShipResult, Callable[[], None]]:
    """Start ``run_pipeline`` in a thread; the metrics URL, the live result, and a function that stops it."""
    warnings: list[str] = []
    result = new_result(config)
    stop = threading.Event()
    run = threading.Thread(target=run_pipeline, args=(sources, config, result, warnings.append, None, sinks),
                           kwargs={"stop": stop})  # fmt: skip
    run.start()

    def finish() -> None:
        stop.set()
        run.join(30)
        assert not run.is_alive()

    try:
        return metrics_url(warnings), result, finish
    except BaseException:
        finish()
        raise


def memory_config(tmp_path: Path, sink: GatedSink, **changes: object) -> ShipConfig:
    return ShipConfig(sinks=(SinkConfig(kind="stdout", name=sink.name),), batch=BatchConfig(max_events=10),
                      metrics="127.0.0.1:0", dead_letter=tmp_path / "dead.ndjson", **changes)  # fmt: skip


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


def test_every_source_has_its_batches_and_lines_counted_by_its_label(tmp_path: Path) -> None:
    gate = threading.Event()
    gate.set()
    sink = GatedSink(gate)
    url, _, finish = running(memory_config(tmp_path, sink), [HeldSource("a", 3), HeldSource("b", 2, lines=5)], [sink])
    try:
        wait_until(lambda: scrape(url)[f'named_senderr_events_sent_total{{sink="{sink.name}"}}'] == 40)
        samples = scrape(url)
    finally:
        finish()
    assert samples['named_senderr_source_batches_total{source="a"}'] == 3
    assert samples['named_senderr_source_lines_total{source="a"}'] == 30
    assert samples['named_senderr_source_batches_total{source="b"}'] == 2
    assert samples['named_senderr_source_lines_total{source="b"}'] == 10
    assert samples['named_senderr_source_refused_total{source="a"}'] == 0


def test_a_batch_the_full_pipeline_refuses_is_counted_for_its_source(tmp_path: Path) -> None:
    gate = threading.Event()
    sink = GatedSink(gate)  # takes nothing: one batch in its worker, one queued, the next refused
    source = HeldSource("net", 10, wait=False)
    url, _, finish = running(memory_config(tmp_path, sink), [source], [sink])
    try:
        wait_until(lambda: scrape(url)['named_senderr_source_refused_total{source="net"}'] == 1)
        samples = scrape(url)
    finally:
        gate.set()
        finish()
    assert 1 <= source.taken < 10 and samples['named_senderr_source_batches_total{source="net"}'] == source.taken


def test_a_source_with_counters_of_its_own_has_them_in_metrics(tmp_path: Path) -> None:
    """The shape serve's Forward receiver counters take once serve runs on the engine."""
    gate = threading.Event()
    gate.set()
    sink = GatedSink(gate)
    url, _, finish = running(memory_config(tmp_path, sink), [ReceiverSource("forward", 2)], [sink])
    try:
        wait_until(lambda: scrape(url).get("named_senderr_forward_acks_total") == 2)
        assert scrape(url)["named_senderr_forward_connections_total"] == 3
    finally:
        finish()


def histogram(url: str, sink: str) -> tuple[dict[float, float], float, float]:
    """Cumulative bucket counts by upper bound, the count and the sum of ``sink``'s batch latencies."""
    family = families(url)["named_senderr_batch_latency_seconds"]
    assert family.type == "histogram"
    mine = [s for s in family.samples if s.labels.get("sink") == sink]
    buckets = {float(s.labels["le"]): s.value for s in mine if s.name.endswith("_bucket")}
    total = next(s.value for s in mine if s.name.endswith("_count"))
    seconds = next(s.value for s in mine if s.name.endswith("_sum"))
    return buckets, total, seconds


def assert_cumulative(buckets: dict[float, float], total: float) -> None:
    counts = [buckets[bound] for bound in sorted(buckets)]
    assert counts == sorted(counts) and buckets[float("inf")] == total and len(buckets) > 10


def test_batch_latency_buckets_count_each_batch_from_hand_off_to_settlement(tmp_path: Path) -> None:
    gate = threading.Event()
    sink = GatedSink(gate)
    source = HeldSource("a", 3)  # three batches of ten events; max_events=10: three sink batches
    url, result, finish = running(memory_config(tmp_path, sink), [source], [sink])
    try:
        buckets, total, _ = histogram(url, sink.name)
        assert total == 0 and set(buckets.values()) == {0}  # present from the start, per sink
        wait_until(lambda: source.taken >= 2)  # the first batch is in the sink, the second waits
        handed = time.monotonic()
        wait_until(lambda: time.monotonic() - handed >= 0.3)  # the sink holds them that long
        gate.set()
        wait_until(lambda: histogram(url, sink.name)[1] == 3)
        buckets, total, seconds = histogram(url, sink.name)
    finally:
        gate.set()
        finish()
    assert_cumulative(buckets, total)
    assert total == result.sinks[sink.name].requests == 3
    assert buckets[0.25] <= 1 and seconds >= 0.6  # both held batches timed from their hand-off, queue wait included


def test_with_a_disk_queue_batch_latency_counts_each_batch_the_consumer_acknowledged(tmp_path: Path) -> None:
    gate = threading.Event()
    gate.set()
    sink = GatedSink(gate)
    config = memory_config(tmp_path, sink, queue=QueueConfig(dir=tmp_path / "queue", shutdown_timeout=5))
    url, result, finish = running(config, [HeldSource("a", 5)], [sink])
    try:
        wait_until(lambda: scrape(url)[f'named_senderr_events_sent_total{{sink="{sink.name}"}}'] == 50)
        buckets, total, _ = histogram(url, sink.name)
    finally:
        finish()
    assert_cumulative(buckets, total)
    assert total == result.sinks[sink.name].requests >= 5  # batches of at most max_events=10


def test_batch_latency_of_a_real_elasticsearch_counts_its_bulk_requests(elasticsearch_url: str, tmp_path: Path):
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    config = load_ship_config(None, [url], {"metrics": "127.0.0.1:0", "dead_letter": tmp_path / "dead.ndjson"})
    config = dataclasses.replace(config, batch=BatchConfig(max_events=10))
    endpoint, result, finish = running(config, [HeldSource("a", 4)], None)
    try:
        wait_until(lambda: scrape(endpoint)[f'named_senderr_events_sent_total{{sink="{url}"}}'] == 40, 60)
        buckets, total, seconds = histogram(endpoint, url)
    finally:
        finish()
    assert_cumulative(buckets, total)
    assert total == result.sinks[url].requests == 4 and seconds > 0
    assert count(elasticsearch_url, url.rsplit("/", 1)[1]) == 40
