"""How a large read is cut into parts: the ``ranged_reads`` option and the part plan (pure logic, no I/O).

A read of more than one part (``part_size`` bytes, 8 MiB by default) is cut
at the multiples of ``part_size`` counted from the start of the object, so
every part but the first and the last is ``part_size`` long and lines up
with the parts of an object uploaded in parts of that size (8 MiB is
boto3's and the AWS CLI's default multipart chunk size). At most
``max_parts`` parts of one read are under way at once (waiting for a slot or
running); the pool's limit decides how many of them run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields

from ...errors import ConfigurationError

MIB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MIB
DEFAULT_MAX_PARTS = 16


@dataclass(frozen=True)
class RangedReads:
    """The ``ranged_reads`` option of pooled filesystems: parallel ranged reads of large objects.

    ``part_size`` (bytes, an int >= 1): reads longer than this are cut into
    part-aligned ranges, each one pool operation; reads of at most this many
    bytes are one request as before. 8 MiB by default; sizes far below 1 MiB
    cost more requests than they save (the tests use small ones).
    ``max_parts`` (an int >= 1, 16 by default, above the pool's default
    limit of 10 so that the pool's limit is what governs): parts of one
    read under way at once, which bounds what one read buffers (see
    docs/fsspec.md).
    """

    part_size: int = DEFAULT_PART_SIZE
    max_parts: int = DEFAULT_MAX_PARTS

    def __post_init__(self) -> None:
        for name in ("part_size", "max_parts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"ranged_reads.{name}", "an int >= 1", value)

    def splits(self, length: int) -> bool:
        """True if a read of ``length`` bytes is cut into parts."""
        return length > self.part_size


def resolve_ranged_reads(value: object) -> RangedReads | None:
    """The ``ranged_reads`` option: True or None (the defaults), False (off), a mapping of its fields, or a
    :class:`RangedReads`. Returns None when off; anything else raises ``ConfigurationError`` naming it."""
    if value is None or value is True:
        return RangedReads()
    if value is False:
        return None
    if isinstance(value, RangedReads):
        return value
    if isinstance(value, Mapping):
        known = {field.name for field in fields(RangedReads)}
        for name in value:
            if name not in known:
                raise ConfigurationError(f"ranged_reads.{name}", "one of " + ", ".join(sorted(known)), value[name])
        return RangedReads(**value)
    accepted = "True (8 MiB parts, 16 at once), False (off), a mapping with part_size and max_parts, or a RangedReads"
    raise ConfigurationError("ranged_reads", accepted, value)


def part_ranges(start: int, end: int, part_size: int) -> Iterator[tuple[int, int]]:
    """The parts ``[a, b)`` of the bytes ``[start, end)``, cut at the multiples of ``part_size``, in order.

    They cover ``[start, end)`` exactly, without overlap; none is empty and
    none is longer than ``part_size``.
    """
    position = start
    while position < end:
        boundary = min(end, (position // part_size + 1) * part_size)
        yield position, boundary
        position = boundary
