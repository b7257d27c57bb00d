"""What LocalS3 and ChaosProxy share: an HTTP server on a loopback address, started and stopped."""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar

_S = TypeVar("_S", bound="LoopbackServer")


class LoopbackServer:
    """``running``, ``port``, ``endpoint_url`` and the context manager, for a server with ``start``/``stop``.

    Subclasses set ``host``, and ``_server`` and ``_port`` while running.
    """

    host: str
    _server: Any
    _port: int | None

    def start(self: _S) -> _S:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port served on; raises ``RuntimeError`` before :meth:`start`."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        return self._port

    @property
    def endpoint_url(self) -> str:
        """``http://<host>:<port>``; raises ``RuntimeError`` before :meth:`start`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
