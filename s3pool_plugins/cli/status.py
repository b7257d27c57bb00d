"""``s3pool run``'s status line: what the program's pools do while it runs, on a terminal only.

The program's processes rewrite their run reports every ``interval``
seconds (``S3POOL_REPORT_REFRESH``, see :mod:`s3pool_plugins.core.report`);
:class:`StatusLine` reads them as often and redraws one line on the
terminal: calls per second, the concurrency limit, the pacing and the 503s
so far, split (with ``concurrency="auto"``) into those the adaptive limit
judged caused by the pool's own rate and those it judged ambient, for
example::

    s3pool: 212.4 calls/s | limit 16 | paced 95/s | 503s 41 (3.2% of attempts): 5 caused, 36 ambient

503s not judged yet are in neither count.

When the stream is not a terminal (a pipe, a file, CI logs) nothing is
written and no thread is started. The line is erased when the program ends,
before the summary.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from ..core.report import FILE_PREFIX, load_reports

REFRESH = 0.5
"""Seconds between two redraws (and between two rewrites of the reports)."""


def status_text(reports: Sequence[Mapping[str, Any]], calls_per_second: float | None) -> str:
    """The status line for ``reports`` (the processes' run reports), without a line ending."""
    calls = sum(int(report.get("calls", 0)) for report in reports)
    retries = sum(int(report.get("retries", 0)) for report in reports)
    throttles = sum(int(report.get("throttles", 0)) for report in reports)
    limits = [int(report["limit"]) for report in reports if isinstance(report.get("limit"), int)]
    paced: dict[str, float] = {}
    for report in reports:
        adaptive = report.get("adaptive")
        if isinstance(adaptive, Mapping):
            for name, rate in dict(adaptive.get("paced") or {}).items():
                paced[str(name)] = min(float(rate), paced.get(str(name), float("inf")))
    rate = "-" if calls_per_second is None else f"{calls_per_second:.1f}"
    parts = [f"s3pool: {rate} calls/s"]
    parts.append(f"limit {sum(limits)}" if limits else "limit -")
    if not paced:
        parts.append("unpaced")
    else:
        slowest = min(paced.values())
        parts.append(f"paced {slowest:.3g}/s" + (f" ({len(paced)} partitions)" if len(paced) > 1 else ""))
    attempts = calls + retries
    share = f" ({throttles / attempts:.1%} of attempts)" if attempts else ""
    judged = [report for report in reports if isinstance(report.get("adaptive"), Mapping)]
    split = ""
    if judged:
        caused = sum(int(report.get("throttles_caused", 0)) for report in judged)
        ambient = sum(int(report.get("throttles_ambient", 0)) for report in judged)
        split = f": {caused} caused, {ambient} ambient"
    parts.append(f"503s {throttles}{share}{split}")
    return " | ".join(parts)


class StatusLine:
    """Redraw :func:`status_text` on ``stream`` every ``interval`` seconds from the reports in ``folder``.

    A context manager: entering starts the redrawing thread, leaving stops it
    and erases the line. Does nothing at all when ``stream`` is not a
    terminal, or with ``quiet``. ``clock`` returns monotonic seconds.
    """

    def __init__(
        self,
        folder: Path,
        stream: TextIO,
        interval: float = REFRESH,
        clock: Callable[[], float] = time.monotonic,
        *,
        quiet: bool = False,
    ) -> None:
        self.quiet = quiet
        self.folder = folder
        self.stream = stream
        self.interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: tuple[float, int] | None = None
        self._width = 0

    @property
    def enabled(self) -> bool:
        """True when ``stream`` is a terminal and the line is not ``quiet``."""
        if self.quiet:
            return False
        isatty = getattr(self.stream, "isatty", None)
        try:
            return bool(isatty and isatty())
        except (OSError, ValueError):  # a closed stream
            return False

    def render(self) -> str:
        """Read the reports now and return the line (calls/s measured since the last call)."""
        reports, _ = load_reports(sorted(self.folder.glob(f"{FILE_PREFIX}*.json")))
        now, calls = self._clock(), sum(int(report.get("calls", 0)) for report in reports)
        rate = None
        if self._last is not None and now > self._last[0]:
            rate = max(0.0, (calls - self._last[1]) / (now - self._last[0]))
        self._last = (now, calls)
        return status_text(reports, rate)

    def draw(self) -> None:
        """Redraw the line once (over the previous one)."""
        text = self.render()
        padding = max(0, self._width - len(text))
        self._width = len(text)
        self._write("\r" + text + " " * padding)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: stop drawing
            self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.draw()
            except Exception:  # a report being replaced, a folder removed: skip this redraw
                continue

    def __enter__(self) -> StatusLine:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="s3pool-status-line", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        thread.join()
        if self._width:
            self._write("\r" + " " * self._width + "\r")
