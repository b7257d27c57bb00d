"""`s3pool bench --scenario hedged-reads`: its figures and targets, on synthetic runs and in a short real run."""

from __future__ import annotations

import json

from s3pool_plugins.cli import main
from s3pool_plugins.cli.bench.hedged import HedgeRun, document, table
from s3pool_plugins.cli.bench.scenarios import Settings


def _run(part: str, hedged: bool, latencies: list[float], calls: int, requests: int, throttled: int = 0) -> HedgeRun:
    return HedgeRun(part, hedged, calls=calls, latencies=latencies, requests=requests, throttled=throttled)


def test_the_targets_on_synthetic_runs() -> None:
    slow_tail = [0.02] * 97 + [1.02] * 3  # 3% late: the p99 is late
    hedged_tail = [0.02] * 97 + [0.08] * 3
    runs = [
        _run("tail", False, slow_tail, calls=100, requests=100),
        _run("tail", True, hedged_tail, calls=100, requests=104),
        _run("throttled", False, slow_tail, calls=100, requests=200, throttled=40),
        _run("throttled", True, hedged_tail, calls=100, requests=200, throttled=41),
    ]
    section = document(runs, Settings())
    targets = section["targets"]
    assert targets["p99_ratio"]["value"] == 0.08 / 1.02 and targets["p99_ratio"]["met"]
    assert abs(targets["extra_requests"]["value"] - 0.04) < 1e-12 and targets["extra_requests"]["met"]
    assert abs(targets["throttled_points_added"]["value"] - 0.5) < 1e-9 and targets["throttled_points_added"]["met"]
    runs[1] = _run("tail", True, hedged_tail, calls=100, requests=106)
    runs[3] = _run("throttled", True, hedged_tail, calls=100, requests=200, throttled=42)
    runs[1].latencies = [0.02] * 98 + [0.5] * 2
    missed = document(runs, Settings())["targets"]
    assert not missed["p99_ratio"]["met"]
    assert not missed["extra_requests"]["met"]
    assert not missed["throttled_points_added"]["met"]
    text = table(document(runs, Settings()))
    assert "(target <= 0.3: missed)" in text and "(target <= 5%: missed)" in text


def test_a_short_real_run_gives_consistent_figures(capsys, tmp_path) -> None:
    path = tmp_path / "bench.json"
    argv = ["bench", "--scenario", "hedged-reads", "--duration", "3", "--warmup", "1", "--json", str(path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "hedged-reads: 2.5% of GETs answered 1 s late" in out and "extra requests, hedged:" in out
    section = json.loads(path.read_text())["hedged_reads"]
    runs = {(run["part"], run["hedged"]): run for run in section["runs"]}
    assert set(runs) == {("tail", False), ("tail", True), ("throttled", False), ("throttled", True)}
    for (_part, hedged), run in runs.items():
        assert run["calls"] > 0 and run["requests"] >= run["calls"] - run["failures"]
        # A starved machine may finish no call of a 3 s run after its 1 s warm-up: then there is no p99.
        assert (run["p99"] is None) == (run["measured_calls"] == 0)
        assert run["p99"] is None or run["p99"] > 0
        assert 0 <= run["throttled_share"] <= 1
        assert (run["hedges"] == 0) or hedged  # the unhedged pool never hedges
        assert run["hedges_won"] <= run["hedges"]
        assert run["hedges"] <= 0.05 * run["calls"] + 10  # the budget (plus its burst of earned tokens at most)
    # No 503s without a limit. (With one, a starved machine may not reach the rate that meets it in 3 s.)
    assert runs[("tail", False)]["throttled"] == 0 and runs[("tail", True)]["throttled"] == 0
    assert set(section["targets"]) == {"p99_ratio", "extra_requests", "throttled_points_added"}
