"""What hooks may see of botocore's errors.

S3 echoes signing material in some error answers: ``SignatureDoesNotMatch``
carries ``AWSAccessKeyId``, ``StringToSign`` and ``SignatureProvided`` (and
their byte forms, and the canonical request). The caller gets botocore's
exception unchanged; hooks and spans get a copy without those fields.
"""

from __future__ import annotations

import copy
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError

SIGNING_FIELDS = frozenset(
    {
        "AWSAccessKeyId",
        "StringToSign",
        "StringToSignBytes",
        "SignatureProvided",
        "CanonicalRequest",
        "CanonicalRequestBytes",
    }
)


def result_for_hooks(result: Any) -> Any:
    """``result``, or for S3 Express ``CreateSession`` (whose answer holds session credentials) a copy without them."""
    if isinstance(result, dict) and "Credentials" in result:
        return {**result, "Credentials": "<redacted>"}
    return result


def for_hooks(error: BaseException) -> BaseException:
    """``error``, or for a ClientError whose answer echoes signing material, a copy without it.

    botocore's ``ConnectionClosedError`` (an ``HTTPClientError``) carries the signed request
    (``Authorization``, ``X-Amz-Security-Token``, SSE-C key headers): hooks get a copy without it.
    """
    if isinstance(error, HTTPClientError) and getattr(error, "request", None) is not None:
        clean: BaseException = copy.copy(error)
        clean.request = None  # type: ignore[attr-defined]
        clean.__traceback__, clean.__cause__ = error.__traceback__, error.__cause__
        clean.__context__ = error.__context__
        return clean
    response: Any = getattr(error, "response", None) if isinstance(error, ClientError) else None
    details: Any = response.get("Error") if isinstance(response, dict) else None
    if not isinstance(details, dict) or not SIGNING_FIELDS.intersection(details):
        return error
    clean = copy.copy(error)
    clean.response = {**response, "Error": {k: v for k, v in details.items() if k not in SIGNING_FIELDS}}  # type: ignore[attr-defined]
    return clean
