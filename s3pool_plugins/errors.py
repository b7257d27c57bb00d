"""Exceptions raised by s3pool-plugins.

Every error the pool raises derives from :class:`S3PoolError`, and each also
derives from the standard exception a caller would naturally catch (for
example :class:`PoolStopped` is a :class:`RuntimeError`, as
``concurrent.futures`` raises after ``shutdown``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

_SHOWN_CHARS = 200


def shown(value: object) -> str:
    """``repr(value)`` for a message: at most 200 characters, and never raising.

    An int too long to print (``repr`` refuses past 4,300 digits) is described
    by its number of digits; an object whose ``repr`` fails, by its type.
    """
    if isinstance(value, int) and value.bit_length() > 640:
        return f"<an int of about {math.floor(value.bit_length() * math.log10(2)) + 1} digits>"
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


class S3PoolError(Exception):
    """Base class of every error raised by the pool itself."""


class ConfigurationError(S3PoolError, ValueError, TypeError):
    """An option has the wrong type or is out of range.

    The message names the option and the accepted values. It is both a
    ``ValueError`` and a ``TypeError`` so either ``except`` clause catches it.

    Attributes (stable, for tools that present the error in their own terms):

    - ``option``: the option as the user spelled it on the route they used
      (``"retries"``, ``"auto_tuning.min_concurrency"``, ``"S3POOL_RETRIES"``);
    - ``key``: the option's canonical key, the same on every route
      (``"auto_tuning.min_concurrency"`` also for
      ``S3POOL_AUTO_MIN_CONCURRENCY``; the variable itself for an unknown
      ``S3POOL_*`` variable);
    - ``accepted``: what is accepted, in words;
    - ``mentions``: the keys of other options that ``accepted`` names (for
      example ``min_concurrency`` in "an int >= ... (50)");
    - ``got``: the value that was refused;
    - ``unknown``: True when the option itself is not one the pool knows
      (a misspelled keyword, field or ``S3POOL_*`` variable), and then
      ``suggestion``: the closest known name, or None.

    :meth:`renamed` spells ``option`` and every mentioned option anew, as a
    command line does with its flags.
    """

    def __init__(
        self,
        option: str,
        accepted: str,
        got: object,
        *,
        key: str | None = None,
        mentions: tuple[str, ...] = (),
        names: tuple[str, ...] | None = None,
        unknown: bool = False,
        suggestion: str | None = None,
    ) -> None:
        """``accepted`` may hold ``{0}``, ``{1}`` ... for the options ``mentions`` (keys) names.

        ``names`` spells them (default: the keys themselves). Without
        ``mentions``, ``accepted`` is taken literally.
        """
        self.option = option
        self.key = option if key is None else key
        self.mentions = tuple(mentions)
        self._template = accepted
        self._names = self.mentions if names is None else tuple(names)
        self.accepted = accepted.format(*self._names) if mentions else accepted
        self.got = got
        self.unknown = unknown
        self.suggestion = suggestion
        if unknown:
            hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
            message = f"unknown option {option!r}{hint}; accepted: {self.accepted}"
        else:
            message = f"invalid value for option {option!r}: {shown(got)}; accepted: {self.accepted}"
        super().__init__(message)

    def renamed(self, name: Callable[[str], str]) -> ConfigurationError:
        """The same error with its option and every mentioned option spelled ``name(key)``."""
        return ConfigurationError(
            name(self.key),
            self._template,
            self.got,
            key=self.key,
            mentions=self.mentions,
            names=tuple(name(key) for key in self.mentions),
            unknown=self.unknown,
            suggestion=self.suggestion,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        state = (self.option, self._template, self.got, self.key, self.mentions, self._names)
        return (_rebuild, (type(self), *state, self.unknown, self.suggestion))


def _rebuild(
    cls: type[ConfigurationError],
    option: str,
    template: str,
    got: object,
    key: str,
    mentions: tuple[str, ...],
    names: tuple[str, ...],
    unknown: bool = False,
    suggestion: str | None = None,
) -> ConfigurationError:
    return cls(option, template, got, key=key, mentions=mentions, names=names, unknown=unknown, suggestion=suggestion)


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


class FleetUnavailable(S3PoolError, ConnectionError):
    """A fleet backend's store is unreachable, too slow or refused the call.

    Raised by :class:`~s3pool_plugins.FleetBackend` methods within their own
    time box. The pool answers it by falling back to local control (logged
    once) until the store answers again; callers of S3 never see it.
    """
