"""The key layout: every key of a fleet starts with ``s3pool:{FLEET:PARTITION}:``.

One partition's keys share the hash tag ``{FLEET:PARTITION}``, so on a
Redis Cluster they live in one hash slot and each script (which touches one
partition's keys only) runs on one node; different partitions spread over
the cluster. ``%``, ``{`` and ``}`` are percent-escaped in both names, and
``:`` in the fleet name, so that no two (fleet, partition) pairs share a key
and the tag always ends where it should.

========================================  =====  ===========================================
key                                       type   content
========================================  =====  ===========================================
``s3pool:{F:P}:rate``                     hash   ``tokens``, ``at``: the token bucket
``s3pool:{F:P}:slots``                    hash   member -> slots held
``s3pool:{F:P}:leases``                   zset   member -> lease expiry (store clock, s)
``s3pool:{F:P}:limit``                    hash   ``rate``, ``limit``, ``ceiling``, ``version``, ``updated_at``
``s3pool:{F:P}:retry``                    string the retry budget's tokens
========================================  =====  ===========================================
"""

from __future__ import annotations

from dataclasses import dataclass

_ESCAPES = {"%": "%25", "{": "%7B", "}": "%7D"}


def _escape(text: str, *, colon: bool) -> str:
    escaped = "".join(_ESCAPES.get(char, char) for char in text)
    return escaped.replace(":", "%3A") if colon else escaped


@dataclass(frozen=True)
class PartitionKeys:
    """The keys of one partition of one fleet."""

    rate: str
    slots: str
    leases: str
    limit: str
    retry: str

    @classmethod
    def of(cls, fleet_name: str, partition: str) -> PartitionKeys:
        """The keys of ``partition`` in fleet ``fleet_name``."""
        prefix = f"s3pool:{{{_escape(fleet_name, colon=True)}:{_escape(partition, colon=False)}}}:"
        return cls(
            rate=prefix + "rate",
            slots=prefix + "slots",
            leases=prefix + "leases",
            limit=prefix + "limit",
            retry=prefix + "retry",
        )


def fleet_pattern(fleet_name: str) -> str:
    """A ``SCAN MATCH`` pattern for every key of fleet ``fleet_name`` (glob characters escaped)."""
    name = _escape(fleet_name, colon=True)
    for char in "\\*?[]":
        name = name.replace(char, "\\" + char)
    return f"s3pool:{{{name}:*"
