"""Span attributes for pool tasks: the AWS SDK conventions for S3 calls, and the pool's own.

Only what is listed here reaches a span, and none of it can carry a
credential: the metadata the botocore adapter records is the service,
operation, bucket, key, region and endpoint host; the response fields are
S3's request ids and the HTTP status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...core.task import Task

RPC_SYSTEM = "aws-api"


def start_attributes(pool_name: str, task: Task) -> dict[str, Any]:
    """Attributes known when the task begins (none of them sensitive)."""
    attributes: dict[str, Any] = {
        "s3pool.pool": pool_name,
        "s3pool.task.kind": task.kind,
        "s3pool.priority": task.priority,
    }
    if task.tenant is not None:
        attributes["s3pool.tenant"] = task.tenant
    metadata = task.metadata
    operation = metadata.get("operation")
    if metadata.get("service") == "s3" and isinstance(operation, str):
        attributes["rpc.system"] = RPC_SYSTEM
        attributes["rpc.service"] = "S3"
        attributes["rpc.method"] = operation
    return attributes


def _response_fields(source: Any) -> dict[str, Any]:
    """Request ids and status from a parsed botocore response, a ClientError, or an S3ResponseError."""
    response = source if isinstance(source, Mapping) else getattr(source, "response", None)
    fields: dict[str, Any] = {}
    if isinstance(response, Mapping):
        metadata = response.get("ResponseMetadata")
        if isinstance(metadata, Mapping):
            if metadata.get("RequestId"):
                fields["aws.request_id"] = str(metadata["RequestId"])
            if metadata.get("HostId"):
                fields["aws.extended_request_id"] = str(metadata["HostId"])
            if isinstance(metadata.get("HTTPStatusCode"), int):
                fields["http.response.status_code"] = metadata["HTTPStatusCode"]
        return fields
    for name, attribute in (("request_id", "aws.request_id"), ("host_id", "aws.extended_request_id")):
        value = getattr(source, name, None)
        if isinstance(value, str) and value:
            fields[attribute] = value
    status = getattr(source, "status", None)
    if isinstance(status, int) and not isinstance(status, bool):
        fields["http.response.status_code"] = status
    return fields


def end_attributes(task: Task, result: Any, error: BaseException | None, record_keys: bool) -> dict[str, Any]:
    """Attributes known when the task settles (before plugins redact them)."""
    attributes: dict[str, Any] = {
        "s3pool.queue_wait": task.queue_wait,
        "s3pool.attempts": task.attempt,
        "s3pool.backoff": task.backoff_time,
        "s3pool.status": task.status,
    }
    if task.limit_at_start is not None:
        attributes["s3pool.limit_at_start"] = task.limit_at_start
    if task.hedges:
        attributes["s3pool.hedges"] = task.hedges
        attributes["s3pool.hedge_won"] = task.hedge_won
    metadata = task.metadata
    tenant = task.tenant if task.tenant is not None else metadata.get("tenant")
    if isinstance(tenant, str):
        attributes["s3pool.tenant"] = tenant
    if metadata.get("service") == "s3":
        for key, attribute in (
            ("bucket", "aws.s3.bucket"),
            ("region", "cloud.region"),
            ("server_address", "server.address"),
        ):
            value = metadata.get(key)
            if isinstance(value, str):
                attributes[attribute] = value
        if record_keys and isinstance(metadata.get("key"), str):
            attributes["aws.s3.key"] = metadata["key"]
        attributes.update(_response_fields(error if error is not None else result))
        if error is not None and "http.response.status_code" not in attributes:
            attributes.update(_response_fields(task.last_error))
    return attributes


def retry_event(error: BaseException, delay: float, attempt: int, throttling: bool) -> dict[str, Any]:
    """The attributes of one retry event."""
    code = getattr(error, "code", None)
    if not isinstance(code, str):
        response = getattr(error, "response", None)
        code = response.get("Error", {}).get("Code") if isinstance(response, Mapping) else None
    return {
        "s3pool.attempt": attempt,
        "s3pool.retry.delay": delay,
        "s3pool.retry.throttling": throttling,
        "error.type": str(code) if code else type(error).__name__,
    }
