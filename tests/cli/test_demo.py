"""`s3pool demo`: end to end (small), and its verdict, rates and chart on synthetic figures."""

from __future__ import annotations

import os
import re
from collections import Counter
from html.parser import HTMLParser

from s3pool_plugins.cli import main
from s3pool_plugins.cli.chart import Series, line_chart, nice_ceiling
from s3pool_plugins.cli.demo import POOLED, rates, render_chart, verdict
from s3pool_plugins.cli.workload import RunResult, Sample, Scenario


class _Elements(HTMLParser):
    """Counts start tags and records every URL-like attribute; raises on mismatched nesting of svg."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.links: list[str] = []
        self.open_svg = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.open_svg += tag == "svg"
        self.links += [value or "" for name, value in attrs if name in ("href", "src", "xlink:href")]

    def handle_endtag(self, tag: str) -> None:
        self.open_svg -= tag == "svg"


def test_quick_demo_end_to_end(capsys, tmp_path) -> None:
    chart = tmp_path / "demo.html"
    assert main(["demo", "--quick", "--objects", "60", "--chart", str(chart)]) == 0
    out, err = capsys.readouterr()
    assert "boto3 defaults  with s3pool" in out
    for row in ("wall time", "objects per second", "503 SlowDown seen at the proxy", "attempts per upload"):
        assert row in out
    assert "failed calls" in out and "upload call time p95" in out and "Parquet round trip" in out
    assert "What this run measured:" in out and f"Chart: {chart}" in out
    assert re.search(r"boto3 defaults: \d+/60 stored", err)  # the progress lines
    assert re.search(r"with s3pool: \d+/60 stored", err)
    page = chart.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    elements = _Elements()
    elements.feed(page)
    assert elements.tags["svg"] == 4 and elements.open_svg == 0
    assert elements.tags["script"] == 0 and elements.links == []  # self-contained: no script, nothing fetched
    assert elements.tags["polyline"] >= 6 and elements.tags["table"] == 1
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_no_chart_writes_nothing_and_the_users_aws_settings_do_not_apply(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_PROFILE", "a-profile-that-does-not-exist")  # botocore would raise ProfileNotFound
    monkeypatch.setenv("BOTOCORE_EXPERIMENTAL__PLUGINS", "s3pool=s3pool_plugins.adapters.botocore.plugin")
    before = dict(os.environ)
    assert main(["demo", "--objects", "12", "--parquet-rows", "50", "--no-chart"]) == 0
    out = capsys.readouterr().out
    assert "Chart:" not in out and "12 of 12" in out
    assert list(tmp_path.iterdir()) == []
    assert dict(os.environ) == before  # given back as it was


def _result(label: str, pooled: bool, **figures: object) -> RunResult:
    result = RunResult(label=label, pooled=pooled, objects=100)
    for name, value in figures.items():
        setattr(result, name, value)
    return result


def test_the_verdict_says_when_the_pool_did_worse() -> None:
    scenario = Scenario(concurrency=16)
    plain = _result("plain", False, upload_time=10.0, throttled=100, failed=0, parquet_time=1.0, stored=100)
    pooled = _result("pool", True, upload_time=14.0, throttled=300, failed=2, parquet_time=1.02, stored=98)
    text = "\n".join(verdict(plain, pooled, scenario))
    assert "- 2 calls failed with the pool, 0 with boto3's defaults" in text
    assert "- the uploads took 14.0 s with the pool, 10.0 s with boto3's defaults (1.4x worse)" in text
    assert "= the Parquet round trip took" in text and "(about even)" in text
    assert "- the proxy answered 503 SlowDown 300 with the pool, 100" in text
    assert "A fixed limit cannot slow down for one throttled prefix" in text


def test_the_verdict_says_when_the_pool_did_better() -> None:
    scenario = Scenario()
    plain = _result("plain", False, upload_time=15.0, throttled=300, failed=5, parquet_time=2.0, stored=95)
    pooled = _result("pool", True, upload_time=10.0, throttled=100, failed=0, parquet_time=1.0, stored=100)
    text = "\n".join(verdict(plain, pooled, scenario))
    assert "+ 0 calls failed with the pool, 5 with boto3's defaults" in text
    assert "+ the uploads took 10.0 s with the pool, 15.0 s with boto3's defaults (1.5x better)" in text
    assert "+ the proxy answered 503 SlowDown 100 with the pool, 300" in text
    assert "A fixed limit cannot" not in text
    assert "concurrency='auto' with one adaptive state per key prefix" in text  # the demo's default pool


def test_the_demo_pool_is_adaptive_per_prefix_by_default() -> None:
    options = Scenario().pool_options()
    assert options["concurrency"] == "auto"
    assert options["auto_tuning"] == {"scope": "prefix", "max_concurrency": Scenario().threads}
    assert "auto_tuning" not in Scenario(concurrency=16).pool_options()


def test_rates_are_per_second_over_a_trailing_window() -> None:
    samples = [
        Sample(t * 0.25, stored=int(t * 10), failed=0, requests=0, throttled=0, in_flight=0, limit=None)
        for t in range(9)
    ]
    points = rates(samples, "stored")
    assert points[0] == (0.0, 0.0)
    assert all(abs(rate - 40.0) < 1e-9 for _, rate in points[1:] if rate is not None)


def test_the_chart_scales_and_escapes() -> None:
    assert [nice_ceiling(v) for v in (0, 0.7, 3, 12, 40, 101)] == [1.0, 1.0, 5.0, 20.0, 50.0, 200.0]
    svg = line_chart("a <b> & c", [Series("x&y", [(0, 1.0), (1, None), (2, 3.0)], "#000")], x_label="s", y_label="n")
    assert "a &lt;b&gt; &amp; c" in svg and "x&amp;y" in svg
    assert svg.count("<polyline") == 2  # the gap splits the line


def _samples(paced_from: float | None) -> list[Sample]:
    """A pooled run's samples: hot/ paced at 38/s from ``paced_from`` seconds (never if None), cold/ unpaced."""
    samples = []
    for tick in range(21):
        t = tick * 0.25
        hot_rate = 38.0 if paced_from is not None and t >= paced_from else None
        samples.append(
            Sample(
                t,
                stored=tick * 20,
                failed=0,
                requests=tick * 22,
                throttled=tick,
                in_flight=12,
                limit=10,
                hot_stored=tick * 10,
                partitions={"hot/": (3, hot_rate), "cold/": (24, None)},
            )
        )
    return samples


def _polylines(svg: str) -> list[tuple[str, list[tuple[float, float]]]]:
    """(stroke colour, points) of each polyline of ``svg``."""
    found = re.findall(r'<polyline points="([^"]*)" fill="none" stroke="(#[0-9a-f]+)"', svg)
    return [
        (stroke, [(float(x), float(y)) for x, y in (p.split(",") for p in points.split())]) for points, stroke in found
    ]


def test_the_chart_draws_the_pacing_that_binds_and_the_limits_per_prefix() -> None:
    scenario = Scenario(objects=100)
    plain = _result("boto3 defaults", False, samples=_samples(None))
    for sample in plain.samples:
        object.__setattr__(sample, "partitions", {})
    pooled = _result(POOLED, True, samples=_samples(paced_from=1.0))
    page = render_chart([plain, pooled], scenario)
    charts = page.split("<svg")[1:]
    hot = next(c for c in charts if "what the prefix allows, and the pool&#x27;s pacing" in c)
    assert "with s3pool: pacing of hot/" in hot and "hot/ allows 40/s" in hot
    assert "pacing of cold/" not in hot  # never paced: not what bound it
    concurrency = next(c for c in charts if "Concurrency:" in c)
    assert "with s3pool: limit of hot/" in concurrency and "with s3pool: limit of cold/" in concurrency
    assert "pool limit" not in concurrency  # the pool's own limit does not bind requests to a prefix
    assert "What held the pool back: its pacing of <code>hot/</code>" in page
    # The pacing line is drawn from 1 s on, at 38/s: 38/50 of the plot's height above the x axis (y from 30 to 206).
    pacing = [pts for stroke, pts in _polylines(hot) if stroke == "#1a7f37"]
    assert len(pacing) == 1 and len(pacing[0]) == 17
    assert all(abs(y - (206 - 176 * 38 / 50)) < 0.1 for _, y in pacing[0])


def test_without_prefixes_the_chart_draws_the_pool_limit() -> None:
    pooled = _result(POOLED, True, samples=_samples(None))
    for sample in pooled.samples:
        object.__setattr__(sample, "partitions", {})
    page = render_chart([_result("boto3 defaults", False, samples=[]), pooled], Scenario(concurrency=16))
    assert "with s3pool: pool limit" in page and "with s3pool: pacing of" not in page
    assert "The pool paced no prefix in this run" in page


def test_the_chart_introduction_is_paragraphs_and_a_list_not_terminal_lines() -> None:
    pooled = _result(POOLED, True, samples=_samples(None))
    page = render_chart([_result("boto3 defaults", False, samples=[]), pooled], Scenario())
    body = page.split("<body>", 1)[1].split("<table>", 1)[0]
    paragraphs = re.findall(r"<p>(.*?)</p>", body, re.S)
    assert len(paragraphs) == 2
    assert paragraphs[0].startswith("s3pool demo: a local S3") and paragraphs[1].startswith("Workload: 1,000 uploads")
    items = re.findall(r"<li>(.*?)</li>", body, re.S)
    assert [item.split(":")[0] for item in items] == ["run 1, boto3 defaults", "run 2, with s3pool"]
    assert "<code>install(session, OperationsPool(concurrency='auto'" in items[1]
    assert "  run 1" not in page  # no terminal indentation squashed into the HTML
