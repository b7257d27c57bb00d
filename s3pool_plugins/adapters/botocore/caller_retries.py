"""The retries a client's caller asked of botocore, and the pool's retry policy for that client.

botocore settles a client's retry settings when it makes the client, into
``client.meta.config.retries``: ``mode`` always (the client's ``retries``
config, else ``AWS_RETRY_MODE`` or the config file's ``retry_mode``, else
botocore's default), and ``total_max_attempts`` only when a number was asked
for (the config's ``max_attempts`` + 1 or its ``total_max_attempts``, else
``AWS_MAX_ATTEMPTS`` or the config file's ``max_attempts``). Without a
number, botocore's default for the mode applies: legacy mode's from its retry
model (5 attempts for S3), standard and adaptive mode's 3.

The pool owns the retries of an installed client (botocore's own handler is
removed), so the pool's policy for the client takes that number:

- the pool's ``retries`` were not chosen (no ``retries``, ``S3POOL_RETRIES``
  or ``retry_policy``): the caller's number if there is one, else the more of
  the pool's default and botocore's default for the mode, so that installing
  the pool never weakens what the program had;
- they were chosen: they win, and a client whose caller asked for another
  number gets a :class:`RetriesOverridden` warning, once per pool.
"""

from __future__ import annotations

import functools
import threading
import warnings
import weakref
from dataclasses import dataclass
from typing import Any

from ...core.retry import RetryPolicy

LEGACY = "legacy"


class RetriesOverridden(UserWarning):
    """The pool's chosen retries replace the ones a client was configured for."""


@dataclass(frozen=True)
class CallerRetries:
    """What one client was configured for: ``retries`` after the first attempt, in retry ``mode``.

    ``explicit`` is False when no number was asked for and ``retries`` is
    botocore's default for the mode.
    """

    retries: int
    explicit: bool
    mode: str


@functools.lru_cache(maxsize=32)
def botocore_default_attempts(mode: str, endpoint_prefix: str) -> int:
    """The attempts (first one included) botocore makes by default in ``mode`` for a service."""
    if mode != LEGACY:
        from botocore.retries import standard

        return int(standard.DEFAULT_MAX_ATTEMPTS)
    from botocore import translate
    from botocore.loaders import create_loader

    model = create_loader().load_data("_retry")
    config = translate.build_retry_config(endpoint_prefix, model.get("retry", {}), model.get("definitions", {}))
    return int(config["__default__"]["max_attempts"])


def caller_retries(client: Any) -> CallerRetries:
    """What ``client``'s caller asked of botocore (see the module's description)."""
    settings = getattr(client.meta.config, "retries", None) or {}
    mode = str(settings.get("mode") or LEGACY)
    total = settings.get("total_max_attempts")
    if isinstance(total, int) and not isinstance(total, bool):
        return CallerRetries(max(0, total - 1), True, mode)
    attempts = botocore_default_attempts(mode, str(client.meta.service_model.endpoint_prefix))
    return CallerRetries(attempts - 1, False, mode)


_warned: weakref.WeakSet[Any] = weakref.WeakSet()
_warned_lock = threading.Lock()


def client_policy(policy: RetryPolicy, pool: Any, client: Any, *, stacklevel: int = 3) -> RetryPolicy:
    """``policy`` (the pool's, with the S3 rules) with the retries the pool gives ``client``'s calls."""
    caller = caller_retries(client)
    if pool.config.retries_chosen:
        if caller.explicit and caller.retries != policy.retries:
            _warn_once(pool, caller, policy.retries, stacklevel + 1)
        return policy
    retries = caller.retries if caller.explicit else max(policy.retries, caller.retries)
    return policy if retries == policy.retries else policy.replace(retries=retries)


def _warn_once(pool: Any, caller: CallerRetries, retries: int, stacklevel: int) -> None:
    with _warned_lock:
        if pool in _warned:
            return
        _warned.add(pool)
    warnings.warn(
        RetriesOverridden(
            f"this S3 client was configured for {caller.retries} retries ({caller.retries + 1} attempts: botocore's "
            f"retries config, AWS_MAX_ATTEMPTS or the config file's max_attempts), but pool "
            f"{pool.config.name!r} retries {retries} times, and under the pool botocore does not retry. "
            f"Leave the pool's retries unset (no retries=, S3POOL_RETRIES or --retries) to use each client's own, "
            f"or set them alike. Warned once per pool."
        ),
        stacklevel=stacklevel,
    )
