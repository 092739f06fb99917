"""``named-senderr tail`` as a long-running process: events out, checkpoint saved on SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from named_senderr.cli.tail import PRINT_EVERY
from tests.polling import wait_until
from tests.test_metrics import scrape

DEADLINE = 10.0
LINE = "21-Nov-2026 04:47:35.739 client @0x7f04 192.0.2.7#{port} (a.example): error sending response: would block\n"


class Process:
    """A named-senderr subprocess whose stdout and stderr lines are read with a deadline."""

    def __init__(self, *args: str, runner: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [*runner, sys.executable, "-m", "named_senderr", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
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


def checkpointed(checkpoint: Path) -> int:
    """Bytes of the log the checkpoint vouches for; 0 before it exists."""
    if not checkpoint.exists():
        return 0
    return sum(entry["offset"] for entry in json.loads(checkpoint.read_text())["files"])


def test_tail_killed_9_while_blocked_on_stdout_prints_at_most_one_write_again(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    log.write_text("".join(LINE.format(port=n) for n in range(5000)))  # one poll's batch
    command = [sys.executable, "-m", "named_senderr", "tail", str(log), "--checkpoint", str(checkpoint),
               "--format", "flat", "--read-from-head", "--poll-interval", "0.05"]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert first.stdout is not None
    for _ in range(1000):  # then stop reading: the pipe fills and the tail blocks inside its batch
        first.stdout.readline()
    deadline = time.monotonic() + 5  # bounded: the fixed tail saves its checkpoint after each write well before
    while checkpointed(checkpoint) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.kill()
    first.wait(DEADLINE)
    printed = 1000 + first.stdout.read().count(b"\n")  # what had reached the pipe by the kill
    with (tmp_path / "second.ndjson").open("wb") as out:
        second = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: checkpointed(checkpoint) == log.stat().st_size)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(DEADLINE) == 0
    again = printed + (tmp_path / "second.ndjson").read_bytes().count(b"\n") - 5000
    assert 0 <= again <= PRINT_EVERY, f"{again} of {printed} events printed again"


def unprivileged() -> tuple[str, ...]:
    """A prefix that runs the command as nobody when we are root (who reads any file whatever its mode)."""
    if os.getuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without util-linux setpriv: cannot make a file unreadable to tail")
    return ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can work in: pytest's own are 0700."""
    path = Path(tempfile.mkdtemp(prefix="unreadable-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


def test_tail_retries_a_file_unreadable_at_restart_and_resumes_it_from_the_checkpoint(shared_dir):
    log, checkpoint = shared_dir / "named.log", shared_dir / "tail.json"
    log.write_text(LINE.format(port=1000))
    log.chmod(0o644)
    command = ["tail", str(log), "--checkpoint", str(checkpoint), "--format", "flat", "--poll-interval", "0.05"]
    first = Process(*command, "--read-from-head", runner=unprivileged())
    try:
        first.events(1)
    finally:
        assert first.stop() == 0
    log.chmod(0)
    with log.open("a") as stream:
        stream.write(LINE.format(port=1001))
    second = Process(*command, runner=unprivileged())
    try:
        assert "cannot open: Permission denied" in second.stderr.get(timeout=DEADLINE).decode()
        log.chmod(0o644)
        assert [e["client_port"] for e in second.events(1)] == [1001]
    finally:
        assert second.stop() == 0


def test_tail_refuses_a_checkpoint_that_is_a_symbolic_link(tmp_path):
    checkpoint = tmp_path / "tail.json"
    checkpoint.symlink_to(tmp_path / "elsewhere.json")
    result = subprocess.run(
        [sys.executable, "-m", "named_senderr", "tail", str(tmp_path / "named.log"), "--checkpoint", str(checkpoint)],
        capture_output=True,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 1
    assert b"is a symbolic link" in result.stderr and b"--allow-checkpoint-symlink" in result.stderr


def test_tail_stopped_during_an_outage_without_a_queue_keeps_its_checkpoint_before_the_undelivered(tmp_path):
    """Was: SIGTERM waited for the sink's retries to run their course, whatever --shutdown-timeout said."""
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    log.write_text(LINE.format(port=1000))
    down = "elasticsearch+http://127.0.0.1:1/idx"  # nothing listens on :1
    tail = Process("tail", str(log), "--checkpoint", str(checkpoint), "--read-from-head", "--poll-interval", "0.05",
                   "--to", down, "--shutdown-timeout", "1", "--metrics", "127.0.0.1:0")  # fmt: skip
    url = re.findall(r"http://127\.0\.0\.1:\d+", tail.stderr.get(timeout=DEADLINE).decode())[0]
    wait_until(lambda: scrape(url).get(f'named_senderr_events_retried_total{{sink="{down}"}}', 0) >= 1)
    signalled = time.monotonic()
    assert tail.stop() == 0
    assert time.monotonic() - signalled < 1 + 5  # the timeout, and the time to close
    assert checkpointed(checkpoint) == 0
    said = ""
    while "not delivered" not in said:
        said += tail.stderr.get(timeout=DEADLINE).decode()  # bounded: the process ended, its stderr is finite
    assert f"1 event(s) not delivered to {down}: the shutdown timeout ended its retries" in said


def test_tail_keeps_the_first_line_of_a_file_that_starts_with_a_byte_order_mark(tmp_path):
    log = tmp_path / "named.log"
    log.write_bytes(b"\xef\xbb\xbf" + LINE.format(port=1000).encode())
    tail = Process("tail", str(log), "--checkpoint", str(tmp_path / "tail.json"), "--format", "flat",
                   "--read-from-head", "--poll-interval", "0.05")  # fmt: skip
    [event] = tail.events(1)
    assert (event["client_port"], event["offset"]) == (1000, 3)
    assert tail.stop() == 0
