"""Client classes with a real ``try/finally`` around every API call.

botocore's ``creating-client-class`` event (documented by boto3 for adding
methods to clients) lets an installed session add a base class to each
client class it creates. The base class here only wraps ``_make_api_call``
in ``try/finally``: the pool task of every call settles however the call
ends, also on ``asyncio.CancelledError``, ``KeyboardInterrupt`` or an
exception from some other library's ``before-call`` handler, none of which
botocore's events report. While the call runs it is the context's current
call (:func:`~.handlers.enter_call`), where the client's ``request-created``
and ``needs-retry`` handlers find it; a call made inside another (botocore's
region redirector, for one) is current until it returns. Nothing of botocore
is replaced.

The class attribute ``_s3pool_handlers`` (a :class:`ClientHandlers`) is set
by the ``creating-client-class`` handler of :func:`~.install.install`.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from ...core.base import _add_note
from ...core.calls import Call
from ...core.retry import RetryPolicy
from .handlers import BOTOCORE_RETRY_HANDLER_ID, ClientHandlers, endpoint_host, enter_call, leave_call
from .redact import for_hooks


def _attach_notes(call: Call, error: BaseException) -> None:
    """Carry the pool's notes (why it stopped retrying) over to botocore's own ClientError."""
    seen = call.task.last_error
    notes = getattr(seen, "__notes__", None)
    if notes and isinstance(error, ClientError) and seen is not error:
        for note in notes:
            _add_note(error, note)


class _PooledClient:
    _s3pool_handlers: ClientHandlers
    meta: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        handlers = type(self)._s3pool_handlers
        handlers.register(self.meta.events, "s3", is_async=self._s3pool_async, settled_by_class=True, client=self)
        handlers.check_connections(self)
        self._s3pool_own_retries_removed = False
        self._s3pool_server = endpoint_host(self)
        self._s3pool_region = self.meta.region_name
        self._s3pool_policy: tuple[ClientHandlers, RetryPolicy] | None = None

    _s3pool_async = False

    def _s3pool_begin(self, operation_name: str, api_params: Any) -> Call:
        handlers = self._s3pool_handlers
        if not self._s3pool_own_retries_removed:
            # botocore registers its retry handler after the client object is built: remove it on first use.
            self.meta.events.unregister("needs-retry.s3", unique_id=BOTOCORE_RETRY_HANDLER_ID.format(service="s3"))
            self._s3pool_own_retries_removed = True
        if self._s3pool_policy is None or self._s3pool_policy[0] is not handlers:
            # This client's retries (its config settled by now), for the handlers in force (install() may swap them).
            self._s3pool_policy = (handlers, handlers.policy_for(self, stacklevel=6))
        policy = self._s3pool_policy[1]
        return handlers.begin(operation_name, api_params, self._s3pool_region, self._s3pool_server, retry_policy=policy)

    def _s3pool_settle(self, call: Call, operation_name: str, result: Any) -> None:
        """Settle a call that returned ``result`` (see :meth:`ClientHandlers.settle_success`)."""
        service_model = self.meta.service_model
        self._s3pool_handlers.settle_success(
            call, operation_name, lambda: service_model.operation_model(operation_name), result
        )


class PooledClientMixin(_PooledClient):
    """Base class added to sync botocore S3 clients made by an installed session."""

    def _make_api_call(self, operation_name: str, api_params: Any) -> Any:
        call = self._s3pool_begin(operation_name, api_params)
        token = enter_call(call)
        try:
            result = super()._make_api_call(operation_name, api_params)  # type: ignore[misc]
        except BaseException as error:
            _attach_notes(call, error)
            call.finish(for_hooks(error))
            raise
        finally:
            leave_call(token)
        self._s3pool_settle(call, operation_name, result)
        return result


class AsyncPooledClientMixin(_PooledClient):
    """Base class added to aiobotocore S3 clients made by an installed ``AioSession``."""

    _s3pool_async = True

    async def _make_api_call(self, operation_name: str, api_params: Any) -> Any:
        call = self._s3pool_begin(operation_name, api_params)
        token = enter_call(call)
        try:
            result = await super()._make_api_call(operation_name, api_params)  # type: ignore[misc]
        except BaseException as error:
            _attach_notes(call, error)
            call.finish(for_hooks(error))
            raise
        finally:
            try:
                leave_call(token)
            except ValueError:  # closed by the garbage collector in another context: nothing of ours is set there
                pass
        self._s3pool_settle(call, operation_name, result)
        return result
