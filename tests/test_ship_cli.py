"""``named-senderr ship`` and ``setup`` as a user runs them: output, summary, exit status, secrets."""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from named_senderr.cli import main
from named_senderr.cli.parse import sample_path
from named_senderr.engine.shipping import check_dead_letter
from named_senderr.errors import ConfigError
from named_senderr.settings.ship import DEFAULT_DEAD_LETTER
from tests.faults import FaultServer, Reply, Request, bulk_answer
from tests.polling import wait_until

SECRET = "pa55-Do-Not-Print-7f3a"


def fast_retry(tmp_path: Path, attempts: int = 3) -> Path:
    path = tmp_path / "ship.toml"
    path.write_text(f"[retry]\nmax_attempts = {attempts}\ninitial_backoff = 0.001\nmax_backoff = 0.002\n")
    return path


def ship(tmp_path: Path, *args: str) -> int:
    return main(["ship", "--sample", "--dead-letter", str(tmp_path / "dead.ndjson"), "--no-progress", *args])


def test_stdout_sink_prints_what_parse_prints(capsysbinary) -> None:
    main(["parse", "--sample"])
    parsed = capsysbinary.readouterr().out
    assert main(["ship", "--sample", "--to", "stdout:"]) == 0
    assert capsysbinary.readouterr().out == parsed


def test_summary_counts_events_per_sink(tmp_path: Path, capsys) -> None:
    ship(tmp_path, "--to", "stdout:?format=flat")
    err = capsys.readouterr().err
    assert "39 events from 400 lines of 1 input(s)" in err
    assert "stdout:  sent 39 (0 already stored), retried 0, dead-lettered 0" in err


def test_exit_status_is_0_when_everything_is_stored(tmp_path: Path) -> None:
    with FaultServer(lambda r, n: bulk_answer([201] * (len(r.ndjson) // 2))) as server:
        assert ship(tmp_path, "--to", f"elasticsearch+{server.url}/named") == 0


def test_exit_status_is_3_when_something_is_dead_lettered(tmp_path: Path, capsys) -> None:
    def one_refused(request: Request, n: int) -> Reply:
        return bulk_answer([400] + [201] * (len(request.ndjson) // 2 - 1), "failed to parse field [client.ip]")

    with FaultServer(one_refused) as server:
        assert ship(tmp_path, "--to", f"elasticsearch+{server.url}/named") == 3
    assert f"1 event(s) written to {tmp_path / 'dead.ndjson'}" in capsys.readouterr().err


def test_exit_status_is_4_when_a_sink_fails(tmp_path: Path, capsys) -> None:
    with FaultServer(lambda r, n: Reply(503, b"unavailable")) as server:
        code = ship(tmp_path, "--config", str(fast_retry(tmp_path)), "--to", f"loki+{server.url}")
    err = capsys.readouterr().err
    assert code == 4 and "gave up after 3 attempt(s)" in err and "run the same command again" in err


def test_exit_status_is_2_for_an_unknown_key_and_nothing_is_sent(tmp_path: Path, capsys) -> None:
    with FaultServer(lambda r, n: Reply(204)) as server:
        assert ship(tmp_path, "--to", f"loki+{server.url}?lables=job") == 2
    assert "unknown key 'lables'; did you mean 'labels'?" in capsys.readouterr().err
    assert server.requests == []


def test_exit_status_is_1_for_an_unreadable_input(tmp_path: Path) -> None:
    assert ship(tmp_path, str(tmp_path / "missing.log"), "--to", "stdout:") == 1


def test_dead_letter_in_a_missing_directory_is_refused_before_sending(tmp_path: Path, capsys) -> None:
    code = main(["ship", "--sample", "--to", "stdout:", "--dead-letter", str(tmp_path / "no" / "dl.ndjson")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_the_start_check_never_removes_a_dead_letter_file_another_process_writes(tmp_path: Path) -> None:
    """Workers sharing a dead-letter path: one's start must not unlink the empty file another just opened."""
    shared = tmp_path / "dead.ndjson"
    with open(shared, "ab") as other_worker:
        check_dead_letter(shared)
        assert shared.exists()
        other_worker.write(b'{"refused": 1}\n')
    assert shared.read_bytes() == b'{"refused": 1}\n'


def test_the_start_check_makes_no_dead_letter_file(tmp_path: Path) -> None:
    check_dead_letter(tmp_path / "dead.ndjson")
    assert list(tmp_path.iterdir()) == []


def test_a_dead_letter_directory_nothing_can_be_written_in_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot write"):
        check_dead_letter(Path("/proc/self/dead.ndjson"))  # not even root creates files there


@pytest.mark.parametrize("answer", [Reply(401, b'{"error":{"reason":"unable to authenticate user [shipper]"}}'),
                                    Reply(503, b"unavailable"), Reply(400, b'{"error":{"reason":"bad"}}')])  # fmt: skip
def test_secret_never_appears_in_output_or_dead_letters(tmp_path: Path, capfd, monkeypatch, answer: Reply) -> None:
    monkeypatch.setenv("TEST_SHIP_PASSWORD", SECRET)
    url = "elasticsearch+{}/named?username=shipper&password_env=TEST_SHIP_PASSWORD"
    with FaultServer(lambda r, n: answer) as server:
        ship(tmp_path, "--config", str(fast_retry(tmp_path)), "--to", url.format(server.url), "--rejects", "/dev/null")
    assert server.requests[0].headers["authorization"].startswith("Basic ")
    captured = capfd.readouterr()
    dead = (tmp_path / "dead.ndjson").read_text() if (tmp_path / "dead.ndjson").exists() else ""
    assert SECRET not in captured.out + captured.err + dead


def test_secret_missing_from_the_environment_is_named_not_printed(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("TEST_SHIP_PASSWORD", raising=False)
    code = ship(tmp_path, "--to", "loki+http://127.0.0.1:9?username=u&password_env=TEST_SHIP_PASSWORD")
    assert code == 2 and "TEST_SHIP_PASSWORD, which is not set" in capsys.readouterr().err


def test_setup_without_an_elasticsearch_sink_is_refused(capsys) -> None:
    assert main(["setup", "elasticsearch", "--to", "loki+http://127.0.0.1:3100"]) == 2
    assert "no elasticsearch+ or opensearch+ sink" in capsys.readouterr().err


def test_setup_refuses_an_option_the_server_lacks_before_changing_anything(capsys) -> None:
    no_ilm = lambda r, n: Reply(400, b'{"error":"no handler found for uri [/_ilm/policy] and method [GET]"}')  # noqa: E731
    with FaultServer(no_ilm) as server:
        code = main(["setup", "elasticsearch", "--to", f"elasticsearch+{server.url}/named", "--lifecycle"])
    assert code == 1 and "run setup without --lifecycle" in capsys.readouterr().err
    assert [r.method for r in server.requests] == ["GET"]


def test_live_progress_line_is_drawn_on_a_terminal(tmp_path: Path) -> None:
    """A slow server (0.2 s per request) and small batches keep the run going long enough to report."""
    line = "21-Nov-2026 04:48:24.527 client: warning: client @0x7f38 2001:db8:53::2#39460 (big.example.test): view external: error sending response: would block\n"
    (tmp_path / "named.log").write_text(line * 3000)
    (tmp_path / "ship.toml").write_text("[batch]\nmax_events = 100\n")

    def slow(request: Request, n: int) -> Reply:
        time.sleep(0.2)
        return Reply(204)

    leader, follower = pty.openpty()
    with FaultServer(slow) as server:
        command = [sys.executable, "-m", "named_senderr", "ship", str(tmp_path / "named.log"), "--config",
                   str(tmp_path / "ship.toml"), "--to", f"loki+{server.url}", "--dead-letter", str(tmp_path / "d")]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=follower)
        os.close(follower)
        drawn = b""
        with contextlib.suppress(OSError):  # EIO once the child has closed its end
            while chunk := os.read(leader, 65536):
                drawn += chunk
        os.close(leader)
        process.wait(timeout=120)
    assert process.returncode == 0
    assert b"\r\x1b[Knamed-senderr: " in drawn and b"events read | loki+" in drawn
    assert b"sent 3,000 (0 already stored)" in drawn


def test_an_unreachable_store_is_told_at_once_with_the_retry_budget(tmp_path: Path, free_port: int) -> None:
    """Nothing listens on the port: the first failed attempt is on stderr within seconds, not after the budget."""
    err = tmp_path / "stderr"
    command = [sys.executable, "-m", "named_senderr", "ship", "--sample", "--to",
               f"elasticsearch+http://127.0.0.1:{free_port}/x", "--dead-letter", str(tmp_path / "dead.ndjson")]  # fmt: skip
    with open(err, "wb") as out:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=out)
    try:
        wait_until(lambda: b"retry budget left" in err.read_bytes(), timeout=10)
    finally:
        process.kill()
        process.wait(timeout=10)
    told = err.read_text()
    assert "cannot reach the store (cannot connect:" in told
    assert "retrying 39 event(s): attempt 1 of 10 failed, next try in" in told
    assert f"of the 300 s retry budget left; when it runs out, they go to {tmp_path / 'dead.ndjson'}" in told


@pytest.mark.parametrize("command", ["ship", "tail", "listen", "serve", "fluentd-filter"])
def test_every_delivering_command_states_the_dead_letter_default(command: str, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one line per option: the file name is not cut at its hyphens
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert f"default: {DEFAULT_DEAD_LETTER} in the working directory" in capsys.readouterr().out


def bulk_then_refresh(refresh: Reply) -> Callable[[Request, int], Reply]:
    """Takes every ``_bulk`` item; answers ``_refresh`` with ``refresh``."""
    return lambda r, n: (
        refresh if r.path.split("?")[0].endswith("/_refresh") else bulk_answer([201] * (len(r.ndjson) // 2))
    )


def test_one_shot_ship_ends_with_one_refresh_of_its_index(tmp_path: Path) -> None:
    with FaultServer(bulk_then_refresh(Reply(200, b'{"_shards":{"failed":0}}'))) as server:
        assert ship(tmp_path, "--to", f"elasticsearch+{server.url}/named") == 0
    paths = [(r.method, r.path.split("?")[0]) for r in server.requests]
    assert paths[-1] == ("POST", "/named/_refresh") and paths.count(("POST", "/named/_refresh")) == 1


def test_a_refused_refresh_is_a_warning_naming_when_documents_become_searchable(tmp_path: Path, capsys) -> None:
    with FaultServer(bulk_then_refresh(Reply(503, b'{"error":{"type":"unavailable","reason":"busy"}}'))) as server:
        assert ship(tmp_path, "--to", f"elasticsearch+{server.url}/named") == 0  # every event was stored
    err = capsys.readouterr().err
    assert "refresh after the run failed (unavailable: busy)" in err
    assert "searchable within the index's refresh_interval (5 s in the shipped template)" in err


def test_tail_into_a_search_store_leaves_refreshing_to_the_index(tmp_path: Path) -> None:
    """A long run would refresh at every stop; it relies on refresh_interval instead."""
    log = tmp_path / "named.log"
    log.write_bytes(Path(sample_path()).read_bytes())
    with FaultServer(bulk_then_refresh(Reply(200, b"{}"))) as server:
        command = [sys.executable, "-m", "named_senderr", "tail", str(log), "--read-from-head", "--checkpoint",
                   str(tmp_path / "cp.json"), "--to", f"elasticsearch+{server.url}/named",
                   "--dead-letter", str(tmp_path / "d")]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: any(r.path.startswith("/named/_bulk") for r in server.requests))
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            process.kill()
    assert not [r for r in server.requests if "_refresh" in r.path]
