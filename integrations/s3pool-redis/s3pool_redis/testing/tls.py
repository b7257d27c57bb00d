"""A TLS-terminating forwarder, so that ``rediss://`` is tested for real against a server built without TLS.

:class:`TLSForwarder` accepts TLS connections on a free loopback port, with
a certificate issued by a throwaway CA (``trustme``), and forwards the
plain bytes to an upstream TCP address. With ``require_client_cert`` it asks
clients for a certificate of the same CA (mutual TLS). The CA and the
client's certificate and key are written to files, as a user would hand
them to ``ssl_ca_certs``, ``ssl_certfile`` and ``ssl_keyfile``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from types import TracebackType

_CHUNK = 65536


class TLSForwarder:
    """TLS on ``host``:``port`` in front of plain TCP at ``upstream``; start/stop or use as a context manager."""

    def __init__(
        self, upstream: tuple[str, int], *, host: str = "127.0.0.1", require_client_cert: bool = False
    ) -> None:
        self.upstream = upstream
        self.host = host
        self.require_client_cert = require_client_cert
        import trustme  # the test extra; imported here so that the pytest plugin loads without it

        self._ca = trustme.CA()
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.ca_path = ""
        """PEM file of the CA that issued the server's certificate (for ``ssl_ca_certs``)."""
        self.client_cert_path = ""
        """PEM file of a client certificate the forwarder accepts (for ``ssl_certfile``)."""
        self.client_key_path = ""
        """PEM file of that certificate's private key (for ``ssl_keyfile``)."""

    def start(self) -> TLSForwarder:
        """Listen on a free port and forward every accepted connection; returns ``self``."""
        self._dir = tempfile.TemporaryDirectory(prefix="s3pool-redis-tls-")
        folder = Path(self._dir.name)
        self.ca_path = str(folder / "ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_path)
        client = self._ca.issue_cert("s3pool-redis-test-client")
        self.client_cert_path = str(folder / "client.pem")
        self.client_key_path = str(folder / "client.key")
        client.cert_chain_pems[0].write_to_path(self.client_cert_path)
        client.private_key_pem.write_to_path(self.client_key_path)

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(self.host, "localhost").configure_cert(context)
        if self.require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            self._ca.configure_trust(context)
        self._context = context

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        self._spawn(self._accept_loop)
        return self

    @property
    def port(self) -> int:
        """The TLS port."""
        if self._listener is None:
            raise RuntimeError("the TLS forwarder is not running; call start() first")
        port: int = self._listener.getsockname()[1]
        return port

    def stop(self) -> None:
        """Stop listening, close every forwarded connection and remove the certificate files. Idempotent."""
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            _close(sock)
        for thread in self._threads:
            thread.join(5)
        self._threads.clear()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> TLSForwarder:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="s3pool-redis-tls")  # type: ignore[arg-type]
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            listener = self._listener
            if listener is None:
                return
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve, raw)

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10.0)
        try:
            secure = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            _close(raw)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5.0)
        except OSError:
            _close(secure)
            return
        secure.settimeout(None)
        upstream.settimeout(None)
        with self._lock:
            self._open.update((secure, upstream))
        self._spawn(self._pump, upstream, secure)
        self._pump(secure, upstream)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                sink.sendall(data)
        except (OSError, ssl.SSLError):
            pass
        finally:
            for sock in (source, sink):
                _close(sock)
                with self._lock:
                    self._open.discard(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
