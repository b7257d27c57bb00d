"""Checks of the ``pool::`` options that name the filesystem to wrap (``PooledFileSystem``'s own options).

Pool options (``pool``, ``concurrency`` ...) are checked by :mod:`.pools`
and the pool's configuration; these are the rest. Each bad value raises
:class:`~s3pool_plugins.ConfigurationError` naming the option and what it
accepts, before anything is built.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import fsspec
from fsspec.spec import AbstractFileSystem

from ...errors import ConfigurationError


def check_target(fs: object, protocol: object, options: object) -> tuple[Any, str | None, dict[str, Any]]:
    """``(fs, target_protocol, target_options)`` checked: one filesystem to wrap, or a known protocol and options.

    A falsy or unknown ``target_protocol`` is refused (fsspec would read an
    empty one as the local filesystem).
    """
    if fs is not None:
        if not isinstance(fs, AbstractFileSystem):
            raise ConfigurationError("fs", "an fsspec filesystem (an AbstractFileSystem instance) or None", fs)
        if protocol is not None:
            raise ConfigurationError("target_protocol", "None when fs is given (one filesystem to wrap)", protocol)
    elif protocol is None:
        raise ConfigurationError(
            "fs",
            "a filesystem to wrap: fs=<filesystem>, or target_protocol= and target_options= "
            "(as in 'pool::s3://bucket/key')",
            None,
        )
    elif not isinstance(protocol, str) or not protocol:
        raise ConfigurationError(
            "target_protocol", "the name of an fsspec protocol, such as 's3' or 'memory'", protocol
        )
    elif protocol not in fsspec.available_protocols():
        known = "the name of a protocol fsspec knows, such as 's3' or 'memory' (fsspec.available_protocols())"
        raise ConfigurationError("target_protocol", known, protocol)
    if options is None:
        return fs, protocol, {}
    if not isinstance(options, Mapping) or not all(isinstance(name, str) for name in options):
        raise ConfigurationError(
            "target_options", "a mapping of the target filesystem's options by name, or None", options
        )
    if fs is not None and options:
        raise ConfigurationError("target_options", "None or empty when fs is given (it is already built)", options)
    return fs, protocol, dict(options)


def check_io(asynchronous: object, loop: object, batch_size: object) -> None:
    """fsspec's own options of the pooled filesystem: ``asynchronous``, ``loop``, ``batch_size``."""
    if not isinstance(asynchronous, bool):
        raise ConfigurationError("asynchronous", "True or False", asynchronous)
    if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):
        raise ConfigurationError("loop", "an asyncio event loop or None", loop)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)):
        raise ConfigurationError("batch_size", "an int (operations started at once; < 0: all) or None", batch_size)
