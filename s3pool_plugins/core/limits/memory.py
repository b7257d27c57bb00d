"""How full the memory available to this process is, for the memory guard."""

from __future__ import annotations

from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" means no limit


def _inactive_file() -> int:
    try:
        with open(_CGROUP / "memory.stat", encoding="ascii") as stat:
            for line in stat:
                name, _, value = line.partition(" ")
                if name == "inactive_file":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def memory_fraction() -> float | None:
    """The used share (0..1) of the memory this process may use, or None if unknown.

    A cgroup v2 memory limit when one is set: its working set
    (``memory.current`` less the reclaimable ``inactive_file`` of
    ``memory.stat``, as Kubernetes counts it, so a process that streams a
    lot from S3 is not judged by its page cache) over ``memory.max``. Else
    the machine's ``MemTotal`` and ``MemAvailable`` from ``/proc/meminfo``.
    None where neither can be read (not Linux).
    """
    limit = _read_int(_CGROUP / "memory.max")
    if limit:
        current = _read_int(_CGROUP / "memory.current")
        if current is not None:
            return max(0.0, min(1.0, (current - _inactive_file()) / limit))
    fields: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                name, _, rest = line.partition(":")
                if name in ("MemTotal", "MemAvailable"):
                    fields[name] = int(rest.split()[0])
                    if len(fields) == 2:
                        break
    except (OSError, ValueError, IndexError):
        return None
    total, available = fields.get("MemTotal"), fields.get("MemAvailable")
    if not total or available is None:
        return None
    return max(0.0, min(1.0, 1.0 - available / total))
