"""``s3pool run``'s status line: drawn on a terminal while the program runs, nothing otherwise."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from s3pool_plugins.cli.status import StatusLine, status_text
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
        {"calls": 90, "retries": 10, "throttles": 10, "limit": 16, "adaptive": {"paced": {"b/a/": 95.0}}},
        {"calls": 10, "retries": 0, "throttles": 0, "limit": 4, "adaptive": {"paced": {"b/c/": 40.0}}},
    ]
    text = status_text(reports, 12.34)
    assert text == "s3pool: 12.3 calls/s | limit 20 | paced 40/s (2 partitions) | 503s 10 (9.1% of attempts)"
    assert status_text([], None) == "s3pool: - calls/s | limit - | unpaced | 503s 0"


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


def test_s3pool_run_on_a_terminal_shows_the_line_while_the_program_runs(
    local_s3: LocalS3, s3_bucket: str, chaos_proxy: ChaosProxy, tmp_path: Path
) -> None:
    chaos_proxy.configure(latency=0.01)
    env = local_s3.subprocess_env(endpoint_url=chaos_proxy.endpoint_url)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parents[2]), env.get("PYTHONPATH")]))
    main, terminal = pty.openpty()
    argv = [sys.executable, "-m", "s3pool_plugins", "run", "--no-otel", "--concurrency", "auto", "--"]
    program = [sys.executable, str(SCRIPTS / "uploads.py"), s3_bucket, "150"]
    with subprocess.Popen(argv + program, env=env, stdout=subprocess.PIPE, stderr=terminal) as process:
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
    text = seen.decode(errors="replace")
    assert process.returncode == 0, text[-2000:]
    assert "\rs3pool: " in text and " calls/s | limit " in text  # the live line, drawn over itself
    assert "calls" in text.split("\r")[-1] or "s3pool run" in text  # then the summary
