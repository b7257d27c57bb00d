"""The ``s3pool`` command (console script, and ``python -m s3pool_plugins``).

- ``s3pool run [options] -- PROGRAM [ARGS...]``: an unmodified program with
  every S3 client under one pool per process (:mod:`.run`).
- ``s3pool demo``: a local, throttled S3; one workload without and with the
  pool; a comparison table and a chart (:mod:`.demo`).
- ``s3pool bench``: seeded scenarios, each client measured in the same run
  (:mod:`.bench`).
- ``s3pool local-s3``: a local S3, optionally behind the fault proxy, for
  shell tools, until Ctrl-C (:mod:`.local_s3`).

:func:`main` returns the exit status instead of exiting, so it can be
called in-process.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the command; returns its exit status.

    Bad arguments raise ``SystemExit(2)`` from argparse, after the usage of
    the sub-command at fault and a message that names the problem, before
    anything has started.
    """
    from .parser import parse

    args = parse(None if argv is None else list(argv))
    status: int = args.execute(args, args.command_parser)
    return status


__all__ = ["main"]
