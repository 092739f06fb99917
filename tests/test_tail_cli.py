"""``named-senderr tail`` as a long-running process: events out, checkpoint saved on SIGTERM."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading

DEADLINE = 10.0
LINE = "21-Nov-2026 04:47:35.739 client @0x7f04 192.0.2.7#{port} (a.example): error sending response: would block\n"


class Process:
    """A named-senderr subprocess whose stdout and stderr lines are read with a deadline."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "named_senderr", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.stdout: queue.Queue = queue.Queue()
        self.stderr: queue.Queue = queue.Queue()
        for stream, lines in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=lambda s=stream, q=lines: [q.put(x) for x in s], daemon=True).start()

    def events(self, count: int) -> list[dict]:
        return [json.loads(self.stdout.get(timeout=DEADLINE)) for _ in range(count)]

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=DEADLINE)
        finally:
            self.proc.kill()


def test_tail_prints_appended_events_and_saves_the_checkpoint_on_sigterm(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    log.write_text(LINE.format(port=1000))
    tail = Process(
        "tail",
        str(tmp_path / "*.log"),
        "--checkpoint",
        str(checkpoint),
        "--format",
        "flat",
        "--read-from-head",
        "--poll-interval",
        "0.05",
    )
    assert [e["client_port"] for e in tail.events(1)] == [1000]
    with log.open("a") as stream:
        stream.write(LINE.format(port=1001))
    [event] = tail.events(1)
    assert (event["client_port"], event["file"], event["offset"]) == (1001, str(log), len(LINE.format(port=1000)))
    assert tail.stop() == 0
    [entry] = json.loads(checkpoint.read_text())["files"]
    assert entry["offset"] == log.stat().st_size


def test_tail_restarted_with_its_checkpoint_prints_only_what_is_new(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    log.write_text(LINE.format(port=1000))
    first = Process("tail", str(log), "--checkpoint", str(checkpoint), "--read-from-head", "--poll-interval", "0.05")
    first.events(1)
    assert first.stop(signal.SIGINT) == 0
    with log.open("a") as stream:
        stream.write(LINE.format(port=1001))
    second = Process("tail", str(log), "--checkpoint", str(checkpoint), "--poll-interval", "0.05")
    [event] = second.events(1)
    assert event["client"]["port"] == 1001
    assert second.stop() == 0
    assert second.stdout.empty()


def test_tail_with_a_bad_poll_interval_is_a_usage_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "named_senderr", "tail", str(tmp_path), "--poll-interval", "0"],
        capture_output=True,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 2
    assert b"poll interval 0.0 s is outside" in result.stderr
