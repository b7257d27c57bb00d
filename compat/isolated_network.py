"""Separate loopback networks for runs that listen on fixed ports (Linux network namespaces).

s3fs's suite starts moto servers on the fixed ports 5555 and 5556, so two of
its runs cannot share a network. In a network namespace of its own, each run
has its own loopback interface and the same ports are free in each. Creating
one needs root and iproute2's ``ip``; :func:`available` tells whether this
machine allows it, and callers run one after the other when it does not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


def available() -> str | None:
    """None if namespaces can be made here, else why not (in words)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not running as root"
    if shutil.which("ip") is None:
        return "iproute2's ip command is not installed"
    name = f"s3pool-probe-{os.getpid()}"
    try:
        with namespace(name):
            return None
    except (OSError, subprocess.CalledProcessError) as error:
        return f"ip netns failed: {error}"


@contextmanager
def namespace(name: str) -> Iterator[list[str]]:
    """Make network namespace ``name`` with its loopback up; yield the command prefix that runs a program in it.

    The namespace is deleted on exit, also when the body raises.
    """
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True, capture_output=True)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)
