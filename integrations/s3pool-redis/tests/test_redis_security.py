"""Credentials never reach a log line, an error, a repr or anything reachable from the backend; TLS is real."""

from __future__ import annotations

import logging
import pickle
import secrets
import traceback
import types
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import trustme
from s3pool_redis import RedisFleetBackend
from s3pool_redis.testing import RedisServer, free_port
from s3pool_redis.testing.pytest_plugin import RedisTLS
from test_redis_faults import CALLS

from s3pool_plugins import FleetUnavailable

NOT_FOLLOWED = (type, types.ModuleType, types.CodeType, types.FrameType, types.TracebackType, types.BuiltinFunctionType)


def reachable(roots: Iterable[object]) -> Iterator[object]:
    """Every object reachable from ``roots`` through attributes, slots, items and closures."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, NOT_FOLLOWED):
            continue
        seen.add(id(obj))
        assert len(seen) < 200_000, "the walk does not end"
        yield obj
        if isinstance(obj, (str, bytes, bytearray, int, float)):
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        if isinstance(obj, types.FunctionType):
            stack.extend(cell.cell_contents for cell in obj.__closure__ or ())
        if isinstance(obj, types.MethodType):
            stack.append(obj.__self__)
        stack.extend(getattr(obj, "__dict__", {}).values())
        for klass in type(obj).__mro__:
            for slot in getattr(klass, "__slots__", ()):
                if isinstance(slot, str) and hasattr(obj, slot):
                    stack.append(getattr(obj, slot))


def holds(obj: object, secret: str) -> bool:
    if isinstance(obj, str):
        return secret in obj
    if isinstance(obj, (bytes, bytearray)):
        return secret.encode() in obj
    return False


def exercise(backend: RedisFleetBackend) -> list[BaseException]:
    part = backend.partition("bucket/")
    errors: list[BaseException] = []
    for call in CALLS.values():
        try:
            call(part)
        except FleetUnavailable as exc:
            errors.append(exc)
    return errors


def texts_of(errors: list[BaseException]) -> list[str]:
    return [text for exc in errors for text in (str(exc), repr(exc), "".join(traceback.format_exception(exc)))]


def test_unreachable_store_with_a_password_logs_and_raises_no_credentials(caplog: pytest.LogCaptureFixture) -> None:
    password = "pw-" + secrets.token_urlsafe(18)
    caplog.set_level(logging.DEBUG)
    backend = RedisFleetBackend(f"redis://etl:{password}@127.0.0.1:{free_port()}/0", "sec", call_timeout=0.2)
    errors = exercise(backend)
    assert len(errors) == len(CALLS)
    logging.getLogger("s3pool.test").warning("fleet store unavailable: %s", errors[0], exc_info=errors[0])
    texts = [record.getMessage() for record in caplog.records] + texts_of(errors)
    texts += [repr(backend), backend.description, str(backend.partition("bucket/"))]
    assert "redis://127.0.0.1" in texts_of(errors)[0]
    assert not [text for text in texts if password in text]
    backend.close()


def test_a_wrong_password_is_unavailable_and_never_shown(redis_password_server: RedisServer) -> None:
    wrong = "pw-wrong-" + secrets.token_urlsafe(12)
    url = redis_password_server.url().replace(str(redis_password_server.password), wrong)
    backend = RedisFleetBackend(url, "sec", call_timeout=1.0)
    errors = exercise(backend)
    assert len(errors) == len(CALLS)
    assert "AuthenticationError" in str(errors[0])
    for text in texts_of(errors):
        assert wrong not in text and str(redis_password_server.password) not in text
    backend.close()


def test_nothing_reachable_from_a_working_backend_holds_the_password(redis_password_server: RedisServer) -> None:
    password = str(redis_password_server.password)
    backend = RedisFleetBackend(redis_password_server.url(), "sec", call_timeout=2.0)
    assert not exercise(backend)
    part = backend.partition("bucket/")
    leaks = [type(obj).__name__ for obj in reachable([backend, part]) if holds(obj, password)]
    assert not leaks, f"the password is reachable through {leaks}"
    with pytest.raises(TypeError):
        pickle.dumps(backend)
    backend.close()


def test_tls_with_password_and_client_certificate(redis_tls: RedisTLS) -> None:
    backend = RedisFleetBackend(redis_tls.url(), "tls", call_timeout=2.0)
    assert backend.description == f"rediss://127.0.0.1:{redis_tls.tls.port}/0"
    part = backend.partition("p")
    assert not exercise(backend)
    assert part.take_tokens(1, 0.001, 1).granted == 1
    other = RedisFleetBackend(redis_tls.url(), "tls", call_timeout=2.0)
    assert other.partition("p").take_tokens(1, 0.001, 1).granted == 0
    other.close()
    assert str(redis_tls.server.password) not in repr(backend)
    backend.close()


def test_tls_refuses_an_untrusted_server_and_a_missing_client_certificate(redis_tls: RedisTLS, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    untrusted = redis_tls.url().replace(redis_tls.tls.ca_path, str(other_ca))
    no_cert = redis_tls.url(client_cert=False)
    for url, words in ((untrusted, "CERTIFICATE_VERIFY_FAILED"), (no_cert, "unavailable")):
        backend = RedisFleetBackend(url, "tls", call_timeout=2.0)
        with pytest.raises(FleetUnavailable, match=words) as caught:
            backend.partition("p").take_retry(1, 2)
        assert str(redis_tls.server.password) not in str(caught.value)
        backend.close()


def test_plain_redis_url_does_not_speak_tls_to_a_tls_port(redis_tls: RedisTLS) -> None:
    plain = redis_tls.server.url(port=redis_tls.tls.port)
    backend = RedisFleetBackend(plain, "tls", call_timeout=0.5)
    with pytest.raises(FleetUnavailable):
        backend.partition("p").take_retry(1, 2)
    backend.close()
