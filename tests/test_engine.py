"""The engine's promises: a source's ack moves only once its events are durably held; stages compose anywhere."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson

from named_senderr.engine.delivery import SinkLanes
from named_senderr.engine.runner import Runner
from named_senderr.engine.shipping import run_ship
from named_senderr.engine.stages import Rollup
from named_senderr.engine.transforms import ParseLines
from named_senderr.lines import Batch, Emit, Line
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser
from named_senderr.queue.consumer import encode_event
from named_senderr.queue.disk import DiskQueue
from named_senderr.queue.driver import DeadLetter
from named_senderr.queue.retry import RetryPolicy
from named_senderr.settings.ship import BatchConfig, QueueConfig, ShipConfig, SinkConfig
from named_senderr.sinks.stream import StreamDelivery
from named_senderr.sources.files import FileSource
from named_senderr.telemetry import Stats
from tests.polling import wait_until
from tests.test_backpressure import GatedSink, generated

LINE = b"21-Nov-2026 05:10:00.000 client @0x7f 192.0.2.%d#4%04d (a.example): error sending response: would block"


class ListSource:
    """Emits the given batches, records which acks were called, then ends."""

    name = "list"

    def __init__(self, batches: list[list[bytes]]) -> None:
        self.batches = batches
        self.acked: list[int] = []

    def run(self, emit: Emit, stop: threading.Event) -> None:
        for n, lines in enumerate(self.batches):
            emit(Batch([Line(data) for data in lines], lambda n=n: self.acked.append(n)))

    def close(self) -> None:
        pass


class ForgetfulSink(GatedSink):
    """A store that kept nothing of an earlier run: the replayed batch is sent whole."""

    def drop_stored(self, items: list) -> list:
        return items


def parse_lines(stats: Stats) -> ParseLines:
    return ParseLines(NamedLineParser(TimestampNormalizer(resolve_zone("UTC"))), stats)


def test_an_ack_waits_until_the_sink_settled_the_batchs_events(tmp_path: Path) -> None:
    gate = threading.Event()
    sink = GatedSink(gate)
    lanes = SinkLanes([sink], RetryPolicy(), DeadLetter(tmp_path / "dead"), BatchConfig(max_events=1), {})
    source = ListSource([[LINE % (1, 1)], [LINE % (2, 2)]])
    runner = Runner([source], parse_lines(Stats()), [], lanes)
    thread = threading.Thread(target=runner.run)
    thread.start()
    time.sleep(0.3)
    assert source.acked == []  # the sink holds both batches: nothing may move yet
    gate.set()
    thread.join(10)
    assert source.acked == [0, 1] and len(sink.items) == 2


def test_an_ack_waits_while_rollup_still_holds_the_batchs_events(tmp_path: Path) -> None:
    out = tmp_path / "out.ndjson"
    clock = [0.0]
    with open(out, "wb") as stream:
        delivery = StreamDelivery(stream, lambda event: {"ip": event.client_ip, "n": event.repeat_count})
        source = ListSource([[LINE % (1, 1), LINE % (1, 2)]])
        rollup = Rollup(60, lambda: clock[0])
        runner = Runner([source], parse_lines(Stats()), [rollup], delivery)
        runner.emit(Batch([Line(LINE % (1, 1))], lambda: source.acked.append(0)))
        assert source.acked == [] and rollup.oldest_held() == 1
        clock[0] = 61.0  # a minute without events: the window closes and leaves
        runner.tick()
        assert source.acked == [0]
    assert [orjson.loads(line) for line in out.read_bytes().splitlines()] == [{"ip": "192.0.2.0", "n": 1}]


def test_an_ack_waits_until_the_sink_settled_what_rollup_let_go_of(tmp_path: Path) -> None:
    """Found with branches: a window the ticker closed was handed on as the newest batch, so the acks of the
    batches before it moved while the sink still held the rolled-up event."""
    gate = threading.Event()
    sink = GatedSink(gate)
    lanes = SinkLanes([sink], RetryPolicy(), DeadLetter(tmp_path / "dead"), BatchConfig(max_events=1), {})
    clock = [0.0]
    runner = Runner([], parse_lines(Stats()), [Rollup(60, lambda: clock[0])], lanes)
    acked: list[int] = []
    runner.emit(Batch([Line(LINE % (1, 1))], lambda: acked.append(1)))
    runner.emit(Batch([], lambda: acked.append(2)))  # a follower's poll with nothing new
    clock[0] = 61.0  # a minute without events: the window closes and leaves for the sink
    runner.tick()
    assert acked == []
    gate.set()
    wait_until(lambda: runner.tick() or acked == [1, 2], 10)
    lanes.close(threading.Event())
    assert len(sink.items) == 1


def test_ship_with_a_disk_queue_applies_privacy_and_rollup(tmp_path: Path) -> None:
    """Refused until the engine: ``--queue-dir`` with ``--client-ip``/``--rollup`` now composes."""
    log = generated(tmp_path, 2_000)
    gate = threading.Event()
    gate.set()
    sink = GatedSink(gate)
    config = ShipConfig(sinks=(SinkConfig(kind="stdout", name=sink.name),), inputs=(str(log),),
                        queue=QueueConfig(dir=tmp_path / "queue"), client_ip="truncate:/24,/56", rollup=3600.0,
                        dead_letter=tmp_path / "dead.ndjson")  # fmt: skip
    result = run_ship(config, print, sinks=[sink])
    assert result.stats.events == 2_000 and result.queue is not None
    assert 0 < result.queue.queued < 2_000  # rolled up before the queue: fewer, bigger events
    assert result.sinks[sink.name].sent == result.queue.queued


def test_ship_without_a_queue_serves_metrics(tmp_path: Path) -> None:
    """Refused until the engine: ``--metrics`` needed ``--queue-dir``."""
    log = generated(tmp_path, 500)
    warnings: list[str] = []
    gate = threading.Event()
    sink = GatedSink(gate)
    config = ShipConfig(sinks=(SinkConfig(kind="stdout", name=sink.name),), inputs=(str(log),),
                        metrics="127.0.0.1:0", dead_letter=tmp_path / "dead.ndjson")  # fmt: skip
    thread = threading.Thread(target=lambda: run_ship(config, warnings.append, sinks=[sink]))
    thread.start()
    try:
        wait_until(lambda: any("metrics on" in w for w in warnings), 10)
    finally:
        gate.set()
        thread.join(10)
    assert any("/healthz" in w for w in warnings)


def test_a_follower_restarted_before_its_checkpoint_moved_queues_nothing_twice(tmp_path: Path) -> None:
    """kill -9 between the queue's fsync and the checkpoint's: the restarted follower reads those lines again."""
    log = generated(tmp_path, 3_000)
    stats = Stats()
    parse = parse_lines(stats)
    events = [event for batch in FileSource((str(log),), stats, print).batches() for event in parse(batch.lines)]
    gate = threading.Event()
    gate.set()
    sink = ForgetfulSink(gate)
    crashed = DiskQueue(tmp_path / "queue", 1 << 30, (sink.name,))
    crashed.append([encode_event(event) for event in events[:1_000]])  # appended, checkpoint never saved
    crashed.close()
    config = ShipConfig(sinks=(SinkConfig(kind="stdout", name=sink.name),), inputs=(str(log),),
                        queue=QueueConfig(dir=tmp_path / "queue", shutdown_timeout=5), follow=True,
                        read_from_head=True, dead_letter=tmp_path / "dead.ndjson")  # fmt: skip
    stop = threading.Event()
    results = []
    thread = threading.Thread(target=lambda: results.append(run_ship(config, print, sinks=[sink], stop=stop)))
    thread.start()
    try:
        wait_until(lambda: len(sink.items) >= 3_000, 30)
        time.sleep(0.5)  # anything queued twice would arrive now
    finally:
        stop.set()
        thread.join(30)
    assert len(sink.items) == len(set(sink.items)) == 3_000
    assert results[0].queue.replayed == 1_000 and results[0].queue.queued == 2_000


class RefusingDelivery(StreamDelivery):
    """Takes events until told to refuse (a full disk at shutdown, say); what it took is durable at once."""

    refuse = False

    def put(self, events, seq, wait=True, routes=None) -> bool:  # type: ignore[no-untyped-def]
        return False if self.refuse else super().put(events, seq, wait, routes)


def test_a_batch_whose_rolled_up_events_were_refused_is_never_acknowledged(tmp_path: Path) -> None:
    clock = [0.0]
    with open(tmp_path / "out.ndjson", "wb") as stream:
        delivery = RefusingDelivery(stream, lambda event: {"ip": event.client_ip})
        runner = Runner([], parse_lines(Stats()), [Rollup(60, lambda: clock[0])], delivery)
        acked: list[int] = []
        runner.emit(Batch([Line(LINE % (1, 1))], lambda: acked.append(1)))
        delivery.refuse = True
        clock[0] = 61.0  # the window closes, and the delivery refuses the rolled-up event
        runner.tick()
        delivery.refuse = False
        runner.emit(Batch([Line(LINE % (2, 2))], lambda: acked.append(2)))  # durable: but the first may not move
        runner.tick()
    assert acked == []
