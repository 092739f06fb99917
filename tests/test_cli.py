"""The named-senderr command as a user runs it: exit status, stdout, stderr."""

from __future__ import annotations

import fcntl
import gc
import json
import os
import pty
import struct
import subprocess
import sys
import termios

from named_senderr import native
from named_senderr.cli import main
from named_senderr.cli.progress import MIN_SIZE
from tests.polling import wait_until

ERROR = "21-Nov-2026 04:47:35.739 client @0x7f04 192.0.2.7#5353 (a.example): error sending response: would block"
BAD = "client 999.0.2.30#40030: error sending response: unset"


def run(*args, stdin=b""):
    return subprocess.run(
        [sys.executable, "-m", "named_senderr", *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def test_parse_sample_prints_ecs_events_and_a_summary():
    result = run("parse", "--sample", "--stats")
    assert result.returncode == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events and all(e["event"]["dataset"] == "bind.send_error" for e in events)
    assert f"events              {len(events)}" in result.stderr.decode()


def test_stdin_is_read_when_no_file_is_named():
    result = run("parse", "--format", "flat", stdin=(ERROR + "\n").encode())
    assert result.returncode == 0
    assert json.loads(result.stdout)["client_ip"] == "192.0.2.7"


def test_missing_file_is_named_on_stderr_and_exit_status_is_1_but_others_are_parsed(tmp_path):
    log = tmp_path / "named.log"
    log.write_text(ERROR + "\n")
    result = run("parse", str(tmp_path / "missing.log"), str(log))
    assert result.returncode == 1
    assert "missing.log: no such file" in result.stderr.decode()
    assert len(result.stdout.splitlines()) == 1


def test_unknown_timezone_is_a_usage_error_with_exit_status_2(tmp_path):
    result = run("parse", "--timezone", "Nowhere/Atlantis", stdin=b"")
    assert result.returncode == 2
    assert "Nowhere/Atlantis" in result.stderr.decode() and "IANA" in result.stderr.decode()


def test_rejected_lines_are_written_with_their_cause(tmp_path):
    rejects = tmp_path / "rejects.ndjson"
    result = run("parse", "--rejects", str(rejects), stdin=f"{ERROR}\n{BAD}\n".encode())
    assert result.returncode == 0
    [record] = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert record["reason"] == "invalid_address" and record["line"] == BAD and record["offset"] == len(ERROR) + 1


def test_rejections_without_rejects_file_are_announced_not_silent():
    result = run("parse", stdin=f"{BAD}\n".encode())
    assert "1 candidate line(s) rejected" in result.stderr.decode()


def test_stdout_carries_only_json(tmp_path):
    result = run("parse", "--stats", str(tmp_path / "missing.log"), stdin=b"")
    assert result.stdout == b""


def test_help_teaches_with_examples(capsys):
    try:
        main(["parse", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "exit status:" in text and "--timezone" in text


def test_patterns_command_prints_each_top_level_pattern():
    result = run("patterns")
    assert result.returncode == 0
    assert result.stdout.decode().count("NAMED_SENDERR_") >= 4


def test_progress_bar_is_drawn_on_a_terminal_for_a_large_file(tmp_path):
    log = tmp_path / "big.log"
    noise = b"21-Nov-2026 04:47:35.739 general: info: zone example/IN: loaded serial 7\n"
    log.write_bytes(noise * (MIN_SIZE // len(noise) + 1) + (ERROR + "\n").encode())
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    process = subprocess.Popen(
        [sys.executable, "-m", "named_senderr", "parse", str(log)], stdout=subprocess.PIPE, stderr=follower
    )
    os.close(follower)
    drawn = b""
    try:
        while chunk := os.read(leader, 65536):  # EIO once the child has closed its end
            drawn += chunk
    except OSError:
        pass
    finally:
        os.close(leader)
    stdout = process.stdout.read()
    process.wait(timeout=120)
    assert process.returncode == 0
    assert len(stdout.splitlines()) == 1
    assert b"big.log" in drawn and b"%" in drawn


def test_parse_does_not_import_the_shipping_and_protocol_libraries():
    """Start-up is part of every parse: only the parse command's module is loaded."""
    code = (
        "import sys\n"
        "from named_senderr.cli import main\n"
        "main(['parse', '/dev/null'])\n"
        "print(sorted(m for m in ('httpx', 'msgpack', 'asyncio', 'pygrok') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True)
    assert result.stdout.decode().strip() == "[]"


def test_parse_imports_neither_privacy_nor_rollup_nor_hyperscan_unless_needed():
    """Without --client-ip, --qname and --rollup their modules stay unloaded; the C finder leaves hyperscan out."""
    code = (
        "import sys\n"
        "from named_senderr.cli import main\n"
        "main(['parse', '/dev/null'])\n"
        "print(sorted(m for m in ('named_senderr.normalize.privacy', 'named_senderr.normalize.rollup', 'hyperscan')"
        " if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True)
    expected = "['hyperscan']" if native.load("named_senderr.sources._phrase_scan") is None else "[]"
    assert result.stdout.decode().strip() == expected


def test_ship_imports_prometheus_client_only_for_metrics(tmp_path):
    """The endpoint's library is loaded for --metrics alone: every other start of a delivering command is shorter."""
    code = (
        "import sys\n"
        "from named_senderr.cli import main\n"
        f"main(['ship', '/dev/null', '--to', 'stdout:', '--dead-letter', {str(tmp_path / 'dead')!r}] + sys.argv[1:])\n"
        "print('prometheus_client' in sys.modules, file=sys.stderr)\n"
    )
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True)
    served = subprocess.run([sys.executable, "-c", code, "--metrics", "127.0.0.1:0"], capture_output=True, timeout=60)
    assert plain.stderr.decode().splitlines()[-1] == "False"
    assert served.stderr.decode().splitlines()[-1] == "True", served.stderr.decode()


def test_parse_applies_privacy_before_printing():
    result = run(
        "parse", "--format", "flat", "--client-ip", "truncate:/24,/56", "--qname", "drop", stdin=(ERROR + "\n").encode()
    )
    assert result.returncode == 0
    event = json.loads(result.stdout)
    assert (event["client_ip"], event["qname"]) == ("192.0.2.0", None)
    assert b"192.0.2.7" not in result.stdout and b"a.example" not in result.stdout


def test_parse_rollup_folds_a_storm_into_one_event_per_window():
    storm = "".join(ERROR.replace("#5353", f"#{port}") + "\n" for port in range(2000, 2050))
    result = run("parse", "--format", "flat", "--rollup", "60s", stdin=storm.encode())
    [event] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (event["count"], event["client_ip"]) == (50, "192.0.2.0")


def read_from_a_terminal(tmp_path, *args: str) -> tuple[bytes, bytes]:
    """Run ``named-senderr ARGS`` with stdin on a pseudo-terminal; once told, type one line and Ctrl-D."""
    leader, follower = pty.openpty()
    err = tmp_path / "stderr"
    with open(err, "wb") as err_file:
        process = subprocess.Popen([sys.executable, "-m", "named_senderr", *args], stdin=follower,
                                   stdout=subprocess.PIPE, stderr=err_file)  # fmt: skip
    os.close(follower)
    try:
        wait_until(lambda: b"Ctrl-D" in err.read_bytes(), timeout=10)  # told while it waits, before any input
        os.write(leader, (ERROR + "\n").encode() + b"\x04")
        stdout, _ = process.communicate(timeout=60)
    finally:
        process.kill()
        os.close(leader)
    return stdout, err.read_bytes()


def test_parse_says_it_reads_the_terminal_when_no_file_is_named(tmp_path):
    stdout, err = read_from_a_terminal(tmp_path, "parse")
    assert b"reading named log lines from the terminal (stdin); end with Ctrl-D, or name a FILE" in err
    assert len(stdout.splitlines()) == 1  # the typed line was parsed


def test_parse_from_a_pipe_prints_no_terminal_hint():
    result = run("parse", stdin=(ERROR + "\n").encode())
    assert result.returncode == 0 and b"Ctrl-D" not in result.stderr


def test_ship_says_it_reads_the_terminal_when_no_file_is_named(tmp_path):
    stdout, err = read_from_a_terminal(tmp_path, "ship", "--to", "stdout:", "--dead-letter", str(tmp_path / "d"))
    assert b"reading named log lines from the terminal (stdin); end with Ctrl-D" in err
    assert len(stdout.splitlines()) == 1


def test_parse_keeps_the_first_line_of_a_file_that_starts_with_a_byte_order_mark(tmp_path):
    log = tmp_path / "named.log"
    log.write_bytes(b"\xef\xbb\xbf" + (ERROR + "\n" + ERROR + "\n").encode())
    result = run("parse", str(log), "--format", "flat", "--stats")
    assert [json.loads(line)["offset"] for line in result.stdout.splitlines()] == [3, 3 + len(ERROR) + 1]
    assert b"rejected candidates 0" in result.stderr


def test_parse_keeps_the_first_line_of_stdin_that_starts_with_a_byte_order_mark():
    result = run("parse", "--format", "flat", stdin=b"\xef\xbb\xbf" + (ERROR + "\n").encode())
    assert json.loads(result.stdout)["client_ip"] == "192.0.2.7"


def test_parse_counts_an_impossible_query_name_and_writes_it_to_rejects(tmp_path):
    line = ERROR.replace("(a.example)", f"({'a' * 9_900})")
    rejects = tmp_path / "rejects.ndjson"
    result = run("parse", "--stats", "--rejects", str(rejects), stdin=(line + "\n").encode())
    assert result.stdout == b"" and b"    qname_too_long    1" in result.stderr
    [kept] = [json.loads(x) for x in rejects.read_bytes().splitlines()]
    assert (kept["reason"], kept["line"]) == ("qname_too_long", line)


def test_parse_prints_the_same_events_with_or_without_stats_and_counts_lines_for_stats(tmp_path):
    """Without --stats the reader skips counting lines; what is printed on stdout must not change."""
    log = tmp_path / "named.log"
    log.write_bytes(((ERROR + "\n" + "noise\n" * 50 + BAD + "\n") * 2000).encode() + b"\xff" + ERROR.encode())
    plain, counted = run("parse", str(log), "--format", "flat"), run("parse", str(log), "--format", "flat", "--stats")
    assert plain.returncode == counted.returncode == 0
    assert plain.stdout == counted.stdout and len(plain.stdout.splitlines()) == 2000
    assert b"104,001 lines" in counted.stderr and b"undecodable lines   1" in counted.stderr


def test_the_command_as_its_own_process_collects_cycles_less_often(tmp_path):
    script = "import gc, sys; from named_senderr.cli import main; main(); print(gc.get_threshold(), file=sys.stderr)"
    argv = [sys.executable, "-c", script, "parse", os.devnull]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    assert done.stderr.strip().splitlines()[-1] == "(50000, 20, 100)"


def test_a_caller_in_the_same_process_keeps_its_collector():
    before = gc.get_threshold()
    assert main(["parse", os.devnull]) == 0
    assert gc.get_threshold() == before
