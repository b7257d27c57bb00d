"""Files opened for reading through a pooled filesystem: one operation per range request.

fsspec's buffered file asks its filesystem for byte ranges as the reader
needs them (with its cache: ``readahead`` by default). Each range is fetched
with ``fs.cat_file(path, start, end)`` of the pooled filesystem, so each
range request, body included, is one operation of the pool. Any reader that
takes an fsspec file (pandas, pyarrow's ``PythonFile``, zarr) gets this.
"""

from __future__ import annotations

from typing import Any

from fsspec.spec import AbstractBufferedFile


class PooledReadFile(AbstractBufferedFile):  # type: ignore[misc]
    """A read-only file (``mode="rb"``) whose range requests are pool operations.

    For targets other than S3 (on S3 the files are s3fs's own, see
    :func:`~.pooled_s3.pool_reads`). ``kwargs`` left after fsspec's own
    file options go to every ``cat_file`` call. The size comes from
    ``size`` if given, else from one ``info`` operation when the file opens.
    """

    def __init__(
        self,
        fs: Any,
        path: str,
        mode: str = "rb",
        block_size: int | str | None = "default",
        autocommit: bool = True,
        cache_type: str = "readahead",
        cache_options: dict[str, Any] | None = None,
        size: int | None = None,
        **kwargs: Any,
    ) -> None:
        if mode != "rb":
            raise NotImplementedError(f"PooledReadFile only reads (mode 'rb'), not {mode!r}")
        super().__init__(
            fs,
            path,
            mode=mode,
            block_size=block_size,
            autocommit=autocommit,
            cache_type=cache_type,
            cache_options=cache_options,
            size=size,
            **kwargs,
        )

    def _fetch_range(self, start: int, end: int) -> bytes:
        data: bytes = self.fs.cat_file(self.path, start=start, end=end, **self.kwargs)
        return data
