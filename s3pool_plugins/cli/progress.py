"""A single progress line on a stream (stderr), rewritten in place on a terminal.

On a terminal the line is redrawn with a carriage return at most every
``interval`` seconds; elsewhere (a pipe, a log file, a test) a plain line is
written at most every ``quiet_interval`` seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class ProgressLine:
    """Show the latest status text; :meth:`done` ends the line. Thread-safe."""

    def __init__(self, stream: TextIO | None = None, interval: float = 0.2, quiet_interval: float = 5.0) -> None:
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(isatty is not None and isatty())
        self.interval = interval if self.live else quiet_interval
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._width = 0
        self._pending: str | None = None

    def update(self, text: str, force: bool = False) -> None:
        """Show ``text`` now, or when the interval allows (``force``: now)."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < self.interval:
                self._pending = text
                return
            self._last = now
            self._pending = None
            self._write(text)

    def done(self, text: str | None = None) -> None:
        """Show ``text`` (or the latest text) and end the line."""
        with self._lock:
            final = text if text is not None else self._pending
            if final is not None:
                self._write(final)
            if self.live and self._width:
                self.stream.write("\n")
                self.stream.flush()
            self._width = 0
            self._pending = None
            self._last = -float("inf")

    def _write(self, text: str) -> None:
        if self.live:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
