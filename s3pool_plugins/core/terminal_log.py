"""This package's warnings on a line of their own while ``s3pool run`` draws its status line.

``s3pool run`` redraws one status line on the terminal the program shares
with it (see :mod:`s3pool_plugins.cli.status`). A WARNING of this package,
the adaptive limit's cut of throughput for example, reaches that terminal
through Python's last-resort handler when the program configured no
logging, and would be written into the middle of the status line.

:class:`LastResortOnOwnLine` does what the last resort does for this
package's loggers, at its level and in its format, but first erases the
line the cursor is on (carriage return, then ``ESC [K``) when stderr is a
terminal: the warning gets a line of its own, and the status line is drawn
again below it at its next redraw. It writes only when the last resort
would: when no other handler is on the record's way up the logger tree. A
program that configures logging, before or after the pool starts, gets the
records as it would without this handler, and only once. It is installed
(on the ``s3pool_plugins`` logger, never on the root logger, so
``logging.basicConfig`` keeps working) only in the processes of a program
whose status line is drawn.
"""

from __future__ import annotations

import logging
import sys

LOGGER = "s3pool_plugins"
ERASE_LINE = "\r\x1b[K"
"""Back to the start of the line and erase it (a terminal's control sequence)."""


class LastResortOnOwnLine(logging.Handler):
    """Python's last resort for this package's records, on a freshly erased terminal line."""

    def emit(self, record: logging.LogRecord) -> None:
        last = logging.lastResort
        if last is None or record.levelno < last.level or self._handled_elsewhere(record):
            return
        stream = sys.stderr
        if stream is None:
            return
        try:
            text = self.format(record)
            stream.write((ERASE_LINE if _is_terminal(stream) else "") + text + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)

    def _handled_elsewhere(self, record: logging.LogRecord) -> bool:
        """True when a handler other than this one is on the record's way up (the last resort then stays quiet)."""
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return True
            if not logger.propagate:
                return False
            logger = logger.parent
        return False


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False


def keep_warnings_off_the_status_line() -> None:
    """Install :class:`LastResortOnOwnLine` on this package's logger (once per process)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(handler, LastResortOnOwnLine) for handler in logger.handlers):
        logger.addHandler(LastResortOnOwnLine())
