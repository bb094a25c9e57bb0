"""Deferred event sending: events sent inside a scope go out only when the scope commits.

A web request opens a :class:`DeferredScope` (the framework middleware does it when deferred sending is
turned on); ``Client.send`` asks :func:`active_scope` and, if one covers that client, hands the events
to ``scope.add`` instead of sending them. When the request succeeds the middleware calls
:meth:`DeferredScope.commit`, which sends the events from a background thread, retrying with backoff;
on failure it calls :meth:`DeferredScope.discard` and nothing is sent.

What is lost: events live in process memory until the send succeeds. If the process dies after the
commit and before the event API accepted them (or every retry fails), they are gone; the failure is
logged on the ``eagerstep`` logger with the event names.

A durable alternative plugs in with :func:`set_route`: a client's route is asked first, and may
return a scope of its own (the Django outbox writes the events to a table in the caller's
transaction, so a crash after the commit cannot lose them).
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from contextlib import contextmanager
from typing import Any, Protocol

logger = logging.getLogger("eagerstep")

Hold = Callable[[Callable[[], None]], None]
"""Decides when added events become ready: called with a ``release`` callback (Django: on commit)."""


class _Sender(Protocol):
    def send(self, events: Any) -> list[str]: ...


_scopes: contextvars.ContextVar[tuple[DeferredScope, ...]] = contextvars.ContextVar(
    "eagerstep_deferred_scopes", default=()
)


class Scope(Protocol):
    """What ``Client.send`` hands events to instead of sending them: ``add`` returns their ids, or
    None when it cannot know them yet."""

    def add(self, events: Any) -> list[str] | None: ...


Route = Callable[[], "Scope | None"]
"""Asked on every send of its client: a scope that takes the events (e.g. an outbox), or None."""

_routes: weakref.WeakKeyDictionary[Any, Route] = weakref.WeakKeyDictionary()


def set_route(client: object, route: Route | None) -> None:
    """Install (or with None remove) ``client``'s route, asked before any deferred scope."""
    if route is None:
        _routes.pop(client, None)
    else:
        _routes[client] = route


def active_scope(client: object | None = None) -> Scope | None:
    """Where ``client``'s events go instead of the event API: its route's scope if the route gives
    one, else the innermost open deferred scope for ``client`` (any client when None), else None:
    send now."""
    if client is not None:
        route = _routes.get(client)
        if route is not None:
            routed = route()
            if routed is not None:
                return routed
    for scope in reversed(_scopes.get()):
        if scope.state == "open" and (client is None or scope.client is client):
            return scope
    return None


class DeferredScope:
    """Events held back until :meth:`commit` (sent in the background) or :meth:`discard` (dropped)."""

    def __init__(
        self,
        client: _Sender,
        *,
        hold: Hold | None = None,
        attempts: int = 5,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
    ) -> None:
        self.client = client
        self.state = "open"  # open -> committed | discarded
        self._hold = hold
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._ready: list[Any] = []
        self._lock = threading.Lock()
        self.deliveries: list[Future[list[str]]] = []

    def add(self, events: Any) -> list[str] | None:
        """Hold ``events`` (one event or a list) until commit. Each dict event without an ``id`` gets one,
        so a retried send is deduplicated by the event API instead of triggering runs twice."""
        batch = [_with_id(event) for event in (events if isinstance(events, (list, tuple)) else [events])]
        if self._hold is None:
            self._release(batch)
        else:
            self._hold(lambda: self._release(batch))
        return None

    @property
    def pending(self) -> list[Any]:
        """Events ready to go at commit (held ones not yet released are not included)."""
        with self._lock:
            return list(self._ready)

    def _release(self, batch: list[Any]) -> None:
        with self._lock:
            if self.state == "discarded":
                return
            if self.state == "open":
                self._ready.extend(batch)
                return
        # Released after the scope committed (e.g. an outer transaction committing late): send now.
        self.deliveries.append(_submit(self._deliver, batch))

    def commit(self) -> Future[list[str]] | None:
        """Close the scope and send what is ready from a background thread (retried with backoff)."""
        with self._lock:
            if self.state != "open":
                return None
            self.state = "committed"
            batch, self._ready = self._ready, []
        if not batch:
            return None
        delivery = _submit(self._deliver, batch)
        self.deliveries.append(delivery)
        return delivery

    def discard(self) -> None:
        """Close the scope and drop everything held."""
        with self._lock:
            self.state = "discarded"
            self._ready = []

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every send started by this scope has finished; True when all succeeded."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for delivery in list(self.deliveries):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                delivery.result(remaining)
            except Exception:
                ok = False
        return ok

    def _deliver(self, batch: list[Any]) -> list[str]:
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                # A fresh context: no scope is active here, so the client really sends.
                send = getattr(self.client, "send_now", self.client.send)
                return contextvars.Context().run(send, batch)
            except Exception as error:
                if attempt == self._attempts:
                    names = ", ".join(sorted({str(_name(event)) for event in batch}))
                    logger.error(
                        "eagerstep: dropping %d deferred event(s) (%s) after %d attempts: %s",
                        len(batch),
                        names,
                        attempt,
                        error,
                    )
                    raise
                logger.warning("eagerstep: deferred send failed (attempt %d): %s; retrying", attempt, error)
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._max_backoff)
        raise AssertionError("unreachable")


@contextmanager
def deferred(client: _Sender, *, hold: Hold | None = None) -> Iterator[DeferredScope]:
    """Open a scope for ``client``; commit when the block exits normally, discard on an exception.

    Middleware that must look at the response first opens the scope with :func:`open_scope` instead.
    """
    scope, token = open_scope(client, hold=hold)
    try:
        yield scope
    except BaseException:
        scope.discard()
        raise
    else:
        scope.commit()
    finally:
        close_scope(token)


def open_scope(client: _Sender, *, hold: Hold | None = None) -> tuple[DeferredScope, contextvars.Token[Any]]:
    scope = DeferredScope(client, hold=hold)
    return scope, _scopes.set((*_scopes.get(), scope))


def close_scope(token: contextvars.Token[Any]) -> None:
    """Deactivate a scope opened by :func:`open_scope` (commit or discard it first)."""
    try:
        _scopes.reset(token)
    except ValueError:  # reset from another context (some servers switch contexts): drop the top
        _scopes.set(_scopes.get()[:-1])


def _with_id(event: Any) -> Any:
    if isinstance(event, dict) and not event.get("id"):
        return {**event, "id": f"deferred-{uuid.uuid4().hex}"}
    return event


def _name(event: Any) -> object:
    return event.get("name") if isinstance(event, dict) else getattr(event, "name", event)


_executor: ThreadPoolExecutor | None = None
_executor_pid = 0
_executor_lock = threading.Lock()
_in_flight: set[Future[list[str]]] = set()


def submit(fn: Callable[[list[Any]], list[str]], batch: list[Any]) -> Future[list[str]]:
    """Run ``fn(batch)`` on the deferred-send threads (waited for by :func:`drain` at shutdown)."""
    return _submit(fn, batch)


def _submit(fn: Callable[[list[Any]], list[str]], batch: list[Any]) -> Future[list[str]]:
    global _executor, _executor_pid
    with _executor_lock:
        if _executor is None or _executor_pid != os.getpid():  # re-created after fork
            _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="eagerstep-deferred")
            _executor_pid = os.getpid()
        executor = _executor
    future = executor.submit(fn, batch)
    _in_flight.add(future)
    future.add_done_callback(_in_flight.discard)
    return future


def drain(timeout: float = 5.0) -> None:
    """Wait (bounded) for deferred sends in flight; adapters call it at shutdown."""
    if _executor_pid != os.getpid():
        return
    futures_wait(list(_in_flight), timeout=timeout)


__all__: Sequence[str] = [
    "DeferredScope",
    "Route",
    "Scope",
    "active_scope",
    "close_scope",
    "deferred",
    "drain",
    "open_scope",
    "set_route",
    "submit",
]
