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

    ``kwargs`` left after fsspec's own file options (for example s3fs's
    ``version_id``) go to every ``cat_file`` call. The size comes from
    ``size`` if given, else from one ``info`` operation when the file opens.

    On an S3 target the file reads the object it opened, as s3fs's
    ``S3File`` does: the ``version_id`` asked for (on a ``version_aware``
    filesystem, the version ``info`` reported), else the ETag ``info`` saw,
    sent as ``IfMatch`` with every range; an object replaced meanwhile
    raises s3fs's ``FileExpired``. A caller-given ``size`` skips that
    ``info`` and the pin, as in s3fs.
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
        self._if_match: str | None = None
        if getattr(fs, "_s3_target", False):  # as s3fs's S3File: size the version read, pin what was opened
            version_id = kwargs.get("version_id") or fs.fs.split_path(path)[2]
            if size is None:
                details = fs.info(path, **({"version_id": version_id} if version_id else {}))
                self._details = details
                size = details["size"]
                if version_id is None and fs.fs.version_aware:
                    version_id = details.get("VersionId")
                if version_id is None:
                    self._if_match = details.get("ETag")
            if version_id:
                kwargs["version_id"] = version_id
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
        if self._if_match is not None:
            pinned: bytes = self.fs.fetch_range_if_match(self.path, start, end, self._if_match)
            return pinned
        data: bytes = self.fs.cat_file(self.path, start=start, end=end, **self.kwargs)
        return data
