"""Bulk deletes: one operation per path, or per S3 batch request, never one for the whole batch.

A bulk ``rm`` first expands its paths (one listing operation), then deletes
them in *stages*: the stages run one after the other, the operations of a
stage concurrently (each waits for its own slot).
"""

from __future__ import annotations

from collections.abc import Sequence
from glob import has_magic
from typing import Any

BATCH_DELETE_LIMIT = 1000
"""Keys per S3 ``DeleteObjects`` request."""

RmItem = tuple[str, Any, dict[str, Any], bool]
"""``(method, argument, keywords, missing_ok)``: one delete operation, ``target._<method>(argument, **keywords)``;
``missing_ok``: a ``FileNotFoundError`` means it is already gone (a directory that vanished with its contents)."""


def s3_rm_stages(fs: Any, paths: Sequence[str], recursive: bool) -> list[list[RmItem]]:
    """How to delete ``paths`` on s3fs: stages run one after the other, the items of a stage concurrently.

    Keys go in batches of up to :data:`BATCH_DELETE_LIMIT` per bucket, one
    ``DeleteObjects`` request each, through s3fs's ``_bulk_delete`` (literal
    keys, one request, nothing started in the background that a
    cancellation could leave running). Without it, through ``_rm`` of a
    list, with keys that look like glob patterns deleted one by one (``_rm``
    would expand them). Buckets come last, once their keys are gone.
    """
    size = BATCH_DELETE_LIMIT
    bulk = hasattr(fs, "_bulk_delete")
    by_bucket: dict[str, list[str]] = {}
    buckets: list[str] = []
    singles: list[str] = []
    for path in paths:
        bucket, key = fs.split_path(path)[:2]
        if not key:
            buckets.append(path)
        elif not bulk and has_magic(path):
            singles.append(path)
        else:
            by_bucket.setdefault(bucket, []).append(path)
    method = "bulk_delete" if bulk else "rm"
    items: list[RmItem] = [
        (method, keys[start : start + size], {}, False)
        for keys in by_bucket.values()
        for start in range(0, len(keys), size)
    ]
    items += [("rm_file", path, {}, False) for path in singles]
    stages = [items] if items else []
    if buckets:
        stages.append([("rm", bucket, {"recursive": recursive}, False) for bucket in buckets])
    return stages


def generic_rm_stages(paths: Sequence[str], recursive: bool, sep: str = "/") -> list[list[RmItem]]:
    """Delete stages for any filesystem: one operation per path, deepest paths first.

    Everything at one depth is deleted concurrently, after everything deeper,
    so a directory goes only once its contents are gone. A directory that is
    no longer there by then (many filesystems have no empty directories) is
    not an error.
    """
    by_depth: dict[int, list[str]] = {}
    parents: set[str] = set()
    for path in paths:
        stripped = path.rstrip(sep)
        by_depth.setdefault(stripped.count(sep), []).append(path)
        head, found, _ = stripped.rpartition(sep)
        while found and head:
            parents.add(head)
            head, found, _ = head.rpartition(sep)
    return [
        [("rm", path, {"recursive": recursive}, path.rstrip(sep) in parents) for path in sorted(by_depth[depth])]
        for depth in sorted(by_depth, reverse=True)
    ]
