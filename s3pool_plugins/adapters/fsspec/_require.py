"""The fsspec layer's optional dependencies, checked once, before anything of the layer loads.

fsspec, s3fs and aiobotocore (which s3fs brings) are the ``fsspec`` extra of
the distribution, not hard dependencies: s3fs's aiobotocore pins botocore to
a narrow range, which cannot be met beside aws-cli v1 (it pins botocore
exactly). Importing the layer without them raises :class:`MissingExtra`, an
``ImportError`` that says what to install, instead of a bare
``No module named 's3fs'`` from deep inside the layer.
"""

from __future__ import annotations

import importlib

EXTRA = "fsspec"
"""The extra of s3pool-plugins that brings the layer's dependencies."""
MODULES = ("fsspec", "s3fs", "aiobotocore")
"""What the layer imports, in the order they are checked."""
INSTALL_COMMAND = f"python -m pip install 's3pool-plugins[{EXTRA}]'"


class MissingExtra(ImportError):
    """The fsspec layer was imported without the packages of the ``fsspec`` extra."""


def require_fsspec_extra() -> None:
    """Import the layer's dependencies; raise :class:`MissingExtra` naming the extra if one is missing."""
    for module in MODULES:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise MissingExtra(
                f"the fsspec layer of s3pool-plugins (install_fsspec, PooledFileSystem, the pool:: protocol) "
                f"needs {', '.join(MODULES)}; {module} cannot be imported ({error}). "
                f"Install them with the {EXTRA!r} extra: {INSTALL_COMMAND}",
                name=module,
            ) from error


require_fsspec_extra()
