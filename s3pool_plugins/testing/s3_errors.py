"""S3 error responses byte for byte as S3 sends them, for the proxy's injected faults.

An S3 error is an XML document of two lines (the second is broken here)::

    <?xml version="1.0" encoding="UTF-8"?>
    <Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>
    <RequestId>...</RequestId><HostId>...</HostId></Error>

sent with ``Content-Type: application/xml`` and the ``x-amz-request-id`` and
``x-amz-id-2`` headers. A response to HEAD carries the same headers and no
body (so botocore, which has no body to parse, reports the HTTP status as the
error code, for example ``"503"`` instead of ``"SlowDown"``).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from email.utils import formatdate
from xml.sax.saxutils import escape

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


@dataclass(frozen=True)
class S3Error:
    """One kind of S3 error: its code, message, HTTP status and reason phrase."""

    code: str
    message: str
    status: int
    reason: str


SLOW_DOWN = S3Error("SlowDown", "Please reduce your request rate.", 503, "Slow Down")
INTERNAL_ERROR = S3Error(
    "InternalError", "We encountered an internal error. Please try again.", 500, "Internal Server Error"
)
BAD_GATEWAY = S3Error("BadGateway", "The proxy could not reach the upstream S3 endpoint.", 502, "Bad Gateway")
"""Not an S3 error: what the proxy answers when its upstream fails (retryable for botocore)."""


def request_ids(number: int) -> tuple[str, str]:
    """An ``(x-amz-request-id, x-amz-id-2)`` pair shaped like S3's, derived from ``number``.

    The request id is 16 upper-case hex digits, the host id 76 base64
    characters; the same number always gives the same pair.
    """
    mixed = (number * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    request_id = f"{mixed:016X}"
    digest = hashlib.sha512(request_id.encode("ascii")).digest()
    host_id = base64.b64encode(digest[:57]).decode("ascii")
    return request_id, host_id


def error_body(error: S3Error, request_id: str, host_id: str) -> bytes:
    """The XML document of ``error``."""
    return (
        f"{XML_DECLARATION}<Error><Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
        f"<RequestId>{escape(request_id)}</RequestId><HostId>{escape(host_id)}</HostId></Error>"
    ).encode()


def error_response(error: S3Error, number: int, *, head: bool = False, close: bool = False) -> bytes:
    """The complete HTTP/1.1 response (status line, headers, body) for ``error``.

    ``number`` seeds the request ids (see :func:`request_ids`). ``head``
    leaves out the body (the headers still describe it, as HTTP asks of
    HEAD); ``close`` adds ``Connection: close``.
    """
    request_id, host_id = request_ids(number)
    body = error_body(error, request_id, host_id)
    lines = [
        f"HTTP/1.1 {error.status} {error.reason}",
        f"x-amz-request-id: {request_id}",
        f"x-amz-id-2: {host_id}",
        "Content-Type: application/xml",
        f"Content-Length: {len(body)}",
        f"Date: {formatdate(usegmt=True)}",
        "Server: AmazonS3",
    ]
    if close:
        lines.append("Connection: close")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head_bytes if head else head_bytes + body
