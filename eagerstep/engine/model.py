"""The engine's vocabulary: queue kinds, run statuses, and the in-memory records of functions,
runs, queue items and waits (each mirrors rows of the SQLite file)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from croniter import croniter
from ulid import ULID

from eagerstep._version import __version__
from eagerstep.core import protocol
from eagerstep.engine.store import dumps

CALL = "call"
SLEEP = "sleep"
WAIT_TIMEOUT = "wait_timeout"
INVOKE_TIMEOUT = "invoke_timeout"
CANCEL_TIMEOUT = "cancel_timeout"
CRON = "cron"
RUN_TIMEOUT = "run_timeout"
DEBOUNCE = "debounce"
BATCH = "batch"
#: Queue kinds that ``fire_timers`` moves to "now" by default (cancel windows and cron stay).
FIRE_DEFAULT_KINDS = frozenset({SLEEP, WAIT_TIMEOUT, INVOKE_TIMEOUT, CALL})

RUNNING, COMPLETED, FAILED, CANCELLED = "Running", "Completed", "Failed", "Cancelled"
MAX_TIMER_SECONDS = 366 * 86400
_FN_NAMESPACE = uuid.UUID("6f1d3c2e-9a51-4c59-9b0e-4a3c8f2d7e10")
_APP_NAMESPACE = uuid.UUID("2b7e8d4a-0c13-4f6e-8a9d-5e1f3b6c7a20")
SERVER_KIND = "dev"
USER_AGENT = f"eagerstep-dev/{__version__}"


class EngineError(Exception):
    """A request the engine refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def new_id() -> str:
    return str(ULID())


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return protocol.format_datetime(datetime.fromtimestamp(ts, timezone.utc))


def next_cron_time(expression: str, after: float) -> float:
    """The next fire time (epoch seconds) of a cron expression, with an optional ``TZ=`` prefix."""
    text = expression.strip()
    tz: Any = timezone.utc
    if text.startswith(("TZ=", "CRON_TZ=")):
        zone, _, text = text.partition(" ")
        tz = ZoneInfo(zone.split("=", 1)[1])
    base = datetime.fromtimestamp(after, tz)
    return float(croniter(text.strip(), base).get_next(float))


def _seconds(text: str | None, default: float) -> float:
    try:
        return protocol.parse_duration(text).total_seconds() if text else default
    except ValueError:
        return default


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")


@dataclass
class FunctionInfo:
    id: str
    uuid: str
    app_url: str
    config: protocol.FunctionConfig
    max_attempts: int
    concurrency_limit: int | None
    concurrency_key: str | None
    crons: list[str]
    _url_parts: tuple[str, str, str, list[tuple[str, str]]]
    _step_url: str

    @classmethod
    def build(cls, fn_uuid: str, app_url: str, config: protocol.FunctionConfig) -> FunctionInfo:
        url = config.runtime_url()
        if not url:
            raise EngineError(f"function {config.id!r} has no steps.step.runtime.url")
        parts = urlsplit(url)
        pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "stepId"]
        url_parts = (parts.scheme, parts.netloc, parts.path, pairs)
        limit: int | None = None
        key: str | None = None
        if isinstance(config.concurrency, int):
            limit = config.concurrency or None
        elif config.concurrency:
            limit = config.concurrency[0].limit or None
            key = config.concurrency[0].key
        crons = [t.cron for t in config.triggers if isinstance(t, protocol.CronTrigger)]
        info = cls(
            config.id,
            fn_uuid,
            app_url,
            config,
            config.retry_count() + 1,
            limit,
            key,
            crons,
            url_parts,
            "",
        )
        info._step_url = info.call_url("step", cached=False)
        return info

    def call_url(self, step_id: str, *, cached: bool = True) -> str:
        if cached and step_id == "step":
            return self._step_url
        scheme, netloc, path, pairs = self._url_parts
        return urlunsplit((scheme, netloc, path, urlencode([*pairs, ("stepId", step_id)]), ""))


@dataclass
class RunState:
    id: str
    function_id: str
    events: list[dict[str, Any]]
    status: str
    created_at: float
    memos: dict[str, Any] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)
    pending: set[str] = field(default_factory=set)
    force_plan: bool = False
    version: int = -1
    correlation_id: str | None = None
    started: dict[str, float] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    #: The transport-level error of the last failed call ("invalid status code: 500"), for the
    #: ``inngest/function.failed`` event (not persisted: set and read in the same transaction).
    call_error: str | None = None

    def state_json(self) -> str:
        return dumps(
            {
                "pending": sorted(self.pending),
                "force_plan": self.force_plan,
                "version": self.version,
                "correlation_id": self.correlation_id,
                "started": self.started,
                "names": self.names,
            }
        )


@dataclass
class QueueItem:
    id: str
    run_id: str | None
    kind: str
    due_at: float
    payload: dict[str, Any]
    generation: int = 1


@dataclass
class Wait:
    id: str
    run_id: str
    kind: str  # "wait" | "invoke" | "cancel"
    event_name: str | None
    payload: dict[str, Any]


RunListener = Callable[[str, str, "str | None"], None]
