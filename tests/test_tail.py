"""The file tail: rotation, truncation, restarts, new files; every line exactly once.

Each test drives ``FileTail.poll()`` itself, a bounded number of times, with a
fake clock for ``rotate_wait``: no sleeps, no threads.
"""

from __future__ import annotations

import gzip
import shutil

import pytest

from named_senderr.errors import ConfigError
from named_senderr.parse.named import MAX_LINE_BYTES
from named_senderr.sources.file_tail import FileTail, TailConfig
from named_senderr.telemetry import Stats

NOISE = b"21-Nov-2026 04:47:35.739 general: info: zone example/IN: loaded serial 7\n"


def line(n: int) -> bytes:
    """A send error whose client port tells which line it is."""
    return f"21-Nov-2026 04:47:35.{n % 1000:03d} client @0x7f04 192.0.2.7#{1024 + n} (a.example): error sending response: would block\n".encode()


def number(raw: bytes) -> int:
    return int(raw.split(b"#")[1].split(b" ")[0]) - 1024


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A tail over ``globs`` whose consumer records what it took and commits it."""

    def __init__(self, *globs, checkpoint=None, rotate_wait=5.0, read_from_head=True, clock=None) -> None:
        self.clock = clock or Clock()
        self.warnings: list[str] = []
        config = TailConfig(tuple(str(g) for g in globs), checkpoint, 0.05, rotate_wait, read_from_head)
        self.tail = FileTail(config, Stats(), self.warnings.append, self.clock)
        self.taken: list[int] = []

    def drain(self, commit: bool = True, polls: int = 20) -> list[int]:
        """Poll until a poll brings nothing (at most ``polls`` times); the line numbers read."""
        got: list[int] = []
        for _ in range(polls):
            batch = self.tail.poll()
            got += [number(raw.raw) for raw in batch.lines]
            if commit:
                batch.commit()
            if not batch.lines and not batch.more:
                return got
        raise AssertionError(f"still reading after {polls} polls")

    def take(self) -> list[int]:
        got = self.drain()
        self.taken += got
        return got


def append(path, *numbers: int) -> None:
    with open(path, "ab") as stream:
        stream.write(b"".join(line(n) for n in numbers))


def run_and_stop(log, checkpoint, *numbers: int, glob=None) -> None:
    """A first run (over ``glob``, or just ``log``) that reads ``numbers``, appended now, commits and stops."""
    append(log, *numbers)
    first = Harness(glob or log, checkpoint=checkpoint)
    first.take()
    first.tail.close()


def test_lines_appended_after_the_start_are_read_once(tmp_path):
    log = tmp_path / "named.log"
    append(log, 0, 1)
    tail = Harness(log)
    assert tail.take() == [0, 1]
    append(log, 2)
    log.open("ab").write(NOISE)
    append(log, 3)
    assert tail.take() == [2, 3]
    assert tail.take() == []


def test_unfinished_last_line_waits_for_its_newline(tmp_path):
    log = tmp_path / "named.log"
    whole = line(5)
    log.write_bytes(line(4) + whole[:30])
    tail = Harness(log)
    assert tail.take() == [4]
    with log.open("ab") as stream:
        stream.write(whole[30:])
    assert tail.take() == [5]


def test_event_offsets_point_at_the_line_in_the_file(tmp_path):
    log = tmp_path / "named.log"
    log.write_bytes(NOISE + line(0) + NOISE + line(1))
    tail = Harness(log)
    lines = tail.tail.poll().lines
    data = log.read_bytes()
    assert [data[x.offset : x.offset + len(x.raw) + 1] for x in lines] == [line(0), line(1)]


def test_rename_and_create_rotation_loses_and_duplicates_nothing(tmp_path):
    log = tmp_path / "named.log"
    append(log, 0, 1, 2)
    tail = Harness(log, rotate_wait=5.0)
    assert tail.take() == [0, 1, 2]
    append(log, 3, 4)  # not yet read when the rotation comes
    log.rename(tmp_path / "named.log.0")
    append(log, 10, 11)  # the new file
    append(tmp_path / "named.log.0", 5)  # a late write through named's old descriptor
    tail.take()
    tail.clock.now += 6  # rotate_wait is over: the old file is drained and let go
    tail.take()
    append(log, 12)
    tail.take()
    assert sorted(tail.taken) == [0, 1, 2, 3, 4, 5, 10, 11, 12]
    assert len(tail.tail._files) == 1


def test_copytruncate_with_the_copy_under_the_glob_loses_and_duplicates_nothing(tmp_path):
    log = tmp_path / "named.log"
    append(log, 0, 1, 2)
    tail = Harness(tmp_path / "named.log*")
    assert tail.take() == [0, 1, 2]
    append(log, 3, 4)  # written before logrotate copies, never read from named.log
    shutil.copyfile(log, tmp_path / "named.log.1")
    log.write_bytes(b"")
    append(log, *range(100, 110))  # named goes on writing, past the old offset
    tail.take()
    assert sorted(tail.taken) == [0, 1, 2, 3, 4, *range(100, 110)]


def test_truncation_is_seen_even_when_the_file_regrew_past_the_old_offset(tmp_path):
    log = tmp_path / "named.log"
    append(log, 0, 1)
    tail = Harness(log)
    assert tail.take() == [0, 1]
    log.write_bytes(b"")
    append(log, *range(20, 30))
    assert tail.take() == list(range(20, 30))
    assert any("truncated" in w for w in tail.warnings)


def test_file_that_shrinks_is_read_again_from_its_start(tmp_path):
    log = tmp_path / "named.log"
    append(log, 0, 1, 2, 3)
    tail = Harness(log)
    tail.take()
    with log.open("r+b") as stream:
        stream.truncate(len(line(0)))  # what is left is a line already read, as seen by an editor's save
    append(log, 7)
    assert tail.take() == [0, 7]


def test_restart_from_checkpoint_resumes_without_loss_or_duplicates(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    append(log, 0, 1, 2)
    first = Harness(log, checkpoint=checkpoint)
    assert first.take() == [0, 1, 2]
    append(log, 3, 4)
    assert first.drain(commit=False) == [3, 4]  # handed out, then the consumer dies before taking them
    append(log, 5)
    second = Harness(log, checkpoint=checkpoint, read_from_head=False)
    assert second.take() == [3, 4, 5]


def test_restart_after_a_rotation_while_stopped_drains_the_renamed_file(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    append(log, 0, 1)
    first = Harness(log, checkpoint=checkpoint)
    first.take()
    first.tail.close()
    append(log, 2, 3)
    log.rename(tmp_path / "named.log.0")
    append(log, 10)
    second = Harness(log, checkpoint=checkpoint, rotate_wait=0)
    assert sorted(second.take()) == [2, 3, 10]


def test_checkpointed_inode_with_other_content_is_read_from_its_start(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    append(log, 0, 1)
    first = Harness(log, checkpoint=checkpoint)
    first.take()
    first.tail.close()
    log.write_bytes(line(8) + line(9) + line(10))  # same inode, other content, longer than the old offset
    second = Harness(log, checkpoint=checkpoint, read_from_head=False)
    assert second.take() == [8, 9, 10]


def test_glob_picks_up_a_file_created_later_from_its_start(tmp_path):
    append(tmp_path / "a.log", 0)
    tail = Harness(tmp_path / "*.log", read_from_head=False)
    assert tail.take() == []
    append(tmp_path / "b.log", 1, 2)
    assert tail.take() == [1, 2]


def test_files_present_at_the_first_start_are_followed_from_their_end(tmp_path):
    log = tmp_path / "named.log"
    append(log, 0, 1)
    with log.open("ab") as stream:
        stream.write(line(2)[:20])  # named is in the middle of writing a line
    tail = Harness(log, read_from_head=False)
    assert tail.take() == []
    with log.open("ab") as stream:
        stream.write(line(2)[20:])
    assert tail.take() == [2]


def test_line_over_the_limit_is_flagged_once_and_the_next_line_is_read(tmp_path):
    log = tmp_path / "named.log"
    log.write_bytes(line(0)[:-1] + b" " + b"x" * 1000)
    tail = Harness(log)
    assert tail.take() == []
    with log.open("ab") as stream:
        stream.write(b"x" * (MAX_LINE_BYTES + 10))
    batch = tail.tail.poll()
    assert [(len(x.raw), x.oversize) for x in batch.lines] == [(MAX_LINE_BYTES, True)]
    with log.open("ab") as stream:
        stream.write(b"y" * 500 + b"\n" + line(1))
    assert tail.take() == [1]
    assert tail.tail.stats.oversize_lines == 1


def test_gzipped_rotation_under_the_glob_is_skipped_with_a_warning(tmp_path):
    (tmp_path / "named.log.1.gz").write_bytes(gzip.compress(line(0)))
    append(tmp_path / "named.log", 1)
    tail = Harness(tmp_path / "named.log*")
    assert tail.take() == [1]
    assert any("gzip" in w for w in tail.warnings)


@pytest.mark.parametrize("interval", [0, 0.001, 11, 3600])
def test_poll_interval_outside_its_bounds_is_a_config_error(interval):
    with pytest.raises(ConfigError, match="poll interval"):
        TailConfig(("x",), poll_interval=interval)


def test_no_glob_is_a_config_error_with_an_example():
    with pytest.raises(ConfigError, match=r"/var/log/named/\*\.log"):
        TailConfig(())


def test_file_created_by_a_rename_rotation_while_stopped_is_read_from_its_start(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    run_and_stop(log, checkpoint, 0, 1)
    log.rename(tmp_path / "named.log.0")
    append(log, 10, 11)  # the new file, created while the tail was stopped
    second = Harness(log, checkpoint=checkpoint, rotate_wait=0, read_from_head=False)
    assert second.take() == [10, 11]


def test_copytruncate_while_stopped_finishes_the_copy_under_the_glob_from_the_checkpoint(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    run_and_stop(log, checkpoint, 0, 1, glob=tmp_path / "named.log*")
    append(log, 2, 3)  # written while stopped, before logrotate copied the file
    shutil.copyfile(log, tmp_path / "named.log.1")
    log.write_bytes(b"")
    append(log, 20, 21)
    second = Harness(tmp_path / "named.log*", checkpoint=checkpoint, read_from_head=False)
    assert sorted(second.take()) == [2, 3, 20, 21]


def test_copytruncate_while_stopped_finishes_the_copy_beside_the_file_outside_the_glob(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    run_and_stop(log, checkpoint, 0, 1)
    append(log, 2, 3)
    shutil.copyfile(log, tmp_path / "named.log-20261121")
    log.write_bytes(b"")
    append(log, 20, 21)
    second = Harness(log, checkpoint=checkpoint, rotate_wait=0, read_from_head=False)
    assert sorted(second.take()) == [2, 3, 20, 21]


def test_copytruncate_while_running_finishes_the_copy_outside_the_glob(tmp_path):
    log = tmp_path / "named.log"
    append(log, 0, 1)
    tail = Harness(log)
    tail.take()
    append(log, 2, 3)  # not yet read when logrotate copies
    shutil.copyfile(log, tmp_path / "named.log.1")
    log.write_bytes(b"")
    append(log, 20)
    tail.take()
    assert sorted(tail.taken) == [0, 1, 2, 3, 20]


def test_file_truncated_while_stopped_without_a_copy_says_from_which_byte_lines_are_lost(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    run_and_stop(log, checkpoint, 0, 1)
    read_to = log.stat().st_size
    log.write_bytes(b"")
    append(log, 20)
    second = Harness(log, checkpoint=checkpoint, read_from_head=False)
    assert second.take() == [20]
    assert any(f"after byte {read_to} is lost" in w for w in second.warnings)


def test_commit_through_moves_the_checkpoint_past_exactly_the_lines_taken(tmp_path):
    checkpoint = tmp_path / "tail.json"
    append(tmp_path / "a.log", 0, 1)
    append(tmp_path / "b.log", 2, 3)
    first = Harness(tmp_path / "*.log", checkpoint=checkpoint)
    batch = first.tail.poll()
    assert [number(x.raw) for x in batch.lines] == [0, 1, 2, 3]
    batch.commit_through(3)  # then killed: the fourth line was never passed on
    second = Harness(tmp_path / "*.log", checkpoint=checkpoint, read_from_head=False)
    assert second.take() == [3]


def test_glob_that_matches_nothing_says_so_once_and_again_when_a_file_appears(tmp_path):
    tail = Harness(tmp_path / "*.log", read_from_head=False)
    tail.take()
    tail.take()
    assert [w for w in tail.warnings if "no file matches yet" in w] == [
        f"{tmp_path / '*.log'}: no file matches yet; waiting for one to appear, to read it from its start"
    ]
    append(tmp_path / "a.log", 0)
    assert tail.take() == [0]
    assert tail.warnings[-1] == f"{tmp_path / '*.log'}: now matches {tmp_path / 'a.log'}; following it"


def test_missing_checkpoint_directory_is_created_and_said(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "var" / "lib" / "named-senderr" / "tail.json"
    append(log, 0)
    tail = Harness(log, checkpoint=checkpoint)
    assert tail.take() == [0]
    assert checkpoint.is_file()
    assert tail.warnings == [f"created {checkpoint.parent} for the checkpoint tail.json"]


def test_byte_order_mark_at_the_start_of_a_followed_file_is_not_part_of_its_first_line(tmp_path):
    log = tmp_path / "named.log"
    log.write_bytes(b"\xef\xbb\xbf" + line(0))
    [first] = Harness(log).tail.poll().lines
    assert (first.raw, first.offset) == (line(0).rstrip(b"\n"), 3)


def test_byte_order_mark_bytes_appended_later_are_left_in_the_line(tmp_path):
    """Only offset 0 holds a mark; the same bytes further on are the line's own (and get it rejected)."""
    log = tmp_path / "named.log"
    append(log, 0)
    tail = Harness(log)
    assert tail.take() == [0]
    log.open("ab").write(b"\xef\xbb\xbf" + line(1))
    [later] = tail.tail.poll().lines
    assert later.raw == b"\xef\xbb\xbf" + line(1).rstrip(b"\n")
