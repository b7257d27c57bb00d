"""boto3's transfer manager with the caller's context in its worker threads.

``upload_file``/``download_file`` run their part requests on s3transfer's
own threads, which start with an empty context: a priority scope or the
current OpenTelemetry span of the caller does not reach them. boto3 offers no
public way to change the threads behind ``client.upload_file``, but
s3transfer's ``TransferManager`` takes an executor class: :func:`transfer`
builds boto3's ``S3Transfer`` on one whose threads run every job in a copy of
the submitting thread's context.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` that runs each job in a copy of the context it was submitted from."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        context = contextvars.copy_context()
        return super().submit(context.run, fn, *args, **kwargs)


def transfer(client: Any, config: Any = None) -> Any:
    """A boto3 ``S3Transfer`` for ``client`` whose worker threads keep the caller's context.

    Use it where you would call ``client.upload_file``: ``transfer(s3).upload_file(path, bucket, key)``,
    ``download_file``, with the same ``config`` (a ``boto3.s3.transfer.TransferConfig``).
    Priority scopes and the current span then reach every part request. The
    CRT transfer client is not used here (it bypasses botocore's events).
    """
    from boto3.s3.transfer import S3Transfer, TransferConfig
    from s3transfer.futures import NonThreadedExecutor
    from s3transfer.manager import TransferManager

    config = config or TransferConfig()
    executor_cls = ContextThreadPoolExecutor if config.use_threads else NonThreadedExecutor
    manager = TransferManager(client, config, executor_cls=executor_cls)
    return S3Transfer(manager=manager)
