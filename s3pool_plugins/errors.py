"""Exceptions raised by s3pool-plugins.

Every error the pool raises derives from :class:`S3PoolError`, and each also
derives from the standard exception a caller would naturally catch (for
example :class:`PoolStopped` is a :class:`RuntimeError`, as
``concurrent.futures`` raises after ``shutdown``).
"""

from __future__ import annotations


class S3PoolError(Exception):
    """Base class of every error raised by the pool itself."""


class ConfigurationError(S3PoolError, ValueError, TypeError):
    """An option has the wrong type or is out of range.

    The message names the option and the accepted values. It is both a
    ``ValueError`` and a ``TypeError`` so either ``except`` clause catches it.
    """

    def __init__(self, option: str, accepted: str, got: object) -> None:
        self.option = option
        self.accepted = accepted
        self.got = got
        super().__init__(f"invalid value for option {option!r}: {got!r}; accepted: {accepted}")


class PoolStopped(S3PoolError, RuntimeError):
    """The pool was stopped or shut down and does not take (or run) this work."""


class QueueFull(S3PoolError):
    """The queue holds ``max_queue`` items and the pool was told to refuse more."""


class QueueWaitTimeout(S3PoolError, TimeoutError):
    """Work waited longer than its ``queue_timeout`` for a slot."""


class TaskTimeout(S3PoolError, TimeoutError):
    """One attempt of a task ran longer than its ``timeout``."""


class AttemptCancelled(S3PoolError):
    """Raised by :meth:`CancellationToken.raise_if_cancelled` once the attempt timed out."""


class ServiceFailed(S3PoolError, RuntimeError):
    """A step the pool's own service threads take for this work failed (the cause is chained).

    For example the timer that ends a retry backoff could not hand the next
    attempt to a thread. The task is settled with this error and its slot
    given back; the service thread carries on with the other work.
    """
