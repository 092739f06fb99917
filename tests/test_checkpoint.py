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
    assert not checkpoint.exists()
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
    checkpoint.replace([Position("/x", 1, 2, 3, "ab", 3)])
    assert os.listdir(tmp_path) == ["tail.json"]
    assert Checkpoint(tmp_path / "tail.json").get(1, 2) == Position("/x", 1, 2, 3, "ab", 3)


def test_failed_save_keeps_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "tail.json"
    Checkpoint(path).replace([Position("/x", 1, 2, 3, "ab", 3)])
    before = path.read_bytes()

    def refuse(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(InputError, match="cannot save the checkpoint: No space left"):
        Checkpoint(path).replace([Position("/x", 1, 2, 99, "ab", 3)])
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
