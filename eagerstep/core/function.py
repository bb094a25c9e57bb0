"""Function definitions: triggers, options, and the sync (register) payload they produce."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel, ValidationError

from eagerstep.core import protocol
from eagerstep.core.checkpoint import Checkpointing
from eagerstep.core.config import parse_checkpointing
from eagerstep.core.errors import ConfigurationError

if TYPE_CHECKING:
    from eagerstep.core.config import Settings
    from eagerstep.core.middleware import Chain, Middleware

R = TypeVar("R")

Duration = timedelta | str


def duration_text(value: Duration) -> str:
    """A Go-style duration string from a timedelta or a duration string (ConfigurationError if neither)."""
    try:
        return protocol.duration_text(value)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc


@dataclass(frozen=True)
class Event:
    """An event trigger (or a ``cancel_on`` entry): the event name and an optional CEL expression.

    ``timeout`` applies to ``cancel_on`` only: how long the cancellation stays armed.
    """

    name: str
    if_: str | None = None
    timeout: Duration | None = None

    def to_trigger(self) -> protocol.EventTrigger:
        return protocol.EventTrigger(event=self.name, expression=self.if_)

    def to_cancel(self) -> protocol.CancelConfig:
        timeout = duration_text(self.timeout) if self.timeout is not None else None
        return protocol.CancelConfig(event=self.name, if_=self.if_, timeout=timeout)


@dataclass(frozen=True)
class Cron:
    """A cron trigger: a 5-field expression (optionally prefixed with ``TZ=Zone``) and optional jitter."""

    expr: str
    jitter: Duration | None = None

    def to_trigger(self) -> protocol.CronTrigger:
        jitter = duration_text(self.jitter) if self.jitter is not None else None
        return protocol.CronTrigger(cron=self.expr, jitter=jitter)


Trigger = Event | Cron

_M = TypeVar("_M", bound=BaseModel)


_DURATION_FIELDS = frozenset({"period", "timeout", "start", "finish"})


def _durations_to_text(value: Mapping[str, Any]) -> dict[str, Any]:
    """timedelta values become Go-style strings; duration strings are checked."""
    return {
        k: duration_text(v)
        if isinstance(v, timedelta) or (k in _DURATION_FIELDS and isinstance(v, str))
        else v
        for k, v in value.items()
    }


def _option(model: type[_M], value: Any, option: str, aliases: Mapping[str, str] | None = None) -> _M | None:
    if value is None:
        return None
    if isinstance(value, model):
        return value
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{option}= must be a mapping or {model.__name__}, not {value!r}")
    data = _durations_to_text(value)
    if aliases:
        data = {aliases.get(k, k): v for k, v in data.items()}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(f"invalid {option}=: {exc.errors()[0]['msg']} ({value!r})") from exc


def _concurrency(value: Any) -> int | list[protocol.ConcurrencyLimit] | None:
    if value is None or isinstance(value, int):
        return value
    items = value if isinstance(value, (list, tuple)) else [value]
    limits = [_option(protocol.ConcurrencyLimit, item, "concurrency") for item in items]
    if len(limits) > 2:
        raise ConfigurationError("concurrency= accepts at most 2 limits")
    return [limit for limit in limits if limit is not None]


#: ``parallel=`` values of a function.
PARALLEL_MODES = frozenset({"eager", "orchestrated"})


class FunctionOwner(Protocol):
    """What a function needs from the client it belongs to (``eagerstep.Client`` provides it): the
    app id, its settings, its logger, and sending events. The client imports this module, not the
    other way round."""

    app_id: str
    logger: logging.Logger
    middleware: list[Middleware]

    @property
    def settings(self) -> Settings: ...

    def send_now(self, events: Any, *, middleware: Chain | None = None) -> list[str]: ...

    async def send_now_async(self, events: Any, *, middleware: Chain | None = None) -> list[str]: ...


class Function(Generic[R]):
    """A durable function: its handler, triggers and options. Made by ``@client.function(...)``."""

    def __init__(
        self,
        client: FunctionOwner,
        handler: Callable[..., Any],
        *,
        id: str,
        trigger: Trigger | Sequence[Trigger] | None,
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
        _failure_of: Function[Any] | None = None,
    ) -> None:
        if not id or not isinstance(id, str):
            raise ConfigurationError("@client.function(id=...) needs a non-empty string id")
        if retries is not None and not 0 <= retries <= protocol.MAX_RETRIES:
            raise ConfigurationError(f"retries={retries} is out of range; use 0 to {protocol.MAX_RETRIES}")
        self.client = client
        self.handler = handler
        self.id = id
        self.name = name or id
        self.is_async = inspect.iscoroutinefunction(handler)
        if trigger is None:
            triggers: list[Trigger] = []
        elif isinstance(trigger, (Event, Cron)):
            triggers = [trigger]
        else:
            triggers = list(trigger)
        if not triggers and _failure_of is None:
            raise ConfigurationError(
                f"function {id!r} has no trigger; pass trigger=eagerstep.Event(...) or eagerstep.Cron(...)"
            )
        for item in triggers:
            if not isinstance(item, (Event, Cron)):
                raise ConfigurationError(f"trigger= takes eagerstep.Event or eagerstep.Cron, not {item!r}")
        self.triggers = triggers
        self.retries = retries
        self.concurrency = _concurrency(concurrency)
        self.cancel_on = list(cancel_on or [])
        self.rate_limit = _option(protocol.RateLimitConfig, rate_limit, "rate_limit")
        self.throttle = _option(protocol.ThrottleConfig, throttle, "throttle")
        self.debounce = _option(protocol.DebounceConfig, debounce, "debounce")
        self.batch_events = _option(
            protocol.BatchEventsConfig,
            batch_events,
            "batch_events",
            {"max_size": "maxSize", "if_": "if"},
        )
        if isinstance(priority, str):
            priority = {"run": priority}
        self.priority = _option(protocol.PriorityConfig, priority, "priority")
        self.timeouts = _option(protocol.TimeoutsConfig, timeouts, "timeouts")
        self.singleton = _option(protocol.SingletonConfig, singleton, "singleton")
        self.idempotency = idempotency
        if parallel not in PARALLEL_MODES:
            raise ConfigurationError(
                f"parallel={parallel!r} is not a parallel mode; use one of {sorted(PARALLEL_MODES)}"
            )
        #: How ``ctx.step.parallel`` runs when the request checkpoints: "eager" (its steps run in
        #: the worker, each checkpointed) or "orchestrated" (planned, one request per step).
        self.parallel = parallel
        self.checkpointing_option = checkpointing
        self._checkpointing = None if checkpointing is None else parse_checkpointing(checkpointing)
        self.failure_of = _failure_of
        #: This function's own middleware (after the client's: see :meth:`middleware_chain`).
        self.middleware: list[Middleware] = list(middleware or ())
        self._chain: tuple[tuple[int, ...], Chain] | None = None
        if self.middleware:
            from eagerstep.core.middleware import Chain

            Chain(self.middleware)  # checks the items now, not at the first request
        self.on_failure: Function[Any] | None = None
        if on_failure is not None:
            self.on_failure = Function(
                client,
                on_failure,
                id=f"{id}-failure",
                name=f"{self.name} (on failure)",
                trigger=None,
                retries=1,
                checkpointing=checkpointing,
                middleware=middleware,
                _failure_of=self,
            )

    # ----------------------------------------------------------------------------------------

    @property
    def fully_qualified_id(self) -> str:
        """``<app_id>-<id>``: the id the orchestrator knows the function by."""
        return protocol.composite_function_id(self.client.app_id, self.id)

    @property
    def checkpointing(self) -> Checkpointing | None:
        """The effective checkpointing settings (the function's own, else the client's)."""
        if self.checkpointing_option is not None:
            return self._checkpointing
        return self.client.settings.checkpointing

    def middleware_chain(self) -> Chain:
        """The client's middleware, then the function's, bound once (again if either list changes)."""
        items = [*self.client.middleware, *self.middleware]
        key = tuple(id(item) for item in items)
        cached = self._chain
        if cached is not None and cached[0] == key:
            return cached[1]
        from eagerstep.core.middleware import Chain

        chain = Chain(items)
        self._chain = (key, chain)
        return chain

    def max_attempts(self) -> int:
        return (protocol.DEFAULT_RETRIES if self.retries is None else self.retries) + 1

    def all_functions(self) -> Iterator[Function[Any]]:
        """This function and its on-failure handler, if any."""
        yield self
        if self.on_failure is not None:
            yield self.on_failure

    def _wire_triggers(self) -> list[protocol.EventTrigger | protocol.CronTrigger]:
        if self.failure_of is not None:
            parent = self.failure_of.fully_qualified_id
            return [
                protocol.EventTrigger(
                    event=protocol.EVENT_FUNCTION_FAILED,
                    expression=f"event.data.function_id == '{parent}'",
                )
            ]
        return [t.to_trigger() for t in self.triggers]

    def to_config(self, serve_url: str) -> protocol.FunctionConfig:
        """The function's entry in the register payload, with its runtime URL under ``serve_url``."""
        fn_id = self.fully_qualified_id
        sep = "&" if "?" in serve_url else "?"
        url = f"{serve_url}{sep}{urlencode({'fnId': fn_id, 'stepId': 'step'})}"
        retries = None if self.retries is None else protocol.RetryConfig(attempts=self.retries)
        return protocol.FunctionConfig(
            id=fn_id,
            name=self.name,
            triggers=self._wire_triggers(),
            steps={
                "step": protocol.StepConfig(
                    id="step", name="step", runtime=protocol.Runtime(type="http", url=url), retries=retries
                )
            },
            concurrency=self.concurrency,
            batchEvents=self.batch_events,
            idempotency=self.idempotency,
            rateLimit=self.rate_limit,
            throttle=self.throttle,
            debounce=self.debounce,
            priority=self.priority,
            timeouts=self.timeouts,
            singleton=self.singleton,
            cancel=[c.to_cancel() for c in self.cancel_on] or None,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the handler directly (handy in unit tests); steps need a running request."""
        return self.handler(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<eagerstep.Function {self.id!r}>"
