"""The Client: app identity, keys and base URLs (resolved lazily), function registration, sending events."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, overload

import httpx

from eagerstep._version import __version__
from eagerstep.core import protocol
from eagerstep.core.checkpoint import Checkpointing
from eagerstep.core.config import KEYS as CONFIG_KEYS
from eagerstep.core.config import Settings, SettingsResolver, SettingsSource
from eagerstep.core.errors import ConfigurationError, EventSendError
from eagerstep.core.function import Cron, Event, Function
from eagerstep.core.middleware import Chain, Middleware, send_with_hooks, send_with_hooks_async

SDK_HEADER = f"{protocol.SDK_NAME}:v{__version__}"

HTTP_TIMEOUT = httpx.Timeout(30.0, connect=5.0)

F = TypeVar("F", bound=Callable[..., Any])

# --------------------------------------------------------------------------------------------
# Pooled HTTP clients: one per process (re-created after fork), one async client per event loop.

_http_lock = threading.Lock()
_http: tuple[int, httpx.Client] | None = None
_async_http: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def base_headers() -> dict[str, str]:
    return {
        protocol.Header.SDK: SDK_HEADER,
        protocol.Header.USER_AGENT: SDK_HEADER,
        protocol.Header.REQ_VERSION: str(protocol.REQUEST_VERSION),
    }


def http_client() -> httpx.Client:
    """The process's pooled ``httpx.Client`` (a new one after a fork)."""
    global _http
    current = _http
    pid = os.getpid()
    if current is not None and current[0] == pid:
        return current[1]
    with _http_lock:
        if _http is None or _http[0] != pid:
            _http = (pid, httpx.Client(timeout=HTTP_TIMEOUT, headers=base_headers()))
        return _http[1]


def async_http_client() -> httpx.AsyncClient:
    """The running loop's pooled ``httpx.AsyncClient``."""
    loop = asyncio.get_running_loop()
    client = _async_http.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(timeout=HTTP_TIMEOUT, headers=base_headers())
        _async_http[loop] = client
    return client


def event_id_seed() -> str:
    """``<millis>,<base64 of 10 random bytes>``: lets the server derive stable event ids."""
    return f"{int(time.time() * 1000)},{base64.b64encode(secrets.token_bytes(10)).decode()}"


def _normalise_events(events: Any) -> list[dict[str, Any]]:
    items = events if isinstance(events, (list, tuple)) else [events]
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, protocol.WireEvent):
            payload = item.model_dump(mode="json", exclude_none=True)
        elif isinstance(item, dict):
            payload = dict(item)
        else:
            raise TypeError(f"an event is a dict with 'name' and 'data' (or a WireEvent), not {item!r}")
        name = payload.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"every event needs a non-empty 'name': {payload!r}")
        data = payload.get("data")
        if data is None:
            payload["data"] = {}
        elif not isinstance(data, dict):
            raise ValueError(f"an event's 'data' must be an object (dict): {payload!r}")
        out.append(payload)
    return out


def _deferred_scope(client: Client) -> Any:
    """The active deferred-send scope for ``client`` (opened by framework integrations), or None."""
    try:
        from eagerstep.core import deferred
    except ImportError:  # pragma: no cover - the module ships with the package
        return None
    return deferred.active_scope(client)


class Client:
    """An eagerstep app: its identity, keys, base URLs and functions.

    Checkpointing is on unless ``checkpointing=False`` (or the CHECKPOINTING setting) turns it off.
    Only ``app_id`` is needed at import time; every other setting is resolved on first use from the
    explicit argument, the framework's settings, ``INNGEST_*`` environment variables, then defaults.
    """

    def __init__(
        self,
        app_id: str,
        *,
        signing_key: str | None = None,
        signing_key_fallback: str | None = None,
        event_key: str | None = None,
        api_base_url: str | None = None,
        event_api_base_url: str | None = None,
        dev: bool | str | None = None,
        env: str | None = None,
        serve_origin: str | None = None,
        serve_path: str | None = None,
        checkpointing: bool | Checkpointing | None = None,
        logger: logging.Logger | None = None,
        middleware: Sequence[Middleware] | None = None,
    ) -> None:
        if not app_id or not isinstance(app_id, str):
            raise ConfigurationError("Client(app_id=...) needs a non-empty string")
        self.app_id = app_id
        self._resolver = SettingsResolver(
            {
                "APP_ID": app_id,
                "SIGNING_KEY": signing_key,
                "SIGNING_KEY_FALLBACK": signing_key_fallback,
                "EVENT_KEY": event_key,
                "API_BASE_URL": api_base_url,
                "EVENT_API_BASE_URL": event_api_base_url,
                "DEV": dev,
                "ENV": env,
                "SERVE_ORIGIN": serve_origin,
                "SERVE_PATH": serve_path,
                "CHECKPOINTING": checkpointing,
            }
        )
        self.logger = logger or logging.getLogger("eagerstep")
        self.functions: list[Function[Any]] = []
        #: Middleware of every function of this client (each function may add its own).
        self.middleware: list[Middleware] = list(middleware or ())
        Chain(self.middleware)  # checks the items now
        self._send_chain: tuple[tuple[int, ...], Chain] | None = None

    # -- settings ----------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The resolved settings (resolved once, on first use; see :meth:`reload_settings`)."""
        return self._resolver.get()

    def set_settings_source(self, source: SettingsSource | None) -> None:
        """Plug in framework settings: ``source("SIGNING_KEY")`` returns a value or None."""
        self._resolver.set_source(source)

    def reload_settings(self) -> None:
        """Forget resolved settings; the next use resolves them again."""
        self._resolver.reload()

    @contextmanager
    def override_settings(self, **values: object) -> Iterator[None]:
        """Settings (``DEV="http://127.0.0.1:8288"``, ``API_BASE_URL=...``: the keys of the settings
        table) that win over every other source while the block runs; ``eagerstep.testing`` points
        a client at its engine this way."""
        unknown = set(values) - set(CONFIG_KEYS)
        if unknown:
            raise ConfigurationError(
                f"unknown settings {sorted(unknown)}; the keys are {', '.join(CONFIG_KEYS)}"
            )
        self._resolver.set_overrides(values)
        try:
            yield
        finally:
            self._resolver.set_overrides({})

    def setting(self, key: str) -> object | None:
        """One setting by its key (``"ENCRYPTION_KEY"``...), from the same sources as the others:
        explicit argument, framework settings, ``INNGEST_*`` environment; None when unset."""
        return self._resolver.lookup(key)

    def _chain(self) -> Chain:
        key = tuple(id(item) for item in self.middleware)
        cached = self._send_chain
        if cached is None or cached[0] != key:
            cached = self._send_chain = (key, Chain(self.middleware))
        return cached[1]

    @property
    def is_dev(self) -> bool:
        return self.settings.dev

    # -- functions ---------------------------------------------------------------------------

    def function(
        self,
        *,
        id: str,
        trigger: Event | Cron | Sequence[Event | Cron],
        name: str | None = None,
        retries: int | None = None,
        concurrency: Any = None,
        cancel_on: Sequence[Event] | None = None,
        on_failure: Callable[..., Any] | None = None,
        rate_limit: Any = None,
        throttle: Any = None,
        debounce: Any = None,
        batch_events: Any = None,
        priority: Any = None,
        timeouts: Any = None,
        singleton: Any = None,
        idempotency: str | None = None,
        checkpointing: bool | Checkpointing | None = None,
        parallel: str = "eager",
        middleware: Sequence[Middleware] | None = None,
    ) -> Callable[[Callable[..., Any]], Function[Any]]:
        """Decorate a ``def`` or ``async def`` handler taking a ``Context`` as a durable function."""

        def decorate(handler: Callable[..., Any]) -> Function[Any]:
            fn: Function[Any] = Function(
                self,
                handler,
                id=id,
                trigger=trigger,
                name=name,
                retries=retries,
                concurrency=concurrency,
                cancel_on=cancel_on,
                on_failure=on_failure,
                rate_limit=rate_limit,
                throttle=throttle,
                debounce=debounce,
                batch_events=batch_events,
                priority=priority,
                timeouts=timeouts,
                singleton=singleton,
                idempotency=idempotency,
                checkpointing=checkpointing,
                parallel=parallel,
                middleware=middleware,
            )
            self.functions.append(fn)
            return fn

        return decorate

    # -- events ------------------------------------------------------------------------------

    def _event_url(self) -> str:
        settings = self.settings
        key = settings.event_key
        if not key:
            raise ConfigurationError(
                "EVENT_KEY is not set; it is required to send events when INNGEST_DEV is off. Set "
                "INNGEST_EVENT_KEY (or the framework setting EVENT_KEY, or Client(event_key=...))"
            )
        return f"{settings.event_api_base_url}/e/{key}"

    def _send_headers(self) -> dict[str, str]:
        headers = {protocol.Header.EVENT_ID_SEED: event_id_seed(), "Content-Type": "application/json"}
        env = self.settings.env
        if env:
            headers[protocol.Header.ENV] = env
        return headers

    @staticmethod
    def _parse_send_reply(url: str, response: httpx.Response, count: int) -> list[str]:
        try:
            body = response.json()
        except ValueError:
            body = None
        ids = body.get("ids") if isinstance(body, dict) else None
        if response.status_code >= 300:
            detail = body.get("error") if isinstance(body, dict) else None
            detail = detail or response.text[:300] or response.reason_phrase
            raise EventSendError(
                f"the event API at {url} refused {count} event(s) with HTTP {response.status_code}: {detail}",
                status=response.status_code,
                ids=[str(i) for i in ids] if isinstance(ids, list) else None,
            )
        if not isinstance(ids, list):
            raise EventSendError(
                f"the event API at {url} answered HTTP {response.status_code} without an 'ids' list",
                status=response.status_code,
            )
        return [str(i) for i in ids]

    @staticmethod
    def _redact(url: str) -> str:
        head, sep, _ = url.rpartition("/e/")
        return f"{head}/e/<event key>" if sep else url

    @overload
    def send(self, events: dict[str, Any] | protocol.WireEvent) -> list[str]: ...
    @overload
    def send(self, events: Sequence[dict[str, Any] | protocol.WireEvent]) -> list[str]: ...

    def send(self, events: Any) -> list[str]:
        """Send one event or a list of events; return their ids.

        Inside a framework's deferred-send scope (e.g. a database transaction) the events are queued
        and sent when the scope ends, and this returns ``[]`` (the Django outbox: their ids).
        """
        payload = _normalise_events(events)
        scope = _deferred_scope(self)
        if scope is not None:
            return scope.add(payload) or []
        return self.send_now(payload)

    def send_now(self, events: Any, *, middleware: Chain | None = None) -> list[str]:
        """Send at once, ignoring any deferred-send scope (through ``middleware``: by default the
        client's; a run passes its function's)."""
        payload = _normalise_events(events)
        if not payload:
            return []
        chain = self._chain() if middleware is None else middleware
        if chain:
            return send_with_hooks(chain, payload, lambda: self._post_events(payload))
        return self._post_events(payload)

    def _post_events(self, payload: list[dict[str, Any]]) -> list[str]:
        url = self._event_url()
        try:
            response = http_client().post(url, content=protocol.dumps(payload), headers=self._send_headers())
        except httpx.HTTPError as exc:
            raise EventSendError(f"the event API at {self._redact(url)} is unreachable: {exc}") from exc
        return self._parse_send_reply(self._redact(url), response, len(payload))

    async def send_async(self, events: Any) -> list[str]:
        """``await``-able :meth:`send`."""
        payload = _normalise_events(events)
        scope = _deferred_scope(self)
        if scope is not None:
            return scope.add(payload) or []
        return await self.send_now_async(payload)

    async def send_now_async(self, events: Any, *, middleware: Chain | None = None) -> list[str]:
        payload = _normalise_events(events)
        if not payload:
            return []
        chain = self._chain() if middleware is None else middleware
        if chain:
            return await send_with_hooks_async(chain, payload, lambda: self._post_events_async(payload))
        return await self._post_events_async(payload)

    async def _post_events_async(self, payload: list[dict[str, Any]]) -> list[str]:
        url = self._event_url()
        try:
            response = await async_http_client().post(
                url, content=protocol.dumps(payload), headers=self._send_headers()
            )
        except httpx.HTTPError as exc:
            raise EventSendError(f"the event API at {self._redact(url)} is unreachable: {exc}") from exc
        return self._parse_send_reply(self._redact(url), response, len(payload))

    def __repr__(self) -> str:
        return f"<eagerstep.Client app_id={self.app_id!r}>"
