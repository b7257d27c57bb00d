"""fsspec's instance cache for filesystems bound to a pool object: keyed by the pool's identity.

fsspec caches filesystem instances by a token made from the text of their
options, and an ``OperationsPool``'s text is its live state (its limit, what
is active): two pools could share an instance, and one pool's instance would
be missed once its state changed. :class:`PoolKeyedCache` (a subclass of
fsspec's own metaclass) keeps the instances made with a ``pool=`` object
per pool instead, and leaves every other construction to fsspec. Both keys
and values are held weakly: each instance refers to its pool, so a strong
value would keep its own key (the pool, its clients and connections) alive
for good; an instance lives as long as somebody uses it, and a pool as long
as it or one of its instances is used.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from fsspec.spec import _Cached
from fsspec.utils import tokenize

from ...core.pool import OperationsPool

_lock = threading.Lock()


class PoolKeyedCache(_Cached):  # type: ignore[misc]
    """The metaclass of pooled s3fs filesystems (see the module docstring)."""

    def __init__(cls, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls._by_pool: weakref.WeakKeyDictionary[OperationsPool, weakref.WeakValueDictionary[str, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        pool = kwargs.get("pool")
        if not isinstance(pool, OperationsPool) or kwargs.get("skip_instance_cache") or not cls.cachable:
            return super().__call__(*args, **kwargs)
        others = {name: value for name, value in kwargs.items() if name != "pool"}
        extra = tuple(getattr(cls, attribute, None) for attribute in cls._extra_tokenize_attributes)
        thread = (
            () if getattr(cls, "async_impl", False) and not kwargs.get("asynchronous") else (threading.get_ident(),)
        )
        token = tokenize(cls, os.getpid(), *thread, *args, *extra, **others)  # as fsspec's, the pool left out
        with _lock:
            found = cls._by_pool.get(pool, {}).get(token)
        if found is not None:
            return found
        made = super().__call__(*args, skip_instance_cache=True, **kwargs)
        with _lock:
            return cls._by_pool.setdefault(pool, weakref.WeakValueDictionary()).setdefault(token, made)

    def clear_pool_instances(cls) -> None:
        """Forget the instances made with a pool object (``clear_instance_cache`` forgets the others)."""
        with _lock:
            cls._by_pool.clear()
