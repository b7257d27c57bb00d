"""Cheap memory samples: the process's resident set size and Python's allocated blocks."""

from __future__ import annotations

import os
import sys

try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
    _PAGE_SIZE = 4096


def resident_set_bytes() -> int | None:
    """The current RSS in bytes (Linux ``/proc/self/statm``), else the peak RSS from ``getrusage``, else None."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def sample() -> dict[str, int]:
    """``rss_bytes`` (when known) and ``python_blocks`` (``sys.getallocatedblocks()``, a cheap heap gauge)."""
    memory = {"python_blocks": sys.getallocatedblocks()}
    rss = resident_set_bytes()
    if rss is not None:
        memory["rss_bytes"] = rss
    return memory
