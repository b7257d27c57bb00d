"""Reading a ``redis://`` or ``rediss://`` fleet URL into connection settings, without keeping the password as text.

Accepted forms (the pool's ``fleet`` option, ``S3POOL_FLEET``, ``s3pool run --fleet``)::

    redis://HOST[:PORT][/DB][?timeout=SECONDS]
    redis://:PASSWORD@HOST[:PORT][/DB]
    redis://USER:PASSWORD@HOST[:PORT][/DB]
    rediss://USER:PASSWORD@HOST[:PORT][/DB]?ssl_ca_certs=CA.pem[&ssl_certfile=CERT.pem&ssl_keyfile=KEY.pem]
        [&ssl_cert_reqs=required|optional|none][&ssl_check_hostname=true|false]

User and password are percent-decoded. Every error is a
:class:`~s3pool_plugins.ConfigurationError` naming ``fleet``; none repeats
the password.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from s3pool_plugins import ConfigurationError

from .secret import MaskedPassword

SCHEMES = ("redis", "rediss")
"""The URL schemes this backend answers for."""

DEFAULT_PORT = 6379
MAX_TIMEOUT = 60.0
"""The largest accepted call timeout, in seconds: a fleet store slower than that is unavailable."""

_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
_FILE_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
QUERY_OPTIONS = ("timeout", *_TLS_OPTIONS)
"""The query parameters a fleet URL may carry (the ``ssl_*`` ones only with ``rediss://``)."""
_CERT_REQS = ("required", "optional", "none")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_OPTION = "fleet"


@dataclass(frozen=True)
class TLSSettings:
    """TLS options of a ``rediss://`` URL (file paths; no secret)."""

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    cert_reqs: str = "required"
    check_hostname: bool = True


@dataclass(frozen=True, repr=False)
class RedisSettings:
    """Where and how to connect; ``password`` is masked (see :mod:`s3pool_redis.secret`)."""

    scheme: str
    host: str
    port: int
    db: int
    username: str | None
    password: MaskedPassword | None
    tls: TLSSettings | None
    timeout: float | None
    """The URL's ``timeout`` (seconds), if it gave one."""

    @property
    def description(self) -> str:
        """``redis://host:port/db`` (``rediss://`` with TLS): the store, with no user or password."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.db}"

    def __repr__(self) -> str:
        return f"RedisSettings({self.description!r})"


def _error(accepted: str, got: object) -> ConfigurationError:
    return ConfigurationError(_OPTION, accepted, got)


def redact(url: str) -> str:
    """``url`` with the part before ``@`` in its authority replaced by ``***`` (for messages)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<not a URL>" if "@" in url else url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}://{authority}{slash}{tail}"


def is_redis_url(url: str) -> bool:
    """True if ``url`` starts with ``redis://`` or ``rediss://`` (case-insensitive)."""
    return url.split("://", 1)[0].lower() in SCHEMES if "://" in url else False


def parse_timeout(value: object, option: str) -> float:
    """``value`` (a number, or its text) as a call timeout in seconds: > 0 and <= 60."""
    accepted = f"a number of seconds > 0 and <= {MAX_TIMEOUT:g}"
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigurationError(option, accepted, value) from None
    if isinstance(value, bool) or not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMEOUT:
        raise ConfigurationError(option, accepted, value)
    return seconds


def parse_url(url: object) -> RedisSettings:
    """Read a fleet URL (see the module); :class:`~s3pool_plugins.ConfigurationError` naming ``fleet`` if malformed."""
    if not isinstance(url, str) or not is_redis_url(url):
        raise _error("a redis:// or rediss:// URL", redact(url) if isinstance(url, str) else url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _error("a Redis URL with a port from 1 to 65535", redact(url)) from None
    scheme = parts.scheme.lower()
    if not parts.hostname:
        raise _error(f"a {scheme}:// URL that names a host", redact(url))
    if parts.fragment:
        raise _error("a Redis URL without a #fragment", redact(url))
    db = _database(parts.path, url)
    username, password = _credentials(parts.username, parts.password)
    options = _query(parts.query, scheme, url)
    timeout = parse_timeout(options["timeout"], f"{_OPTION} (timeout=)") if "timeout" in options else None
    tls = _tls(options) if scheme == "rediss" else None
    return RedisSettings(
        scheme=scheme,
        host=parts.hostname,
        port=DEFAULT_PORT if port is None else port,
        db=db,
        username=username,
        password=password,
        tls=tls,
        timeout=timeout,
    )


def _database(path: str, url: str) -> int:
    text = path.lstrip("/")
    if not text:
        return 0
    if not text.isdigit() or int(text) > 1_000_000:
        raise _error("a Redis URL whose path is a database number (/0, /1 ...) or empty", redact(url))
    return int(text)


def _credentials(user: str | None, password: str | None) -> tuple[str | None, MaskedPassword | None]:
    if password is None:
        if user:
            # Not repeated: it may be a password written without the colon before it.
            raise _error("credentials as :PASSWORD@ or USER:PASSWORD@ (a user name alone cannot authenticate)", "***@")
        return None, None
    return (unquote(user) if user else None), MaskedPassword(unquote(password))


def _query(query: str, scheme: str, url: str) -> dict[str, str]:
    options: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise _error("a Redis URL whose query is NAME=VALUE pairs joined by &", redact(url)) from None
    for name, value in pairs:
        if name not in QUERY_OPTIONS:
            raise ConfigurationError(
                f"{_OPTION} (query parameter {name}=)",
                f"query parameters among {', '.join(QUERY_OPTIONS)}",
                name,
                unknown=True,
            )
        if name in _TLS_OPTIONS and scheme != "rediss":
            raise _error(f"{name}= only in a rediss:// URL (TLS)", name)
        if name in options:
            raise _error(f"each query parameter once ({name}= is given twice)", name)
        options[name] = value
    return options


def _tls(options: dict[str, str]) -> TLSSettings:
    for name in _FILE_OPTIONS:
        path = options.get(name)
        if path is not None and not os.path.isfile(path):
            raise ConfigurationError(f"{_OPTION} ({name}=)", "the path of a readable PEM file", path)
    if "ssl_keyfile" in options and "ssl_certfile" not in options:
        raise ConfigurationError(f"{_OPTION} (ssl_keyfile=)", "a key file only with ssl_certfile=", "ssl_keyfile")
    cert_reqs = options.get("ssl_cert_reqs", "required").lower()
    if cert_reqs not in _CERT_REQS:
        raise ConfigurationError(f"{_OPTION} (ssl_cert_reqs=)", "one of " + ", ".join(_CERT_REQS), cert_reqs)
    check_text = options.get("ssl_check_hostname", "true" if cert_reqs == "required" else "false").lower()
    if check_text not in _BOOLEANS:
        raise ConfigurationError(f"{_OPTION} (ssl_check_hostname=)", "true or false", check_text)
    if _BOOLEANS[check_text] and cert_reqs == "none":
        raise ConfigurationError(
            f"{_OPTION} (ssl_check_hostname=)", "false when ssl_cert_reqs=none (nothing is verified)", check_text
        )
    return TLSSettings(
        ca_certs=options.get("ssl_ca_certs"),
        certfile=options.get("ssl_certfile"),
        keyfile=options.get("ssl_keyfile"),
        cert_reqs=cert_reqs,
        check_hostname=_BOOLEANS[check_text],
    )
