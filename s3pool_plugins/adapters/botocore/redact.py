"""What hooks may see of botocore's results and errors.

S3 echoes signing material in some error answers: ``SignatureDoesNotMatch``
carries ``AWSAccessKeyId``, ``StringToSign`` and ``SignatureProvided`` (and
their byte forms, and the canonical request). The caller gets botocore's
exception unchanged; hooks and spans get a copy without those fields.

A result's streamed members (GetObject's ``Body``, SelectObjectContent's
``Payload``) are live objects that lead to the signed request: aiobotocore's
body keeps ``_raw_stream._request_info`` (``Authorization``,
``X-Amz-Security-Token``, the SSE-C key headers), urllib3's keeps its
connection pool. Hooks get a :class:`StreamedMember` in their place; reading
the caller's body from a hook would take the caller's data anyway.
"""

from __future__ import annotations

import copy
import datetime
import decimal
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


PLAIN_TYPES = (
    str,
    bytes,
    bool,
    int,
    float,
    type(None),
    dict,
    list,
    tuple,
    datetime.datetime,
    datetime.date,
    decimal.Decimal,
)
"""What botocore's parsers build a result from, streamed members aside."""


class StreamedMember:
    """What hooks see in place of a streamed member of a result (GetObject's ``Body``).

    ``kind`` is the type name of the caller's object (``"StreamingBody"``);
    ``content_length`` the result's ``ContentLength``, if any. It leads to
    nothing else: the caller's object holds the connection and, in
    aiobotocore, the signed request.
    """

    __slots__ = ("content_length", "kind")

    def __init__(self, kind: str, content_length: int | None) -> None:
        self.kind = kind
        self.content_length = content_length

    def __repr__(self) -> str:
        return f"<streamed {self.kind}, content_length={self.content_length}: the caller's to read>"


def result_for_hooks(result: Any) -> Any:
    """``result`` as hooks may see it: the same dict if it holds only parsed data, else a copy in which
    every streamed member is a :class:`StreamedMember` and S3 Express ``CreateSession``'s session
    credentials are ``"<redacted>"``.

    botocore's parsers build plain data (dicts, lists, strings, numbers, times)
    everywhere but in an output's payload member, which is always a top-level
    member: only those are looked at, so the check costs a pass over the keys.
    """
    if not isinstance(result, dict):
        return result
    view: dict[str, Any] | None = None
    for name, value in result.items():
        if name == "Credentials" or not isinstance(value, PLAIN_TYPES):
            if view is None:
                view = dict(result)
            if name == "Credentials":
                view[name] = "<redacted>"
            else:
                length = result.get("ContentLength")
                view[name] = StreamedMember(type(value).__name__, length if isinstance(length, int) else None)
    return result if view is None else view


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
