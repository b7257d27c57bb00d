"""What S3 responses and botocore errors mean for retries.

Between two attempts botocore has not raised anything yet for an HTTP error
response: its ``needs-retry`` handlers see the raw response. The adapter
turns such a response into an :class:`S3ResponseError` (the pool's retry
policy and the ``s3pool_classify_error`` hook see that) and classifies it
with :func:`classify_s3_error`:

- throttling: the error codes in
  :data:`~s3pool_plugins.THROTTLING_ERROR_NAMES` (``SlowDown`` first of all),
  and HTTP 429 and 503 (S3 answers 503 when it wants less load; a HEAD
  response carries no error code, only the status);
- transient: HTTP 500, 502 and 504, the codes ``RequestTimeout``,
  ``InternalError``, ``ServiceUnavailable`` and friends, and every connection
  error, read and connect timeout botocore reports (``HTTPClientError`` and
  botocore's ``ConnectionError`` family);
- anything else falls through to the policy's ``retryable_errors`` rules,
  which by default do not retry 4xx answers such as 403 or ``NoSuchKey``.

An ``x-amz-retry-after`` header (milliseconds, as botocore reads it) sets
the delay of a retryable error, capped at the policy's ``max_retry_delay``.
The user's own ``classifier`` in the retry policy is asked first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.exceptions import HTTPClientError

from ...core.retry import THROTTLING, THROTTLING_ERROR_NAMES, TRANSIENT, Classifier, ErrorClassification, RetryPolicy

THROTTLING_STATUS_CODES = frozenset({429, 503})
TRANSIENT_STATUS_CODES = frozenset({500, 502, 504})
TRANSIENT_ERROR_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "PriorRequestNotComplete",
        "IDPCommunicationError",
    }
)
RETRY_AFTER_HEADER = "x-amz-retry-after"


class S3ResponseError(Exception):
    """An S3 error response as the pool sees it between attempts.

    botocore raises its own ``ClientError`` for the final response, exactly
    as without the pool; this object exists for classification, hooks and
    metrics. ``code`` is S3's error code (``SlowDown``, ``NoSuchKey`` ...;
    the status as text when the response had no body), ``status`` the HTTP
    status, ``retry_after`` the delay S3 asked for in seconds, if any;
    ``request_id`` and ``host_id`` are S3's ``x-amz-request-id`` and
    ``x-amz-id-2``.
    Error names and codes in ``retryable_errors`` match ``code`` and the
    status (``name``, e.g. ``"503"``).
    """

    def __init__(
        self,
        operation: str,
        status: int,
        code: str,
        message: str = "",
        request_id: str | None = None,
        retry_after: float | None = None,
        host_id: str | None = None,
    ) -> None:
        super().__init__(f"{code} (HTTP {status}) from {operation}: {message}".rstrip(": "))
        self.operation = operation
        self.status = status
        self.code = code
        self.name = str(status)
        self.message = message
        self.request_id = request_id
        self.host_id = host_id
        self.retry_after = retry_after


def _retry_after(headers: Mapping[str, Any]) -> float | None:
    value = headers.get(RETRY_AFTER_HEADER)
    if value is None:
        return None
    try:
        seconds = int(value) / 1000.0
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def response_error(operation: str, response: tuple[Any, Mapping[str, Any]] | None) -> S3ResponseError | None:
    """The :class:`S3ResponseError` for botocore's ``(http_response, parsed)``, or None on success.

    botocore already turns S3's "200 with an error body" answers (for
    example to CopyObject) into errors in ``parsed``, so ``parsed["Error"]``
    or a status of 300 and above marks an error.
    """
    if response is None:
        return None
    http_response, parsed = response
    status = int(getattr(http_response, "status_code", 0) or 0)
    error = parsed.get("Error") if isinstance(parsed, Mapping) else None
    if not error and status < 300:
        return None
    error = error or {}
    metadata = parsed.get("ResponseMetadata", {}) if isinstance(parsed, Mapping) else {}
    headers = getattr(http_response, "headers", None) or {}
    return S3ResponseError(
        operation,
        status,
        str(error.get("Code") or status),
        str(error.get("Message") or ""),
        request_id=metadata.get("RequestId"),
        retry_after=_retry_after(headers),
        host_id=metadata.get("HostId"),
    )


def classify_s3_error(error: BaseException) -> ErrorClassification | None:
    """The S3 verdict for ``error``, or None to let the policy's rules decide."""
    if isinstance(error, S3ResponseError):
        if error.code in THROTTLING_ERROR_NAMES or error.status in THROTTLING_STATUS_CODES:
            verdict = THROTTLING
        elif error.status in TRANSIENT_STATUS_CODES or error.code in TRANSIENT_ERROR_CODES:
            verdict = TRANSIENT
        else:
            return None
        if error.retry_after is not None:
            verdict = replace(verdict, retry_after=error.retry_after)
        return verdict
    if isinstance(error, (HTTPClientError, BotocoreConnectionError)):
        return replace(TRANSIENT, reason=f"transient: {type(error).__name__}")
    return None


def s3_retry_policy(policy: RetryPolicy) -> RetryPolicy:
    """``policy`` with the S3 rules added after its own ``classifier`` (which still wins)."""
    own = policy.classifier
    if own is None:
        return policy.replace(classifier=classify_s3_error)
    return policy.replace(classifier=_chain(own, classify_s3_error))


def _chain(first: Classifier, second: Classifier) -> Classifier:
    def classify(error: BaseException) -> ErrorClassification | None:
        verdict = first(error)
        return verdict if verdict is not None else second(error)

    return classify
