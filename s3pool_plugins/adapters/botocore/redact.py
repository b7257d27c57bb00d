"""What hooks may see of botocore's errors.

S3 echoes signing material in some error answers: ``SignatureDoesNotMatch``
carries ``AWSAccessKeyId``, ``StringToSign`` and ``SignatureProvided`` (and
their byte forms, and the canonical request). The caller gets botocore's
exception unchanged; hooks and spans get a copy without those fields.
"""

from __future__ import annotations

import copy
from typing import Any

from botocore.exceptions import ClientError

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


def for_hooks(error: BaseException) -> BaseException:
    """``error``, or for a ClientError whose answer echoes signing material, a copy without it."""
    response: Any = getattr(error, "response", None) if isinstance(error, ClientError) else None
    details: Any = response.get("Error") if isinstance(response, dict) else None
    if not isinstance(details, dict) or not SIGNING_FIELDS.intersection(details):
        return error
    clean = copy.copy(error)
    clean.response = {**response, "Error": {k: v for k, v in details.items() if k not in SIGNING_FIELDS}}  # type: ignore[attr-defined]
    return clean
