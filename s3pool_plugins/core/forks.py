"""Service objects that renew themselves in a child process after ``os.fork()``.

A forked child has one thread: the service threads of the objects it copied
from its parent (timers, deadlines, workers, fleet agents) do not exist
there, and a lock one of them held at fork stays held. An object that can
start over in the child registers with :func:`renew_after_fork`; after a
fork, the child calls its ``after_fork_in_child()`` while it still has a
single thread (``os.register_at_fork``). The method must be quick, must not
wait on a lock the parent's threads may have held, and should not raise
(what it raises is logged, and the other objects are renewed all the same).
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Protocol

log = logging.getLogger("s3pool_plugins.forks")


class Renewable(Protocol):
    def after_fork_in_child(self) -> None: ...


_registered: weakref.WeakSet[Renewable] = weakref.WeakSet()


def renew_after_fork(item: Renewable) -> None:
    """Call ``item.after_fork_in_child()`` in every child forked from now on (while ``item`` lives)."""
    _registered.add(item)


def forget_after_fork(item: Renewable) -> None:
    """Stop renewing ``item`` in children (it is closed)."""
    _registered.discard(item)


def _after_fork_in_child() -> None:
    for item in list(_registered):
        try:
            item.after_fork_in_child()
        except Exception:  # a fork handler must not raise; that object stays as the fork left it
            log.exception("s3pool: %r could not start over in the forked child", item)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
