"""The checkpoint file: moved only by commit, replaced atomically, refused when not ours."""

from __future__ import annotations

import json
import os

import pytest

from named_senderr.errors import InputError
from named_senderr.sources.checkpoint import FINGERPRINT_BYTES, Checkpoint, Position, fingerprint
from named_senderr.sources.file_tail import FileTail, TailConfig
from named_senderr.telemetry import Stats

LINE = b"client 192.0.2.7#5353: error sending response: would block\n"


def follow(log, checkpoint) -> FileTail:
    return FileTail(TailConfig((str(log),), checkpoint, read_from_head=True), Stats(), print)


def test_checkpoint_moves_only_when_the_batch_is_committed(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    log.write_bytes(LINE * 3)
    tail = follow(log, checkpoint)
    batch = tail.poll()
    assert len(batch.lines) == 3
    assert [e["offset"] for e in json.loads(checkpoint.read_text())["files"]] == [0]  # where it started
    batch.commit()
    [entry] = json.loads(checkpoint.read_text())["files"]
    assert entry["offset"] == len(LINE) * 3
    assert (entry["dev"], entry["ino"]) == (log.stat().st_dev, log.stat().st_ino)


def test_checkpoint_records_path_and_fingerprint_of_what_was_read(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    log.write_bytes(LINE * 100)
    tail = follow(log, checkpoint)
    tail.poll().commit()
    [entry] = json.loads(checkpoint.read_text())["files"]
    fd = os.open(log, os.O_RDONLY)
    try:
        assert (entry["fingerprint"], entry["fingerprint_size"]) == fingerprint(fd, FINGERPRINT_BYTES)
    finally:
        os.close(fd)
    assert entry["path"] == str(log)


def test_save_leaves_no_temporary_file_behind(tmp_path):
    checkpoint = Checkpoint(tmp_path / "tail.json")
    checkpoint.replace([Position("/x", 1, 2, 3, "ab", 3)], ("/x",))
    assert os.listdir(tmp_path) == ["tail.json"]
    assert Checkpoint(tmp_path / "tail.json").get(1, 2) == Position("/x", 1, 2, 3, "ab", 3)


def test_failed_save_keeps_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "tail.json"
    Checkpoint(path).replace([Position("/x", 1, 2, 3, "ab", 3)], ("/x",))
    before = path.read_bytes()

    def refuse(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(InputError, match="cannot save the checkpoint: No space left"):
        Checkpoint(path).replace([Position("/x", 1, 2, 99, "ab", 3)], ("/x",))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["tail.json"]


def test_unchanged_positions_are_not_written_again(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    log.write_bytes(LINE)
    tail = follow(log, checkpoint)
    tail.poll().commit()
    checkpoint.unlink()
    tail.poll().commit()  # nothing new: the idle loop does not rewrite the file
    assert not checkpoint.exists()


@pytest.mark.parametrize(
    "content", ["not json", "[]", '{"version": 7, "files": []}', '{"version": 1, "files": [{"path": "x"}]}']
)
def test_foreign_or_corrupt_checkpoint_is_refused_naming_the_file_and_the_fix(tmp_path, content):
    path = tmp_path / "tail.json"
    path.write_text(content)
    with pytest.raises(InputError, match=r"tail\.json: not a named-senderr checkpoint .*delete it"):
        Checkpoint(path)


def test_missing_checkpoint_is_an_empty_start(tmp_path):
    assert Checkpoint(tmp_path / "none.json").positions == {}


def test_checkpoint_records_the_globs_it_follows(tmp_path):
    log, checkpoint = tmp_path / "named.log", tmp_path / "tail.json"
    follow(log, checkpoint).poll()  # nothing matches yet: a file that appears later is new, even after a restart
    assert json.loads(checkpoint.read_text())["globs"] == [str(log)]


def test_planted_temp_file_link_is_not_written_through(tmp_path):
    log, checkpoint, victim = tmp_path / "named.log", tmp_path / "tail.json", tmp_path / "victim"
    log.write_bytes(LINE)
    victim.write_text("precious")
    os.symlink(victim, tmp_path / f".tail.json.{os.getpid()}.tmp")
    follow(log, checkpoint).poll().commit()
    assert victim.read_text() == "precious"
    assert not checkpoint.is_symlink()


def test_checkpoint_path_that_is_a_link_is_refused_naming_the_flag(tmp_path):
    checkpoint = tmp_path / "tail.json"
    os.symlink(tmp_path / "elsewhere.json", checkpoint)
    with pytest.raises(InputError, match=r"tail\.json: the checkpoint is a symbolic link .*--allow-checkpoint-symlink"):
        follow(tmp_path / "named.log", checkpoint)


def test_checkpoint_link_is_written_through_when_allowed(tmp_path):
    log, checkpoint, target = tmp_path / "named.log", tmp_path / "tail.json", tmp_path / "state" / "tail.json"
    log.write_bytes(LINE)
    target.parent.mkdir()
    os.symlink(target, checkpoint)
    config = TailConfig((str(log),), checkpoint, read_from_head=True, allow_checkpoint_symlink=True)
    FileTail(config, Stats(), print).poll().commit()
    assert checkpoint.is_symlink()
    assert [e["offset"] for e in json.loads(target.read_text())["files"]] == [len(LINE)]


def test_temp_file_left_by_a_kill_during_a_save_is_removed_at_the_next_start(tmp_path):
    (tmp_path / ".tail.json.k3x9q1.tmp").write_text('{"version": 1, "files": [')
    Checkpoint(tmp_path / "tail.json")
    assert os.listdir(tmp_path) == []
