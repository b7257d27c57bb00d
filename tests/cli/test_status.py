"""``s3pool run``'s status line: drawn on a terminal while the program runs, nothing otherwise."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s3pool_plugins.cli.status import StatusLine, status_text
from s3pool_plugins.core.terminal_log import LastResortOnOwnLine
from s3pool_plugins.testing import ChaosProxy, LocalS3

SCRIPTS = Path(__file__).parent / "scripts"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _report(folder: Path, pid: int, calls: int, throttles: int, paced: dict[str, float]) -> None:
    report = {
        "format": "s3pool-report/1",
        "pid": pid,
        "calls": calls,
        "retries": throttles,
        "throttles": throttles,
        "limit": 16,
        "adaptive": {"paced": paced},
    }
    (folder / f"s3pool-{pid}.json").write_text(json.dumps(report))


def test_the_line_says_calls_per_second_limit_pacing_and_503s() -> None:
    reports = [
        {
            "calls": 90,
            "retries": 10,
            "throttles": 10,
            "throttles_caused": 3,
            "throttles_ambient": 6,
            "limit": 16,
            "adaptive": {"paced": {"b/a/": 95.0}},
        },
        {"calls": 10, "retries": 0, "throttles": 0, "limit": 4, "adaptive": {"paced": {"b/c/": 40.0}}},
    ]
    text = status_text(reports, 12.34)
    assert text == (
        "s3pool: 12.3 calls/s | limit 20 | paced 40/s (2 partitions) | 503s 10 (9.1% of attempts): 3 caused, 6 ambient"
    )
    assert status_text([], None) == "s3pool: - calls/s | limit - | unpaced | 503s 0"
    fixed = [{"calls": 10, "retries": 1, "throttles": 1, "limit": 8, "adaptive": None}]
    assert status_text(fixed, None) == "s3pool: - calls/s | limit 8 | unpaced | 503s 1 (9.1% of attempts)"


def test_on_a_terminal_the_line_is_redrawn_and_erased(tmp_path: Path) -> None:
    clock = [0.0]
    stream = Terminal()
    line = StatusLine(tmp_path, stream, interval=0.01, clock=lambda: clock[0])
    assert line.enabled
    _report(tmp_path, 1, 100, 5, {})
    line.draw()
    clock[0] = 2.0
    _report(tmp_path, 1, 300, 9, {"b/hot/": 80.0})
    line.draw()
    drawn = stream.getvalue()
    assert "\rs3pool: - calls/s | limit 16 | unpaced | 503s 5" in drawn
    assert "\rs3pool: 100.0 calls/s | limit 16 | paced 80/s | 503s 9" in drawn
    with line:
        time.sleep(0.05)
    assert stream.getvalue().endswith("\r")  # erased before the summary


def test_nothing_is_drawn_when_not_on_a_terminal_or_quiet(tmp_path: Path) -> None:
    _report(tmp_path, 1, 100, 5, {})
    for line in (StatusLine(tmp_path, io.StringIO(), interval=0.01), StatusLine(tmp_path, Terminal(), quiet=True)):
        assert not line.enabled
        with line:
            time.sleep(0.05)
        assert line.stream.getvalue() == ""  # type: ignore[attr-defined]


def _on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``argv`` with its stderr on a new pseudo-terminal; its exit status and all it wrote there."""
    main, terminal = pty.openpty()
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=terminal) as process:
        os.close(terminal)
        seen = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(main, 4096)
                except OSError:  # the terminal's other end closed
                    break
                if not chunk:
                    break
                seen += chunk
            elif process.poll() is not None:
                break
        process.wait(timeout=30)
    os.close(main)
    return process.returncode, seen.decode(errors="replace")


def _run_env(local_s3: LocalS3, chaos_proxy: ChaosProxy) -> dict[str, str]:
    env = local_s3.subprocess_env(endpoint_url=chaos_proxy.endpoint_url)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parents[2]), env.get("PYTHONPATH")]))
    return env


RUN = [sys.executable, "-m", "s3pool_plugins", "run", "--no-otel", "--concurrency", "auto", "--"]


def test_s3pool_run_on_a_terminal_shows_the_line_while_the_program_runs(
    local_s3: LocalS3, s3_bucket: str, chaos_proxy: ChaosProxy, tmp_path: Path
) -> None:
    chaos_proxy.configure(latency=0.01)
    program = [sys.executable, str(SCRIPTS / "uploads.py"), s3_bucket, "150"]
    status, text = _on_a_terminal(RUN + program, _run_env(local_s3, chaos_proxy))
    assert status == 0, text[-2000:]
    assert "\rs3pool: " in text and " calls/s | limit " in text  # the live line, drawn over itself
    assert "caused, " in text and " ambient" in text  # the 503s split by their cause, on auto
    assert "calls" in text.split("\r")[-1] or "s3pool run" in text  # then the summary


WARNING = "s3pool: pool 'test': limit 10 -> 4, pace 20/s -> 8/s (throttling)"


def test_a_warning_of_the_pool_gets_its_own_line_under_the_status_line(
    local_s3: LocalS3, s3_bucket: str, chaos_proxy: ChaosProxy
) -> None:
    """Without logging configured, the warning erases the status line and takes the line; the status is redrawn."""
    chaos_proxy.configure(latency=0.005)
    program = [sys.executable, str(SCRIPTS / "warns.py"), s3_bucket]
    status, text = _on_a_terminal(RUN + program, _run_env(local_s3, chaos_proxy))
    assert status == 0, text[-2000:]
    assert text.count(WARNING) == 1, text[-2000:]
    before, after = text.split(WARNING)
    assert before.endswith("\r\x1b[K"), repr(before[-200:])  # the status line erased, not written into
    assert "\rs3pool: " in before  # there was a status line to erase
    assert after.startswith("\r\n"), repr(after[:200])  # the warning's own line ends (the terminal adds \r)
    assert "\rs3pool: " in after  # and the status line is drawn again below it


def test_a_program_that_configures_logging_gets_the_warning_once_in_its_format(
    local_s3: LocalS3, s3_bucket: str, chaos_proxy: ChaosProxy
) -> None:
    chaos_proxy.configure(latency=0.005)
    program = [sys.executable, str(SCRIPTS / "warns.py"), s3_bucket, "--configure-logging"]
    status, text = _on_a_terminal(RUN + program, _run_env(local_s3, chaos_proxy))
    assert status == 0, text[-2000:]
    assert text.count(WARNING) == 1 and f"configured: {WARNING}" in text, text[-2000:]


def _isolated_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False  # away from the handlers pytest puts on the root logger
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    return logger


def test_the_last_resort_on_its_own_line_erases_the_line_only_on_a_terminal_and_only_when_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger = _isolated_logger("s3pool_status_test")
    child = logging.getLogger("s3pool_status_test.limits")
    logger.addHandler(LastResortOnOwnLine())
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    child.warning("cut by more than half")
    child.info("not at the last resort's level")
    assert terminal.getvalue() == "\r\x1b[Kcut by more than half\n"
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    child.warning("into a file")
    assert piped.getvalue() == "into a file\n"  # no control characters where there is no terminal
    configured = io.StringIO()
    logger.addHandler(logging.StreamHandler(configured))  # the program configured logging
    child.warning("the program's handler takes it")
    assert piped.getvalue() == "into a file\n" and configured.getvalue() == "the program's handler takes it\n"
    monkeypatch.setattr(logging, "lastResort", None)  # the program turned the last resort off
    logger.handlers = [handler for handler in logger.handlers if isinstance(handler, LastResortOnOwnLine)]
    child.warning("nowhere")
    assert piped.getvalue() == "into a file\n"
