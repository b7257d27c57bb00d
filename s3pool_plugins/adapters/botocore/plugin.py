"""The zero-code route: botocore's client plugins.

Run any program with::

    BOTOCORE_EXPERIMENTAL__PLUGINS=s3pool=s3pool_plugins.adapters.botocore.plugin

and botocore (and aiobotocore, hence s3fs) calls
:func:`initialize_client_plugin` for every client it creates; S3 clients get
the process-wide default pool, configured from ``S3POOL_*`` variables, and
the installation options those variables set (``S3POOL_BODY_IDLE_TIMEOUT``). The
mechanism is **experimental in botocore**: the variable's name says so, and
botocore may change or drop it without notice; ``s3pool run`` relies on it
too.

botocore swallows every ``Exception`` a plugin raises (it logs them at debug
level), so a bad ``S3POOL_*`` value would go unnoticed and the program would
run without the pool it asked for. Instead the message is written to stderr
and the program stops with ``SystemExit(2)`` at its first client.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from ...core.environment import default_pool, install_options_from_environment
from ...errors import ConfigurationError
from .install import SERVICE, install, installed_pool

log = logging.getLogger("s3pool_plugins.botocore")


def initialize_client_plugin(client: Any) -> None:
    """Install the default pool on ``client`` if it is an S3 client (called by botocore)."""
    if client.meta.service_model.service_id.hyphenize() != SERVICE or installed_pool(client) is not None:
        return  # not S3, or already pooled by an installed session (whose pool it keeps)
    try:
        pool = default_pool()
        options = install_options_from_environment()
    except ConfigurationError as error:
        message = f"s3pool: {error}"
        print(message, file=sys.stderr)
        raise SystemExit(2) from error
    install(client, pool, **options)
