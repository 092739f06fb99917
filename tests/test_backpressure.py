"""A full disk queue holds the reader back (bounded disk and memory), or, with ``drop``, drops and counts."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from named_senderr.engine.shipping import run_ship
from named_senderr.event import Event
from named_senderr.settings.ship import QueueConfig, ShipConfig, SinkConfig
from named_senderr.sinks.outcome import Outcome

ROOT = Path(__file__).resolve().parent.parent
QUEUE_BYTES = 256 * 1024


class GatedSink:
    """Takes nothing until ``gate`` opens; records the queue size it saw at each send."""

    name = "gated+http://h"
    workers = 1

    def __init__(self, gate: threading.Event, sizes: list[int] | None = None) -> None:
        self.gate = gate
        self.items: list[str] = []

    def encode(self, event: Event) -> tuple[str, int]:
        return f"{event.file}:{event.offset}", 1

    def send(self, items: list) -> Outcome:
        self.gate.wait(30)
        self.items.extend(items)
        return Outcome(delivered=len(items))

    def dead_record(self, item) -> dict:
        return {"item": item}

    def close(self) -> None:
        pass


def generated(tmp_path: Path, lines: int) -> Path:
    path = tmp_path / "named.log"
    subprocess.run([sys.executable, str(ROOT / "bench" / "generate_log.py"), "--lines", str(lines),
                    "--error-rate", "1", "-o", str(path)], check=True)  # fmt: skip
    return path


def config(tmp_path: Path, log: Path, when_full: str) -> ShipConfig:
    queue = QueueConfig(dir=tmp_path / "queue", max_bytes=QUEUE_BYTES, when_full=when_full)
    sink = SinkConfig(kind="stdout", name="gated+http://h")
    return ShipConfig(sinks=(sink,), inputs=(str(log),), queue=queue, dead_letter=tmp_path / "dead.ndjson")


def queue_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.seg"))


def test_a_full_queue_makes_the_reader_wait_within_the_bound_and_nothing_is_lost(tmp_path: Path) -> None:
    log = generated(tmp_path, 20_000)  # ~5 MB of events: twenty times the queue
    gate = threading.Event()
    sink = GatedSink(gate)
    results = []
    run = threading.Thread(target=lambda: results.append(run_ship(config(tmp_path, log, "wait"), print, sinks=[sink])))
    run.start()
    deadline = time.monotonic() + 10
    while queue_bytes(tmp_path / "queue") < QUEUE_BYTES // 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the reader had time to overrun the bound, were it not held back
    peak = queue_bytes(tmp_path / "queue")
    assert QUEUE_BYTES // 2 <= peak <= QUEUE_BYTES and run.is_alive()
    gate.set()
    run.join(60)
    assert not run.is_alive() and len(sink.items) == len(set(sink.items)) == 20_000
    assert results[0].queue.dropped == 0 and results[0].queue.queued == 20_000


def test_when_full_drop_drops_counts_and_warns_once(tmp_path: Path) -> None:
    log = generated(tmp_path, 20_000)
    gate = threading.Event()
    sink = GatedSink(gate)
    warnings: list[str] = []
    timer = threading.Timer(2.0, gate.set)  # the sink stays blocked while the whole file is read
    timer.start()
    result = run_ship(config(tmp_path, log, "drop"), warnings.append, sinks=[sink])
    timer.cancel()
    dropped = result.queue.dropped
    assert dropped > 0 and result.queue.queued + dropped == 20_000 and len(sink.items) == result.queue.queued
    assert len([w for w in warnings if "dropping events" in w]) == 1
