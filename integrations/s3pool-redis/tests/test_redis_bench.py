"""The cost benchmark runs (a few calls per row) and prints every row; bad arguments are usage errors."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_redis_calls.py"


def test_benchmark_prints_every_call(capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(SCRIPT))["main"]
    assert main(["--calls", "5"]) == 0
    out = capsys.readouterr().out
    for row in ("PING", "take_tokens(count=64)", "lease_slots", "propose (won)", "give_retry", "batches of 64"):
        assert row in out


@pytest.mark.parametrize("arguments", [["--calls", "0"], ["--url", "rediss://h"], ["--calls", "many"]])
def test_bad_arguments_exit_2_with_usage(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(SCRIPT))["main"]
    with pytest.raises(SystemExit) as exited:
        main(arguments)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err
