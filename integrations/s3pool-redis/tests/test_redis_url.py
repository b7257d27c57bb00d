"""Fleet URLs: the accepted forms, and errors that name ``fleet`` without repeating a password."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from s3pool_redis import RedisFleetBackend
from s3pool_redis.plugin import s3pool_fleet_backend
from s3pool_redis.secret import MaskedPassword
from s3pool_redis.url import parse_url, redact

from s3pool_plugins import ConfigurationError

SECRET = "s3cr%t/p@ss:word"
QUOTED = "s3cr%25t%2Fp%40ss%3Aword"


def test_plain_url_defaults() -> None:
    settings = parse_url("redis://cache.internal")
    assert (settings.scheme, settings.host, settings.port, settings.db) == ("redis", "cache.internal", 6379, 0)
    assert settings.username is None and settings.password is None and settings.tls is None
    assert settings.timeout is None
    assert settings.description == "redis://cache.internal:6379/0"


def test_user_password_db_timeout_and_ipv6() -> None:
    settings = parse_url(f"redis://etl:{QUOTED}@[::1]:7000/3?timeout=0.5")
    assert (settings.host, settings.port, settings.db, settings.timeout) == ("::1", 7000, 3, 0.5)
    assert settings.username == "etl"
    assert settings.password is not None and settings.password.reveal() == SECRET
    assert settings.description == "redis://[::1]:7000/3"
    assert SECRET not in repr(settings) and "etl" not in settings.description


def test_password_without_user() -> None:
    settings = parse_url(f"redis://:{QUOTED}@h/1")
    assert settings.username is None
    assert settings.password is not None and settings.password.reveal() == SECRET


def test_tls_options(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "c.pem", "k.pem"))
    for path in (ca, cert, key):
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = parse_url(f"rediss://:pw@h:6380?ssl_ca_certs={ca}&ssl_certfile={cert}&ssl_keyfile={key}")
    assert settings.tls is not None
    assert (settings.tls.ca_certs, settings.tls.certfile, settings.tls.keyfile) == (str(ca), str(cert), str(key))
    assert (settings.tls.cert_reqs, settings.tls.check_hostname) == ("required", True)
    assert settings.description == "rediss://h:6380/0"
    relaxed = parse_url("rediss://h?ssl_cert_reqs=none")
    assert relaxed.tls is not None and (relaxed.tls.cert_reqs, relaxed.tls.check_hostname) == ("none", False)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://h:6379", "redis:// or rediss://"),
        ("redis://", "names a host"),
        ("redis://h:99999", "port from 1 to 65535"),
        ("redis://h/zero", "database number"),
        ("redis://h?timeout=0", "> 0 and <= 60"),
        ("redis://h?timeout=soon", "> 0 and <= 60"),
        ("redis://h?tiemout=1", "query parameters among timeout"),
        ("redis://h?ssl_ca_certs=/x", "only in a rediss:// URL"),
        ("redis://h?timeout=1&timeout=2", "once"),
        ("rediss://h?ssl_ca_certs=/no/such/file.pem", "readable PEM file"),
        ("rediss://h?ssl_cert_reqs=maybe", "required, optional, none"),
        ("rediss://h?ssl_cert_reqs=none&ssl_check_hostname=true", "false when ssl_cert_reqs=none"),
        ("rediss://h?ssl_check_hostname=perhaps", "true or false"),
        ("redis://h#frag", "fragment"),
    ],
)
def test_malformed_urls_name_fleet_and_what_is_accepted(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_url(url)
    assert caught.value.option.startswith("fleet")
    assert words in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://etl:{QUOTED}@h:notaport/0",
        f"redis://etl:{QUOTED}@h/notadb",
        f"redis://:{QUOTED}@h?bogus=1",
        f"redis://{QUOTED}@h/0",  # a password written without its colon
        f"rediss://etl:{QUOTED}@h?ssl_ca_certs=/no/such.pem",
    ],
)
def test_errors_never_repeat_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_url(url)
    for text in (str(caught.value), repr(caught.value), repr(caught.value.got)):
        assert SECRET not in text and QUOTED not in text


def test_redact_hides_the_user_information() -> None:
    assert redact(f"redis://etl:{QUOTED}@h:1/0") == "redis://***@h:1/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"


def test_backend_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="fleet_name"):
        RedisFleetBackend("redis://h", "")
    with pytest.raises(ConfigurationError, match="call_timeout"):
        RedisFleetBackend("redis://h", "f", call_timeout=-1)
    with pytest.raises(ConfigurationError, match="key_ttl"):
        RedisFleetBackend("redis://h", "f", key_ttl=0.1)
    backend = RedisFleetBackend("redis://h?timeout=0.75", "f")
    assert backend.call_timeout == 0.75
    assert RedisFleetBackend("redis://h", "f").call_timeout == 0.25
    assert RedisFleetBackend("redis://h?timeout=0.75", "f", call_timeout=1.5).call_timeout == 1.5


def test_hook_answers_for_redis_schemes_only() -> None:
    made = s3pool_fleet_backend(url=f"redis://:{QUOTED}@h:6379/2", fleet_name="etl")
    assert isinstance(made, RedisFleetBackend)
    assert (made.fleet_name, made.description) == ("etl", "redis://h:6379/2")
    assert SECRET not in repr(made)
    made.close()
    assert isinstance(s3pool_fleet_backend(url="REDISS://h", fleet_name="etl"), RedisFleetBackend)
    assert s3pool_fleet_backend(url="memcached://h", fleet_name="etl") is None
    assert s3pool_fleet_backend(url="local", fleet_name="etl") is None


def test_entry_point_is_declared() -> None:
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '[project.entry-points.s3pool]\nredis = "s3pool_redis.plugin"\n' in pyproject
    assert 'name = "s3pool-redis"' in pyproject


def test_masked_password_is_not_text_and_does_not_pickle() -> None:
    masked = MaskedPassword(SECRET)
    assert masked.reveal() == SECRET
    assert SECRET.encode() not in masked._masked and SECRET not in repr(masked)
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(masked)
