"""The event handlers that put each S3 API call of one client under a pool.

One :class:`ClientHandlers` serves every client installed with the same pool
and options. Per call (botocore's ``request_context`` dict carries the call):

- ``before-call`` (registered last, on clients installed one by one): the
  call becomes a pool task (:meth:`OperationsPool.begin_call`). A pooled
  client class (see :mod:`.mixins`) begins the task itself and keeps it in a
  context variable for the duration of the call; its handlers read it there
  and need no ``before-call``.
- ``request-created`` (registered first, so before botocore signs): each
  attempt waits for a slot by priority. A request that waited in our queue
  after it was signed could fail with ``RequestTimeTooSkewed``.
- ``needs-retry`` (registered first; botocore's own retry handler,
  ``retry-config-s3``, is removed): the attempt gives its slot back and the
  pool's policy and budget decide whether and when to retry. botocore sleeps
  the returned delay, holding no slot, then creates the next attempt.
- ``after-call`` / ``after-call-error`` (registered first, so another
  handler that raises cannot skip them): the task settles.

Events alone cannot see every end of a call (``asyncio.CancelledError``, an
error in another ``before-call`` handler), so a call begun here is also
settled when botocore's request context is dropped. Clients made by an
installed session get a real ``try/finally`` from the pooled client class.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import weakref
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, cast
from urllib.parse import urlsplit

from ...core.base import _add_note
from ...core.calls import Call
from ...core.context import SlotHolder, enter_slot, exit_slot, validate_priority, validate_tenant
from ...core.leases import SlotLease
from ...core.pool import OperationsPool
from ...core.retry import RetryPolicy
from ...core.validation import seconds
from ...errors import S3PoolError
from .bodies import BODY_IDLE_TIMEOUT, cover, flow_body_slot, share_in_flow, streamed_member
from .caller_retries import client_policy
from .classify import response_error, s3_retry_policy
from .connections import warn_if_too_small
from .hedge import HedgedSend, http_session_of
from .redact import for_hooks, result_for_hooks

log = logging.getLogger("s3pool_plugins.botocore")

CALL_KEY = "s3pool_call"
"""Where the call lives in botocore's request context."""
_GUARD_KEY = "s3pool_guard"
_TASK_KEY = "s3pool_task_callback"
_PARAMS_KEY = "s3pool_params"

_current_call: ContextVar[Call | None] = ContextVar("s3pool_current_call", default=None)
"""The call a pooled client class is making in this context (calls nest: the innermost)."""

BOTOCORE_RETRY_HANDLER_ID = "retry-config-{service}"

_HEDGE_ID = "s3pool-hedge"


def _call_of_request(request: Any) -> Call | None:
    """The call a prepared request is an attempt of: in its request context (clients installed one by one),
    else the pooled client class's current call."""
    context = getattr(request, "context", None)
    call = context.get(CALL_KEY) if isinstance(context, dict) else None
    return call if isinstance(call, Call) else _current_call.get()


_thread_attempt = threading.local()
"""``.call``: a weak reference to the events-only call whose attempt last started on this thread (sync
clients); weak, so that a thread does not keep its last call's pool alive."""
_task_attempt: weakref.WeakKeyDictionary[asyncio.Task[Any], Call] = weakref.WeakKeyDictionary()
"""The events-only call whose attempt last started in each asyncio task (async clients)."""


def _attempt_slot(pool: OperationsPool, is_async: bool) -> SlotHolder | None:
    """The slot of ``pool`` held by an events-only call attempting in this flow of control, if any.

    Events-only calls change no context variable, so a call made while one of them holds a slot for
    its attempt (botocore's S3 Express ``CreateSession``, made while the outer request is signed) is
    found here instead. An entry left by an ended attempt holds no slot (``Call.slot_holder`` is None).
    """
    ref: weakref.ref[Call] | None = getattr(_thread_attempt, "call", None)
    call = None if ref is None else ref()
    holder = None if call is None else call.slot_holder
    if (holder is None or holder.pool is not pool) and is_async:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop: a sync client of handlers shared with async ones
            task = None
        call = None if task is None else _task_attempt.get(task)
        holder = None if call is None else call.slot_holder
    return holder if holder is not None and holder.pool is pool else None


class CallAbandoned(S3PoolError):
    """The call ended without botocore reporting how (cancelled, or an error outside its endpoint)."""


def _settle_abandoned(call: Call, error: BaseException | None = None) -> None:
    if not call.finished:
        call.finish(error or CallAbandoned(f"{call.task.name} ended without a response or an error from botocore"))


_abandoned: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
_settler_lock = threading.RLock()
"""Reentrant: a finalizer that the collector runs while this thread starts the settler comes back in."""
_settler: threading.Thread | None = None
_settler_starting = False


def _settle_abandoned_calls() -> None:
    while True:
        settle = _abandoned.get()
        try:
            settle()
        except BaseException:  # on this thread anything, even SystemExit, would only end it: log and go on
            log.exception("could not settle %r", settle)


def _hand_over(call: Call, error: BaseException | None = None) -> None:
    """Settle an abandoned ``call`` on the one settler thread.

    Both ways of noticing an abandoned call (its context dropped, its asyncio
    task done) come here, so they never settle the same call at once; and a
    finalizer, which may run inside any lock, never settles anything itself.
    """
    settle_later(functools.partial(_settle_abandoned, call, error))


def settle_later(settle: Callable[[], object]) -> None:
    """Run ``settle()`` on the one settler thread: safe from a finalizer, which must take no lock itself."""
    _abandoned.put(settle)  # SimpleQueue.put is safe from __del__ (reentrant)
    if _settler is None:
        _start_settler()


def release_later(lease: SlotLease) -> None:
    """Release ``lease`` on the settler thread (for the finalizer of a streamed body nobody consumed)."""
    settle_later(lease.release)


def _start_settler() -> None:
    """Start the one settler thread, once (also when re-entered from a finalizer while starting it)."""
    global _settler, _settler_starting
    with _settler_lock:
        if _settler is not None or _settler_starting:
            return  # started, or being started further up this thread's stack: it will take the call
        _settler_starting = True
        try:
            thread = threading.Thread(target=_settle_abandoned_calls, name="s3pool-abandoned-calls", daemon=True)
            thread.start()
            _settler = thread
        finally:
            _settler_starting = False


class _ContextGuard:
    """Lives exactly as long as botocore's request context of one call; hands the call over if still open."""

    __slots__ = ("call",)

    def __init__(self, call: Call) -> None:
        self.call = call

    def __del__(self) -> None:
        if not self.call.finished:
            _hand_over(self.call)


def _settle_with_task(call: Call, task: asyncio.Task[Any]) -> None:
    """Done-callback of the asyncio task that made an async call: hand the call over if it is still open."""
    if not call.finished:
        cancelled = task.cancelled()
        _hand_over(
            call, asyncio.CancelledError(f"the task that made {call.task.name} was cancelled") if cancelled else None
        )


def endpoint_host(client: Any) -> str | None:
    """The host of ``client``'s endpoint URL (what spans call ``server.address``)."""
    url = getattr(client.meta, "endpoint_url", None)
    return urlsplit(url).hostname if url else None


enter_call = _current_call.set
"""``enter_call(call)``: make ``call`` the pooled class's current call here; returns a token for :func:`leave_call`."""
leave_call = _current_call.reset
"""``leave_call(token)``: undo :func:`enter_call`."""


def _succeeded(response: Any, caught_exception: BaseException | None) -> bool:
    """True at ``needs-retry`` after an attempt that succeeded (no exception, a status below 300, no error).

    The common case: the call settles right after it (``after-call``, or the pooled class), and
    that settling gives the slot back together with the end of the task, in one critical section.
    """
    return (
        caught_exception is None
        and response is not None
        and response[0].status_code < 300
        and "Error" not in response[1]
    )


class ClientHandlers:
    """The handlers of every client installed with one pool and one set of options.

    ``body_idle_timeout``: seconds a streamed result (GetObject's ``Body``)
    may go unread before its call's slot goes back (see :mod:`.bodies`).
    ``priorities`` maps operation names (``"GetObject"``) to the priority a
    call gets when neither a priority scope nor a ``s3pool_task_priority``
    hook chose one. ``tenant`` names the tenant every call counts for unless a
    tenant scope is active when the call is made. The pool's retry policy gets
    the S3 classification rules (:func:`~.classify.s3_retry_policy`), and the
    retries of each client (:meth:`policy_for`).
    """

    def __init__(
        self,
        pool: OperationsPool,
        priorities: Mapping[str, float] | None = None,
        tenant: str | None = None,
        body_idle_timeout: float = BODY_IDLE_TIMEOUT,
    ) -> None:
        self.pool = pool
        self.body_idle_timeout = cast(float, seconds("body_idle_timeout", body_idle_timeout))
        self._streamed: dict[str, tuple[str, bool] | None] = {}
        self._idle_warned = False
        self.tenant = None if tenant is None else validate_tenant(tenant)
        checked = {}
        for operation, priority in dict(priorities or {}).items():
            checked[operation] = validate_priority(priority, f"priorities[{operation!r}]")
        self.priorities: Mapping[str, float] = MappingProxyType(checked)
        self.policy = s3_retry_policy(pool.retry_policy)
        self._partitioned = pool.auto_tuning is not None
        self.is_async = False
        self.server_address: str | None = None
        """The endpoint's host of the one client these handlers were installed on, if so."""

    def policy_for(self, client: Any, *, stacklevel: int = 4) -> RetryPolicy:
        """The retry policy of ``client``'s calls: the pool's, with the retries the client's caller asked
        of botocore unless the pool's were chosen (see :mod:`.caller_retries`)."""
        return client_policy(self.policy, self.pool, client, stacklevel=stacklevel)

    def adopt_client(self, client: Any) -> None:
        """Serve the one ``client`` these handlers were installed on: its endpoint's host and its retries."""
        self.server_address = endpoint_host(client)
        self.policy = self.policy_for(client, stacklevel=5)

    def begin(
        self,
        operation_name: str,
        params: Mapping[str, Any] | None,
        region: str | None = None,
        server_address: str | None = None,
        contextual: bool = True,
        retry_policy: RetryPolicy | None = None,
    ) -> Call:
        """A new pool task for one API call.

        Its metadata (what hooks and spans see) holds ``service``,
        ``operation``, ``bucket`` and ``key`` from the parameters (nothing
        else of them: they can carry SSE-C keys), ``region`` and
        ``server_address`` (the endpoint's host) when known.
        ``retry_policy``: the client's (:meth:`policy_for`); by default these
        handlers' own.
        """
        metadata: dict[str, Any] = {"service": "s3", "operation": operation_name}
        if region:
            metadata["region"] = region
        server_address = server_address or self.server_address
        if server_address:
            metadata["server_address"] = server_address
        if params:
            bucket, key = params.get("Bucket"), params.get("Key")
            if isinstance(bucket, str):
                metadata["bucket"] = bucket
            if isinstance(key, str):
                metadata["key"] = key
        partition = None
        if self._partitioned and "bucket" in metadata:
            prefix = params.get("Prefix") if params else None
            partition = self.pool.partition_for(
                metadata["bucket"], metadata.get("key") or (prefix if isinstance(prefix, str) else None)
            )
        # A call made while this flow holds an unread body of the pool runs under that body's slot.
        body_slot = flow_body_slot(self.pool)
        token = enter_slot(body_slot) if body_slot is not None else None
        try:
            return self.pool.begin_call(
                f"S3.{operation_name}",
                fallback_priority=self.priorities.get(operation_name),
                fallback_tenant=self.tenant,
                retry_policy=retry_policy or self.policy,
                metadata=metadata,
                contextual=contextual,
                partition=partition,
            )
        finally:
            if token is not None:
                exit_slot(token)

    def settle_success(self, call: Call, name: str, model: Callable[[], Any], result: Any) -> None:
        """Settle ``call``, which returned ``result``: a streamed member of ``result`` keeps the call's slot.

        ``name`` is the operation's; ``model()`` returns its botocore
        ``OperationModel`` (asked once per operation name). Runs while the
        call's last attempt still holds its slot. The streamed member (if any)
        is replaced in ``result`` by its proxy (see :mod:`.bodies`) once the
        call settled. Should keeping the slot fail, the call still settles
        and the body is handed back uncovered (logged).
        """
        try:
            put_proxy = self._keep_body_slot(call, name, model, result)
        except Exception:
            log.exception("could not keep the slot of %s for its streamed result; it streams uncovered", name)
            put_proxy = None
        except BaseException as error:
            call.finish(for_hooks(error))
            raise
        try:
            call.finish(None, result_for_hooks(result))
        finally:
            if put_proxy is not None:
                put_proxy()

    def _keep_body_slot(
        self, call: Call, name: str, model: Callable[[], Any], result: Any
    ) -> Callable[[], None] | None:
        """The step that puts the streamed member's proxy in ``result`` (None: nothing streams)."""
        try:
            found = self._streamed[name]
        except KeyError:
            found = self._streamed[name] = streamed_member(model())
        if found is None or not isinstance(result, dict):
            return None
        member, events = found
        value = result.get(member)
        if value is None:
            return None
        lease = call.keep_slot(self.body_idle_timeout, functools.partial(self._body_idle, name))
        if lease is None:
            return None
        length = result.get("ContentLength")

        def put_proxy() -> None:
            try:
                result[member] = cover(value, lease, events, length, release_later)
            except BaseException:
                lease.release()
                raise
            if lease.own:  # calls this flow makes while it holds the unread body run under the body's slot
                share_in_flow(lease)

        return put_proxy

    def _body_idle(self, operation: str, lease: SlotLease) -> None:
        """A streamed result went unread for the idle bound and gave its slot back: say so, once."""
        if not self._idle_warned:
            self._idle_warned = True
            log.warning(
                "a streamed %s result was not read for %g s: its slot went back to the pool. Read such bodies "
                "to the end or close them; stats().leases_reclaimed counts these (logged once per installation)",
                operation,
                self.body_idle_timeout,
            )

    def check_connections(self, client: Any) -> bool:
        """Warn if ``client`` has fewer HTTP connections than the pool's limit; True if it warned."""
        return warn_if_too_small(client, self.pool.concurrency, stacklevel=4)

    # -- handlers ---------------------------------------------------------
    # Clients installed one by one find their call in botocore's request context; clients of a
    # pooled class (which begin and settle each call themselves) find it in ``_current_call``.

    def before_parameter_build(self, params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        """Keep the call's bucket, key and prefix (nothing else of its parameters) for ``before-call``."""
        kept = {}
        for name in ("Bucket", "Key", "Prefix"):
            value = params.get(name)
            if isinstance(value, str):
                kept[name] = value
        context[_PARAMS_KEY] = kept

    def before_call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if CALL_KEY in context:
            return
        # An events-only client cannot be sure to end the call in this context (no try/finally around
        # it): the call changes no context variable. botocore's ``params`` here is the serialized request;
        # the API parameters were kept by ``before-parameter-build``.
        params = context.pop(_PARAMS_KEY, None)
        # A call made while another events-only call of this flow holds a slot for its attempt (botocore's
        # S3 Express CreateSession, made while the outer request is signed) runs under that slot.
        holder = _attempt_slot(self.pool, self.is_async)
        token = enter_slot(holder) if holder is not None else None
        try:
            call = self.begin(model.name, params, region=context.get("client_region"), contextual=False)
        finally:
            if token is not None:
                exit_slot(token)
        # Settle the call if it ends unseen by events: when its context is dropped, or its asyncio task ends.
        context[_GUARD_KEY] = _ContextGuard(call)
        if self.is_async:
            self._watch_task(call, context)
        context[CALL_KEY] = call

    @staticmethod
    def _watch_task(call: Call, context: dict[str, Any]) -> None:
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        if task is not None:
            callback = functools.partial(_settle_with_task, call)
            task.add_done_callback(callback)
            context[_TASK_KEY] = (task, callback)

    @staticmethod
    def _unwatch_task(watched: tuple[asyncio.Task[Any], Callable[..., Any]]) -> None:
        task, callback = watched
        task.remove_done_callback(callback)

    def request_created(self, request: Any, **_: Any) -> None:
        call = request.context.get(CALL_KEY)
        if call is not None and not call.finished:
            call.start_attempt()
            if not call.nested:  # a nested call's slot is its parent's: the outer entry stays for its siblings
                _thread_attempt.call = weakref.ref(call)

    async def request_created_async(self, request: Any, **_: Any) -> None:
        call = request.context.get(CALL_KEY)
        if call is not None and not call.finished:
            await call.start_attempt_async()
            task = asyncio.current_task()
            if task is not None and not call.nested:
                _task_attempt[task] = call

    def request_created_pooled(self, **_: Any) -> None:
        call = _current_call.get()
        if call is not None and not call.finished:
            call.start_attempt()

    async def request_created_pooled_async(self, **_: Any) -> None:
        call = _current_call.get()
        if call is not None and not call.finished:
            await call.start_attempt_async()

    def needs_retry(
        self,
        response: Any = None,
        caught_exception: BaseException | None = None,
        request_dict: Mapping[str, Any] | None = None,
        operation: Any = None,
        **_: Any,
    ) -> float | None:
        if _succeeded(response, caught_exception):
            return None  # after-call settles the call (and gives its slot back) in a moment
        call = request_dict["context"].get(CALL_KEY) if request_dict else None
        if call is None or call.finished:
            return None
        return self._retry_after(call, response, caught_exception, operation)

    def needs_retry_pooled(
        self, response: Any = None, caught_exception: BaseException | None = None, operation: Any = None, **_: Any
    ) -> float | None:
        if _succeeded(response, caught_exception):
            return None  # the pooled class settles the call (and gives its slot back) in a moment
        call = _current_call.get()
        if call is None or call.finished:
            return None
        return self._retry_after(call, response, caught_exception, operation)

    @staticmethod
    def _retry_after(call: Call, response: Any, caught_exception: BaseException | None, operation: Any) -> float | None:
        """After an attempt that did not succeed: end it; None if the call is done with attempts, else the
        seconds to wait before the next. (A success is left to the call's settling, which gives the slot
        back together with the end of the task: one critical section instead of two.)"""
        error = caught_exception
        if error is None:
            error = response_error(getattr(operation, "name", call.task.name), response)
        if error is None:
            call.end_attempt()
            return None
        shown = for_hooks(error)
        delay = call.retry_delay(shown)
        for note in getattr(shown, "__notes__", ()) if shown is not error else ():
            _add_note(error, note)  # botocore raises the original: it keeps the pool's notes
        if call.gave_up == "attempts" and response is not None:
            # botocore then says "(reached max retries: N)" in the ClientError, as its own retries do.
            metadata = response[1].get("ResponseMetadata") if isinstance(response[1], dict) else None
            if isinstance(metadata, dict):
                metadata["MaxAttemptsReached"] = True
        return delay

    def after_call(self, http_response: Any, parsed: Any, model: Any, context: dict[str, Any], **_: Any) -> None:
        call = context.get(CALL_KEY)
        if call is None:
            return
        if _TASK_KEY in context:
            self._unwatch_task(context.pop(_TASK_KEY))
        if http_response.status_code < 300 and "Error" not in parsed:
            self.settle_success(call, model.name, lambda: model, parsed)
        else:
            call.finish(response_error(model.name, (http_response, parsed)), parsed)

    def after_call_error(self, exception: BaseException, context: dict[str, Any], **_: Any) -> None:
        call = context.get(CALL_KEY)
        if call is None:
            return
        if _TASK_KEY in context:
            self._unwatch_task(context.pop(_TASK_KEY))
        call.finish(for_hooks(exception))

    # -- registration -----------------------------------------------------

    def register(
        self, emitter: Any, service: str, is_async: bool, *, settled_by_class: bool = False, client: Any = None
    ) -> None:
        """Register the handlers on a client's event ``emitter`` (idempotent per unique id).

        ``settled_by_class``: the client's class begins and settles each call
        (a pooled client class), so only ``request-created`` and
        ``needs-retry`` are needed, and they read the call from the context
        variable the class sets. ``client``: the client of ``emitter``; with
        the pool's ``hedge`` option its hedged reads are sent through its
        HTTP session (see :mod:`.hedge`).
        """
        self.is_async = self.is_async or is_async
        emitter.unregister(f"needs-retry.{service}", unique_id=BOTOCORE_RETRY_HANDLER_ID.format(service=service))
        for event, handler, where in self._handlers(is_async, settled_by_class):
            add: Callable[..., None] = emitter.register_first if where == "first" else emitter.register_last
            add(f"{event}.{service}", handler, unique_id=f"s3pool-{event}")
        hedging = self.pool.hedging
        session = None if client is None or hedging is None else http_session_of(client)
        if hedging is not None and session is not None:
            sender = HedgedSend(hedging, session, _call_of_request)
            for event in HedgedSend.events(service):
                emitter.register_last(
                    event, sender.send_async if is_async else sender.send, unique_id=f"{_HEDGE_ID}-{event}"
                )

    def unregister(self, emitter: Any, service: str) -> None:
        """Remove the handlers :meth:`register` added."""
        for event, _handler, _where in self._handlers(False, False):
            emitter.unregister(f"{event}.{service}", unique_id=f"s3pool-{event}")
        for event in HedgedSend.events(service):
            emitter.unregister(event, unique_id=f"{_HEDGE_ID}-{event}")

    def _handlers(self, is_async: bool, settled_by_class: bool) -> list[tuple[str, Callable[..., Any], str]]:
        if settled_by_class:
            created = self.request_created_pooled_async if is_async else self.request_created_pooled
            return [("request-created", created, "first"), ("needs-retry", self.needs_retry_pooled, "first")]
        return [
            ("before-parameter-build", self.before_parameter_build, "last"),
            ("before-call", self.before_call, "last"),
            ("request-created", self.request_created_async if is_async else self.request_created, "first"),
            ("needs-retry", self.needs_retry, "first"),
            ("after-call", self.after_call, "first"),
            ("after-call-error", self.after_call_error, "first"),
        ]
