"""Give a client back botocore's own retries after ``uninstall``.

``install`` removes botocore's retry handler (unique id ``retry-config-s3``)
so that attempts are not retried twice. ``uninstall`` registers a new one
for the client's retry mode through botocore's (and aiobotocore's) public
module functions, as botocore's ``ClientCreator`` does for a new client.
"""

from __future__ import annotations

from typing import Any

from .handlers import BOTOCORE_RETRY_HANDLER_ID


def restore_botocore_retries(client: Any, *, is_async: bool) -> None:
    """Register botocore's retry handler for ``client``'s configured mode again."""
    retries = dict(client.meta.config.retries or {})
    mode = retries.get("mode", "legacy")
    if mode in ("standard", "adaptive"):
        if is_async:
            from aiobotocore.retries import standard as async_standard

            async_standard.register_retry_handler(client, max_attempts=retries.get("total_max_attempts"))
        else:
            from botocore.retries import standard

            standard.register_retry_handler(client, max_attempts=retries.get("total_max_attempts"))
        return
    from botocore import translate
    from botocore.loaders import create_loader

    if is_async:
        from aiobotocore import retryhandler
    else:
        from botocore import retryhandler

    if "total_max_attempts" in retries:
        retries["max_attempts"] = retries.pop("total_max_attempts") - 1
    retries.pop("mode", None)
    model = create_loader().load_data("_retry")
    endpoint_prefix = client.meta.service_model.endpoint_prefix
    service = client.meta.service_model.service_id.hyphenize()
    config = translate.build_retry_config(
        endpoint_prefix, model.get("retry", {}), model.get("definitions", {}), retries or None
    )
    handler = retryhandler.create_retry_handler(config, endpoint_prefix)
    client.meta.events.register(
        f"needs-retry.{service}", handler, unique_id=BOTOCORE_RETRY_HANDLER_ID.format(service=service)
    )
