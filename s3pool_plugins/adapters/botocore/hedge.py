"""Hedged reads through botocore's ``before-send`` event (the pool's ``hedge`` option).

botocore emits ``before-send.s3.<Operation>`` with the signed, prepared
request just before its endpoint sends it, and uses a response a handler
returns instead of sending. That is the whole extension point: a
:class:`HedgedSend` registered there for the hedged reads (GetObject,
HeadObject, ListObjectsV2) sends the request itself through the client's
own HTTP session (``client._endpoint.http_session``, read, never replaced),
exactly as the endpoint would, and so can race a second copy of it:

- The first copy goes out at once and is timed to its response (the
  headers: a GetObject's body is not read here, so nothing is streamed
  twice). With no delay to wait (hedging blocked, nothing learned yet, a
  retry), the sync handler sends it on the caller's own thread.
- If it has no response after the delay (:meth:`Hedging.plan`), and the
  pool grants a hedge now (a free slot, a budget token, no throttling:
  :meth:`Hedging.try_hedge`), the same signed request is sent again; if
  not, it asks again after each further delay while the first copy runs
  (the slowest reads are the ones worth a token earned meanwhile). The
  first response wins and goes back to botocore. A failure (an error, or
  a server error's 5xx response) wins only if no copy is left in flight,
  so a fast failure never beats a slow success; a 503 seen there still
  quiets hedging of its partition.
- The loser is ended: async, its task is cancelled (aiohttp drops the
  connection); sync, a request in flight on another thread cannot be
  interrupted, so it runs to its response, which is then closed (its
  connection closed and given back empty to urllib3's pool). The hedge's
  slot goes back when the loser is over, so the pool's limit counts every
  request in flight.

Sync clients send on the caller's thread; racing needs a second thread, so
each hedged read with a delay to wait runs its copies on daemon helper
threads (in the caller's context) while the caller waits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ...core.calls import Call
from ...core.hedging import HEDGED_OPERATIONS, HedgeSlot, Hedging
from .classify import THROTTLING_STATUS_CODES

log = logging.getLogger("s3pool_plugins.botocore")

CallFinder = Callable[[Any], "Call | None"]
"""Finds the call a prepared request belongs to (its request context, or the pooled class's current call)."""


def _send_on_thread(send: Callable[[Any], Any], request: Any) -> concurrent.futures.Future[Any]:
    """Run ``send(request)`` on a new daemon thread, in a copy of the caller's context; its future.

    Daemon, so a loser still waiting for its answer never holds the
    interpreter at exit (a ``ThreadPoolExecutor``'s threads are joined
    then); one thread per copy, so nothing idles after a burst of hedges.
    The pool's limit bounds how many run at once.
    """
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            response = send(request)
        except BaseException as error:  # the caller gets it from the future
            future.set_exception(error)
        else:
            future.set_result(response)

    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(run,), name="s3pool-hedge", daemon=True).start()
    return future


def http_session_of(client: Any) -> Any:
    """The HTTP session ``client``'s endpoint sends with (botocore keeps it on ``client._endpoint``), or None."""
    endpoint = getattr(client, "_endpoint", None)
    return getattr(endpoint, "http_session", None)


def close_response(response: Any) -> None:
    """Close a response nobody will read: its connection is closed, then handed back empty to its pool."""
    raw = getattr(response, "raw", None)
    if raw is None:
        return
    try:
        close = getattr(raw, "close", None)
        if close is not None and not inspect.iscoroutinefunction(close):
            close()
    finally:
        release = getattr(raw, "release_conn", None)  # urllib3: give the (closed) connection back to its pool
        if release is not None:
            release()


def _outcome(future: concurrent.futures.Future[Any] | asyncio.Future[Any]) -> tuple[Any, BaseException | None]:
    if future.cancelled():
        return None, asyncio.CancelledError()
    error = future.exception()
    return (None, error) if error is not None else (future.result(), None)


class _Loser:
    """What happens when the copy that lost is over: its response closed, the hedge's slot given back, and
    (if the first attempt lost) its time to a response counted."""

    __slots__ = ("_first", "_hedging", "_operation", "_slot", "_started", "_task", "_won_at")

    def __init__(
        self, hedging: Hedging, call: Call, operation: str, slot: HedgeSlot, started: float, won_at: float | None
    ) -> None:
        self._hedging, self._task, self._operation, self._slot = hedging, call.task, operation, slot
        self._started, self._won_at = started, won_at

    def __call__(self, future: Any) -> None:
        try:
            response, _error = _outcome(future)
            if response is not None:
                close_response(response)
        except BaseException:  # a done-callback must not raise: the slot still goes back
            log.exception("could not close the response of a hedged read that lost")
        finally:
            self._slot.release()
        if self._won_at is not None and not future.cancelled():  # the first attempt, which the hedge beat
            now = time.monotonic()
            self._hedging.observe(self._task, self._operation, now - self._started)
            self._hedging.saved(now - self._won_at)


class HedgedSend:
    """The ``before-send`` handler of one client for the hedged reads (see the module).

    ``find_call(request)`` returns the pool call the request is an attempt
    of; requests of no call (or of a finished one) are left to botocore.
    """

    def __init__(self, hedging: Hedging, http_session: Any, find_call: CallFinder) -> None:
        self.hedging = hedging
        self.http_session = http_session
        self._find_call = find_call

    @staticmethod
    def events(service: str) -> list[str]:
        """The events to register on, one per hedged operation."""
        return [f"before-send.{service}.{operation}" for operation in sorted(HEDGED_OPERATIONS)]

    def _attempt(self, request: Any, event_name: str) -> tuple[Call, str] | None:
        call = self._find_call(request)
        if call is None or call.finished or not call.attempting:
            return None
        return call, event_name.rpartition(".")[2]

    # -- sync --------------------------------------------------------------

    def send(self, request: Any, event_name: str = "", **_: Any) -> Any:
        """Send ``request`` (hedged if the pool says so); botocore uses the response returned."""
        found = self._attempt(request, event_name)
        if found is None:
            return None
        call, operation = found
        delay = self.hedging.plan(call.task, operation)
        started = time.monotonic()
        if delay is None:
            response = self.http_session.send(request)
            self.hedging.observe(call.task, operation, time.monotonic() - started)
            return response
        first = _send_on_thread(self.http_session.send, request)
        try:
            wait, first_ask = delay, True
            while True:  # after the delay, and again every ``retry_every`` while no hedge could be had
                done, _still = concurrent.futures.wait([first], timeout=wait)
                if done:
                    response, error = _outcome(first)
                    if error is not None:
                        raise error
                    self.hedging.observe(call.task, operation, time.monotonic() - started)
                    return response
                slot = self.hedging.try_hedge(call.task, first_ask)
                if slot is not None:
                    break
                wait, first_ask = _retry_every(delay), False
        except BaseException:
            first.add_done_callback(_close_unread)
            raise
        return self._race(request, first, slot, call, operation, started)

    def _race(
        self,
        request: Any,
        first: concurrent.futures.Future[Any],
        slot: HedgeSlot,
        call: Call,
        operation: str,
        started: float,
    ) -> Any:
        try:
            hedge = _send_on_thread(self.http_session.send, request)
        except BaseException:
            slot.release()
            first.add_done_callback(_close_unread)
            raise
        call.task.hedges += 1
        pending: set[concurrent.futures.Future[Any]] = {first, hedge}
        outcomes: dict[Any, tuple[Any, BaseException | None]] = {}
        try:
            while pending:
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                winner = self._judge(call, (first, hedge), done, outcomes)
                if winner is not None:
                    return self._settle(winner, outcomes[winner][0], first, hedge, slot, call, operation, started)
        except BaseException:  # the caller was interrupted: both copies are closed when they end
            first.add_done_callback(_close_unread)
            hedge.add_done_callback(_close_unread)
            hedge.add_done_callback(lambda _: slot.release())
            raise
        slot.release()  # both failed
        return both_failed(outcomes[first], outcomes[hedge])

    def _judge(
        self, call: Call, order: tuple[Any, Any], done: set[Any], outcomes: dict[Any, tuple[Any, BaseException | None]]
    ) -> Any:
        """The copy among ``done`` whose response is the answer (the first attempt wins a tie), or None.

        A copy that failed (an error, or a server error's response: 5xx) is
        no answer while another copy may still succeed, so a fast failure
        never beats a slow success; a throttling answer (503) still stops
        hedging of its partition for a while.
        """
        for future in order:
            if future in done:
                outcomes[future] = response, error = _outcome(future)
                if error is None and _status(response) in THROTTLING_STATUS_CODES:
                    self.hedging.note_throttled(call.task)
        return first_success(order, done, outcomes)

    def _settle(
        self,
        winner: concurrent.futures.Future[Any],
        response: Any,
        first: concurrent.futures.Future[Any],
        hedge: concurrent.futures.Future[Any],
        slot: HedgeSlot,
        call: Call,
        operation: str,
        started: float,
    ) -> Any:
        now = time.monotonic()
        if winner is hedge:
            call.task.hedge_won = True
            self.hedging.won(call.task)
            loser, won_at = first, now
        else:
            self.hedging.observe(call.task, operation, now - started)
            loser, won_at = hedge, None
        loser.add_done_callback(_Loser(self.hedging, call, operation, slot, started, won_at))
        return response

    # -- async -------------------------------------------------------------

    async def send_async(self, request: Any, event_name: str = "", **_: Any) -> Any:
        """:meth:`send` for aiobotocore: the copies are tasks on the running loop; the loser is cancelled."""
        found = self._attempt(request, event_name)
        if found is None:
            return None
        call, operation = found
        delay = self.hedging.plan(call.task, operation)
        started = time.monotonic()
        if delay is None:
            response = await self.http_session.send(request)
            self.hedging.observe(call.task, operation, time.monotonic() - started)
            return response
        first: asyncio.Task[Any] = asyncio.ensure_future(self.http_session.send(request))
        try:
            wait, first_ask = delay, True
            while True:
                done, _still = await asyncio.wait({first}, timeout=wait)
                if done:
                    response = first.result()
                    self.hedging.observe(call.task, operation, time.monotonic() - started)
                    return response
                slot = self.hedging.try_hedge(call.task, first_ask)
                if slot is not None:
                    break
                wait, first_ask = _retry_every(delay), False
        except BaseException:
            _cancel(first)
            raise
        return await self._race_async(request, first, slot, call, operation, started)

    async def _race_async(
        self, request: Any, first: asyncio.Task[Any], slot: HedgeSlot, call: Call, operation: str, started: float
    ) -> Any:
        try:
            hedge: asyncio.Task[Any] = asyncio.ensure_future(self.http_session.send(request))
        except BaseException:
            slot.release()
            _cancel(first)
            raise
        call.task.hedges += 1
        pending: set[asyncio.Task[Any]] = {first, hedge}
        outcomes: dict[Any, tuple[Any, BaseException | None]] = {}
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                winner = self._judge(call, (first, hedge), done, outcomes)
                if winner is None:
                    continue
                loser = hedge if winner is first else first
                now = time.monotonic()
                if winner is hedge:
                    call.task.hedge_won = True
                    self.hedging.won(call.task)
                    if not loser.done():  # cancelled now: its time to a response is at least this long
                        self.hedging.observe(call.task, operation, now - started)
                else:
                    self.hedging.observe(call.task, operation, now - started)
                loser.add_done_callback(_Loser(self.hedging, call, operation, slot, started, None))
                loser.cancel()
                return outcomes[winner][0]
        except BaseException:  # cancelled: both copies are cancelled, the slot goes back when the hedge ends
            hedge.add_done_callback(lambda _: slot.release())
            _cancel(first)
            _cancel(hedge)
            raise
        slot.release()
        return both_failed(outcomes[first], outcomes[hedge])


MIN_RETRY_EVERY = 0.01
"""Seconds, at least, between two asks for a hedge of one read that got none (no token, no free slot)."""


def _retry_every(delay: float) -> float:
    """How long a read that got no hedge waits before it asks again: its delay (at least 10 ms).

    A read still without a response after that is deep in the tail, and
    the tokens earned meanwhile by other reads may now pay for its hedge.
    """
    return max(MIN_RETRY_EVERY, delay)


def _status(response: Any) -> int:
    """The HTTP status of a botocore/aiobotocore response (0 if it has none)."""
    status = getattr(response, "status_code", 0)
    return status if isinstance(status, int) else 0


def first_success(order: tuple[Any, Any], done: set[Any], outcomes: dict[Any, tuple[Any, BaseException | None]]) -> Any:
    """The first copy in ``order`` among ``done`` whose outcome (``(response, error)``) is a success: a
    response below 500; None if none is."""
    for future in order:
        if future in done:
            response, error = outcomes[future]
            if error is None and _status(response) < 500:
                return future
    return None


def both_failed(first: tuple[Any, BaseException | None], hedge: tuple[Any, BaseException | None]) -> Any:
    """The answer when both copies failed: a response if either has one (the first attempt's first), which
    botocore then parses and retries as usual, else the first attempt's error; the other response is closed."""
    answer, unused = (first, hedge) if first[1] is None or hedge[1] is not None else (hedge, first)
    if unused[0] is not None:
        close_response(unused[0])
    response, error = answer
    if error is not None:
        raise error
    return response


def _close_unread(future: Any) -> None:
    """Done-callback of a copy whose response nobody will read."""
    try:
        response, _error = _outcome(future)
        if response is not None:
            close_response(response)
    except BaseException:
        log.exception("could not close the response of an abandoned hedged read")


def _cancel(task: asyncio.Task[Any]) -> None:
    task.add_done_callback(_close_unread)
    task.cancel()
