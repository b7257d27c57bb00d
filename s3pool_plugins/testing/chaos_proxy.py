"""An HTTP reverse proxy in front of an S3 endpoint that injects seeded faults.

:class:`ChaosProxy` forwards every request to its upstream (for example a
:class:`~s3pool_plugins.testing.LocalS3`) and, as its
:class:`~s3pool_plugins.testing.faults.FaultPlan` decides, delays it, answers
503 ``SlowDown`` or 500 ``InternalError`` exactly as S3 does, resets the
connection, or sends the response body slowly or only in part. It counts what
it saw (:class:`~s3pool_plugins.testing.stats.ProxyStats`).

HTTP behaviour, as clients see it:

- HTTP/1.1 with keep-alive; one thread per client connection, each with its
  own upstream connection, reused when the upstream allows (moto's server
  closes after every response).
- ``Expect: 100-continue`` (botocore sends it with file-like PutObject and
  UploadPart bodies; aiohttp waits for it): a throttled request is answered
  at once, before the body, with ``Connection: close``; any other request
  gets ``100 Continue`` and its body is read first. Chunked request bodies are
  decoded and forwarded with a ``Content-Length``.
- Request headers are forwarded unchanged and in order, ``Host`` included
  (botocore signs it), except hop-by-hop headers and ``Expect``.
- Latency is waited after the request body is read and before the proxy
  acts (forwards, answers an error or resets); throttled requests have none.
"""

from __future__ import annotations

import http.client
import http.server
import logging
import socket
import socketserver
import struct
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .faults import Action, FaultConfig, FaultPlan, PrefixLimit, resource_of
from .loopback import LoopbackServer
from .s3_errors import BAD_GATEWAY, INTERNAL_ERROR, SLOW_DOWN, S3Error, error_response
from .stats import Counters, ProxyStats

logger = logging.getLogger(__name__)

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
_COPY_CHUNK = 64 * 1024
_SMALL_BODY = 64 * 1024
_MAX_LINGER_BYTES = 64 * 1024 * 1024


class _Abort(Exception):
    """The request cannot go on (proxy stopping, client gone); close the connection."""


class ChaosProxy(LoopbackServer):
    """A fault-injecting reverse proxy for ``upstream_url`` on ``host`` and a free port (or ``port``).

    ``seed`` seeds the fault plan (see :mod:`s3pool_plugins.testing.faults`
    for what is reproducible); ``faults`` is the initial
    :class:`~s3pool_plugins.testing.faults.FaultConfig` (default: none).
    ``upstream_timeout`` bounds each upstream connect and read, in seconds;
    ``linger_timeout`` bounds how long the proxy reads and discards a body it
    refused before closing (to avoid a TCP reset racing its answer).

    Every fault setting can change while the proxy runs, from any thread;
    the next request to arrive sees the change.
    """

    def __init__(
        self,
        upstream_url: str,
        *,
        seed: int = 0,
        faults: FaultConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        upstream_timeout: float = 60.0,
        linger_timeout: float = 1.0,
    ) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ConfigurationError("upstream_url", "an http:// or https:// URL without a path", upstream_url)
        self.upstream_url = upstream_url
        self.host = host
        self._upstream_https = parts.scheme == "https"
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port or (443 if self._upstream_https else 80)
        self._upstream_timeout = upstream_timeout
        self._linger_timeout = linger_timeout
        self._requested_port = port
        self._plan = FaultPlan(seed, faults)
        self._counters = Counters()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._connections: set[socket.socket] = set()
        self._connections_changed = threading.Condition()

    # -- lifecycle

    def start(self) -> ChaosProxy:
        """Start serving (idempotent); returns self."""
        with self._lock:
            if self._server is not None:
                return self
            self._stopping.clear()
            server = _ProxyServer((self.host, self._requested_port), self)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="s3pool-chaos-proxy", daemon=True
            )
            thread.start()
            self._server, self._thread, self._port = server, thread, int(server.server_address[1])
            return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: close the port and every client connection, wait up to ``timeout`` s for handlers."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            self._port = None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._connections_changed:
            for sock in list(self._connections):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._connections_changed.wait_for(lambda: not self._connections, timeout=timeout)
        if thread is not None:
            thread.join(timeout=timeout)

    # -- faults

    @property
    def plan(self) -> FaultPlan:
        """The fault plan itself (the methods below delegate to it)."""
        return self._plan

    @property
    def faults(self) -> FaultConfig:
        """The current random-fault configuration."""
        return self._plan.config

    def configure(self, **changes: Any) -> FaultConfig:
        """Change fields of the :class:`~s3pool_plugins.testing.faults.FaultConfig`; returns the new one.

        For example ``configure(latency=Latency(0.02, tail_probability=0.01),
        error_rate=0.05, reset_rate=0.01)``; a number for ``latency`` is its
        median. Unknown names and bad values raise
        :class:`~s3pool_plugins.errors.ConfigurationError` and change nothing.
        """
        return self._plan.configure(**changes)

    def limit_prefix(
        self,
        prefix: str,
        *,
        reads_per_second: float | None = None,
        writes_per_second: float | None = None,
        burst: float | None = None,
    ) -> PrefixLimit:
        """Token-bucket rate limits for ``bucket/key`` names starting with ``prefix`` (see
        :meth:`FaultPlan.limit_prefix <s3pool_plugins.testing.faults.FaultPlan.limit_prefix>`).

        Requests over the limit are answered 503 ``SlowDown`` at once and never reach the upstream.
        """
        return self._plan.limit_prefix(
            prefix, reads_per_second=reads_per_second, writes_per_second=writes_per_second, burst=burst
        )

    def remove_limit(self, prefix: str) -> None:
        self._plan.remove_limit(prefix)

    def inject(self, action: Action, count: int = 1, *, latency: float | None = None) -> None:
        """Force ``action`` on the next ``count`` requests to arrive, whatever the rates and limits say.

        ``latency``: seconds each of them waits before it is forwarded (None: the configured latency's draw).
        """
        self._plan.inject(action, count, latency=latency)

    def clear_faults(self) -> None:
        """No latency, no random faults, no rate limits, nothing injected; counters stay."""
        self._plan.clear()

    def reseed(self, seed: int) -> None:
        """Restart the fault sequence from ``seed``, as if the proxy had just been created with it."""
        self._plan.reseed(seed)

    # -- counters

    def stats(self) -> ProxyStats:
        """A snapshot of the counters."""
        return self._counters.snapshot()

    def reset_counts(self) -> None:
        """Zero the counters (the in-flight peak restarts from what is in flight now)."""
        self._counters.reset()

    def wait_idle(self, timeout: float | None = 5.0) -> bool:
        """Wait until no request is in flight; False if ``timeout`` seconds passed first.

        A request is counted out just before the last write of its answer,
        but one the proxy abandons (a client that went away, a stop) only
        when its handler ends: call this before asserting on ``in_flight``.
        """
        return self._counters.wait_idle(timeout)

    # -- used by the handlers

    def _connection_opened(self, sock: socket.socket) -> None:
        with self._connections_changed:
            self._connections.add(sock)
        self._counters.connection_opened()

    def _connection_closed(self, sock: socket.socket) -> None:
        with self._connections_changed:
            self._connections.discard(sock)
            self._connections_changed.notify_all()

    def _new_upstream_connection(self) -> http.client.HTTPConnection:
        if self._upstream_https:
            return http.client.HTTPSConnection(self._upstream_host, self._upstream_port, timeout=self._upstream_timeout)
        return http.client.HTTPConnection(self._upstream_host, self._upstream_port, timeout=self._upstream_timeout)


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], proxy: ChaosProxy) -> None:
        self.proxy = proxy
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (OSError, http.client.HTTPException, _Abort)):
            return
        logger.exception("chaos proxy: unexpected error while serving %s", client_address)


class _Upstream:
    """One handler thread's connection to the upstream, reused while the upstream keeps it open."""

    def __init__(self, proxy: ChaosProxy) -> None:
        self._proxy = proxy
        self._connection: http.client.HTTPConnection | None = None

    def send(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> http.client.HTTPResponse:
        """Send one request and return the response (headers read, body not).

        A request that fails on a reused connection (the upstream closed it
        while idle) is sent once more on a new one.
        """
        for _ in range(2):
            if self._connection is None:
                self._connection = self._proxy._new_upstream_connection()
            connection = self._connection
            reused = connection.sock is not None
            try:
                connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    connection.putheader(name, value)
                connection.endheaders(body)
                return connection.getresponse()
            except (ConnectionError, http.client.BadStatusLine):
                self.close()
                if not reused:
                    raise
            except BaseException:
                self.close()
                raise
        raise ConnectionError("upstream closed the connection twice")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 300
    server: _ProxyServer

    def setup(self) -> None:
        super().setup()
        self._proxy = self.server.proxy
        self._counters = self._proxy._counters
        self._upstream = _Upstream(self._proxy)
        self._expect_continue = False
        self._was_reset = False
        self._linger: int | None = None
        self._proxy._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            if self._linger is not None and not self._was_reset:
                self._drain_before_close(self._linger)
            super().finish()
        except (OSError, ValueError):
            pass
        finally:
            self._upstream.close()
            self._proxy._connection_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_expect_100(self) -> bool:
        self._expect_continue = True
        return True

    def handle_one_request(self) -> None:
        self._expect_continue = False
        try:
            line = self.rfile.readline(65537)
        except (OSError, ValueError):
            self.close_connection = True
            return
        if not line:
            self.close_connection = True
            return
        self._counted_out = False
        self._counters.request_started()
        try:
            self.raw_requestline = line
            if len(line) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            if not self.parse_request():
                return
            self._serve()
        except (_Abort, OSError, ValueError, http.client.HTTPException):
            self.close_connection = True
        finally:
            self._count_out()

    def _count_out(self) -> None:
        """The request stops counting as in flight (once): just before the last write of its response.

        A client can only send its next request after that write arrived, so
        ``in_flight`` never counts a request the client already saw finished.
        """
        if not self._counted_out:
            self._counted_out = True
            self._counters.request_finished()

    def _write_last(self, data: bytes) -> None:
        """Write the last bytes of a response (counting the request out first)."""
        self._count_out()
        self.wfile.write(data)

    # -- one request

    def _serve(self) -> None:
        method = self.command
        resource = resource_of(self.headers.get("Host", ""), self.path)
        self._counters.request_parsed(method, resource)
        decision = self._proxy._plan.decide(method, resource)
        action, index, head = decision.action, decision.index, method == "HEAD"
        if action is Action.THROTTLE:
            self._counters.fault("throttled")
            self._refuse_before_body(SLOW_DOWN, index, head)
            return
        body = self._read_body()
        if decision.latency > 0 and self._proxy._stopping.wait(decision.latency):
            raise _Abort
        if action is Action.RESET:
            self._reset()
            return
        if action is Action.INTERNAL_ERROR:
            self._counters.fault("internal_errors")
            self._send_s3_error(INTERNAL_ERROR, index, head)
            return
        try:
            response = self._upstream.send(method, self._origin_target(), self._upstream_headers(body), body)
        except (OSError, http.client.HTTPException):
            self._counters.fault("upstream_errors")
            self._send_s3_error(BAD_GATEWAY, index, head)
            return
        try:
            if action is Action.RESET_AFTER:
                response.read()
                self._reset()
            elif action is Action.INTERNAL_ERROR_AFTER:
                response.read()
                self._counters.fault("internal_errors")
                self._send_s3_error(INTERNAL_ERROR, index, head)
            else:
                self._relay(response, action, head)
        finally:
            if not response.isclosed():
                self._upstream.close()

    def _origin_target(self) -> str:
        if self.path.startswith(("http://", "https://")):
            parts = urlsplit(self.path)
            return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return self.path

    def _upstream_headers(self, body: bytes | None) -> list[tuple[str, str]]:
        drop = set(_HOP_BY_HOP)
        for value in self.headers.get_all("Connection", []):
            drop.update(token.strip().lower() for token in value.split(","))
        headers = [(name, value) for name, value in self.headers.items() if name.lower() not in drop]
        if body is not None and self._is_chunked():
            headers.append(("Content-Length", str(len(body))))
        return headers

    # -- request bodies

    def _is_chunked(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def _content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        length = int(value)
        if length < 0:
            raise ValueError("negative Content-Length")
        return length

    def _has_body(self) -> bool:
        return self._is_chunked() or bool(self._content_length())

    def _read_body(self) -> bytes | None:
        """The request body (``None`` if the request has none), after ``100 Continue`` if asked for."""
        if self._expect_continue:
            self._expect_continue = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self._is_chunked():
            return self._read_chunked()
        length = self._content_length()
        if length is None:
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            raise _Abort
        return body

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise _Abort
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            chunk = self.rfile.read(size + 2)
            if len(chunk) < size + 2:
                raise _Abort
            parts.append(chunk[:size])

    def _refuse_before_body(self, error: S3Error, index: int, head: bool) -> None:
        """Answer ``error`` without forwarding; before the body if the client waits for 100-continue."""
        if self._expect_continue and self._has_body():
            self.close_connection = True
            self._linger = -1 if self._is_chunked() else self._content_length()
        elif self._has_body():
            self._read_body()
        self._send_s3_error(error, index, head)

    def _drain_before_close(self, length: int | None) -> None:
        """Half-close, then read and discard what the client still sends (bounded in time and size)."""
        sock = self.connection
        sock.shutdown(socket.SHUT_WR)
        remaining = _MAX_LINGER_BYTES if length is None or length < 0 else length
        deadline = time.monotonic() + self._proxy._linger_timeout
        while remaining > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            sock.settimeout(left)
            data = self.rfile.read1(min(_COPY_CHUNK, remaining))
            if not data:
                return
            remaining -= len(data)

    # -- responses

    def _send_s3_error(self, error: S3Error, index: int, head: bool) -> None:
        self._counters.responded(error.status)
        self._write_last(error_response(error, index, head=head, close=self.close_connection))

    def _reset(self) -> None:
        """Close the client connection abruptly: SO_LINGER 0 makes the close send a TCP RST."""
        self._counters.fault("resets")
        self._was_reset = True
        self.close_connection = True
        self._count_out()
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        sock.close()
        self.rfile.close()  # drops the last reference to the descriptor: the RST goes out now

    def _head_bytes(self, status: int, reason: str, headers: list[tuple[str, str]]) -> bytes:
        if self.close_connection:
            headers.append(("Connection", "close"))
        elif self.request_version == "HTTP/1.0":
            headers.append(("Connection", "keep-alive"))
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _relay(self, response: http.client.HTTPResponse, action: Action, head: bool) -> None:
        status = response.status
        headers = [(name, value) for name, value in response.getheaders() if name.lower() not in _HOP_BY_HOP]
        bodiless = head or 100 <= status < 200 or status in (204, 304)
        write = self.wfile.write
        if bodiless:
            response.read()
            self._counters.responded(status)
            self._write_last(self._head_bytes(status, response.reason, headers))
            return
        if action is Action.TRUNCATE:
            data = response.read()
            if data:
                headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
                headers.append(("Content-Length", str(len(data))))
                self.close_connection = True
                self._counters.fault("truncated")
                self._counters.responded(status)
                self._write_last(
                    self._head_bytes(status, response.reason, headers) + data[: int(len(data) * self._fraction())]
                )
                return
            action = Action.FORWARD
        length = response.length  # None: chunked or close-delimited upstream
        chunked = False
        if length is None:
            if self.request_version >= "HTTP/1.1":
                chunked = True
                headers.append(("Transfer-Encoding", "chunked"))
            else:
                self.close_connection = True
        head_bytes = self._head_bytes(status, response.reason, headers)
        self._counters.responded(status)
        config = self._proxy._plan.config
        cap = config.bandwidth_per_connection
        if action is Action.SLOW_BODY and length != 0:  # nothing to trickle: the head is the last write
            self._counters.fault("slow_bodies")
            write(head_bytes)
            rate = config.slow_body_bytes_per_second
            self._trickle(response, chunked, rate if cap is None else min(rate, cap))
        elif cap is not None and length != 0:
            write(head_bytes)
            self._trickle(response, chunked, cap)
        elif length is not None and length <= _SMALL_BODY:
            self._write_last(head_bytes + response.read())
        else:
            write(head_bytes)
            chunk = response.read1(_COPY_CHUNK)
            while chunk:
                following = response.read1(_COPY_CHUNK)
                if chunked:
                    write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                elif following:
                    write(chunk)
                else:
                    self._write_last(chunk)
                chunk = following
        if chunked:
            self._write_last(b"0\r\n\r\n")

    def _fraction(self) -> float:
        return self._proxy._plan.config.truncate_fraction

    def _trickle(self, response: http.client.HTTPResponse, chunked: bool, rate: float) -> None:
        """Send the body at ``rate`` bytes per second, in pieces of a twentieth of a second."""
        piece = max(1, int(rate / 20))
        start, sent = time.monotonic(), 0
        chunk = response.read1(_COPY_CHUNK)
        while chunk:
            following = response.read1(_COPY_CHUNK)
            for offset in range(0, len(chunk), piece):
                part = chunk[offset : offset + piece]
                delay = start + sent / rate - time.monotonic()
                if delay > 0 and self._proxy._stopping.wait(delay):
                    raise _Abort
                if chunked:
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(part), part))
                elif following or offset + piece < len(chunk):
                    self.wfile.write(part)
                else:
                    self._write_last(part)
                sent += len(part)
            chunk = following
