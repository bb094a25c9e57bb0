"""Wire models of the Inngest protocol, shared by the SDK and the embedded engine.

Parsing uses pydantic models that ignore unknown fields (servers and SDKs add fields over time).
Emitting ops on the hot path uses plain dicts built by the small functions at the bottom, so a
checkpointed step costs microseconds, not a model round trip.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SDK_NAME = "eagerstep-py"
SDK_LANGUAGE = "py"
REQUEST_VERSION = 2
INTROSPECTION_SCHEMA_VERSION = "2024-05-24"
REGISTER_PROTOCOL_VERSION = "0.1"
#: The server inlines run state up to about this size; above it, ``use_api`` is set (§2.4).
MAX_REQUEST_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_RETRIES = 4
MAX_RETRIES = 20
DEV_SERVER_ORIGIN = "http://127.0.0.1:8288"
CLOUD_API_ORIGIN = "https://api.inngest.com"
CLOUD_EVENT_API_ORIGIN = "https://inn.gs"
DEV_EVENT_KEY = "NO_EVENT_KEY_SET"


class Header:
    """Header names, as the protocol spells them (HTTP header names are case-insensitive)."""

    SDK = "X-Inngest-SDK"
    REQ_VERSION = "X-Inngest-Req-Version"
    SIGNATURE = "X-Inngest-Signature"
    FRAMEWORK = "X-Inngest-Framework"
    PLATFORM = "X-Inngest-Platform"
    ENV = "X-Inngest-Env"
    SERVER_KIND = "X-Inngest-Server-Kind"
    EXPECTED_SERVER_KIND = "X-Inngest-Expected-Server-Kind"
    SYNC_KIND = "X-Inngest-Sync-Kind"
    NO_RETRY = "X-Inngest-No-Retry"
    RETRY_AFTER = "Retry-After"
    SERVER_TIMING = "Server-Timing"
    SDK_HANDLED = "x-inngest-sdk-handled"
    REQUEST_ID = "x-request-id"
    GENERATION_ID = "x-inngest-generation-id"
    JOB_ID = "x-inngest-job-id"
    RUN_ID = "X-Run-ID"
    STEP_ID = "X-Inngest-Step-ID"
    FORCE_STEP_PLAN = "X-Inngest-Force-Step-Plan"
    EVENT_ID_SEED = "x-inngest-event-id-seed"
    AUTHORIZATION = "Authorization"
    USER_AGENT = "User-Agent"


class Opcode(str, enum.Enum):
    """Generator opcodes; the string values are what travels on the wire (§3.1)."""

    NONE = "None"
    STEP = "Step"
    STEP_RUN = "StepRun"
    STEP_ERROR = "StepError"
    STEP_PLANNED = "StepPlanned"
    SLEEP = "Sleep"
    WAIT_FOR_EVENT = "WaitForEvent"
    INVOKE_FUNCTION = "InvokeFunction"
    AI_GATEWAY = "AIGateway"
    GATEWAY = "Gateway"
    WAIT_FOR_SIGNAL = "WaitForSignal"
    RUN_COMPLETE = "RunComplete"
    STEP_FAILED = "StepFailed"
    SYNC_RUN_COMPLETE = "SyncRunComplete"
    DISCOVERY_REQUEST = "DiscoveryRequest"
    DEFER_ADD = "DeferAdd"
    DEFER_ABORT = "DeferAbort"


#: Ops a server accepts through the checkpoint API (``opcodeSyncMap``); all others are async.
SYNC_OPCODES = frozenset(
    {
        Opcode.STEP.value,
        Opcode.STEP_RUN.value,
        Opcode.STEP_PLANNED.value,
        Opcode.RUN_COMPLETE.value,
        Opcode.SYNC_RUN_COMPLETE.value,
        Opcode.STEP_FAILED.value,
        Opcode.DEFER_ADD.value,
        Opcode.DEFER_ABORT.value,
    }
)

#: Ops ``POST /v1/checkpoint/{run}/async`` accepts; anything else is answered 400 (§3.3b, §6.3.1).
ASYNC_CHECKPOINT_OPCODES = frozenset(
    {
        Opcode.STEP.value,
        Opcode.STEP_RUN.value,
        Opcode.STEP_PLANNED.value,
        Opcode.DEFER_ADD.value,
        Opcode.DEFER_ABORT.value,
    }
)

#: Ops that ride along another op and do not make a reply a parallel group (``OpcodeIsLazy``).
LAZY_OPCODES = frozenset({Opcode.DEFER_ADD.value, Opcode.DEFER_ABORT.value})

# Internal event names (§5.1).
EVENT_FUNCTION_INVOKED = "inngest/function.invoked"
EVENT_FUNCTION_FINISHED = "inngest/function.finished"
EVENT_FUNCTION_FAILED = "inngest/function.failed"
EVENT_FUNCTION_CANCELLED = "inngest/function.cancelled"
EVENT_SCHEDULED_TIMER = "inngest/scheduled.timer"


# --------------------------------------------------------------------------------------------
# JSON and ids


def dumps(value: Any) -> str:
    """Compact, deterministic JSON (no spaces after ``,`` and ``:``), as steps are recorded."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def hash_step_id(user_id: str) -> str:
    """``hex(sha1(utf8(id)))``: the hashed step id the server keys memos by (§3.3)."""
    return hashlib.sha1(user_id.encode()).hexdigest()


def step_id_for_occurrence(user_id: str, index: int) -> str:
    """The hashed id of the ``index``-th (0-based) use of ``user_id`` within a run."""
    return hash_step_id(user_id if index == 0 else f"{user_id}:{index}")


RUN_COMPLETE_ID = hash_step_id("complete")


def composite_function_id(app_id: str, function_slug: str) -> str:
    return f"{app_id}-{function_slug}"


# --------------------------------------------------------------------------------------------
# Durations (Go syntax plus d and w) and dates


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)")


def format_duration(value: timedelta) -> str:
    """A Go-style duration string: ``2s``, ``10m``, ``1h30m``, ``1500ms``."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms <= 0:
        return "0s"
    if total_ms % 1000:
        return f"{total_ms}ms"
    seconds = total_ms // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs:
        out += f"{secs}s"
    return out


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration (``1h30m``, ``500ms``, ``2d``). Raises ValueError."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    if s == "0":
        return timedelta(0)
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(s):
        if match.start() != pos:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(s):
        raise ValueError(f"invalid duration {text!r}")
    return timedelta(seconds=total)


def duration_text(value: object) -> str:
    """A Go-style duration string from a timedelta, or a duration string passed through after a check.

    Raises ValueError (with the accepted forms in its message) for anything else, ints included:
    a bare number is ambiguous (the official SDKs disagree on its unit).
    """
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, str):
        try:
            parse_duration(value)
        except ValueError:
            pass
        else:
            return value
    raise ValueError(
        f"invalid duration {value!r}; use a timedelta or a string such as '30s', '10m', '1h30m', '2d'"
    )


def format_datetime(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    text = value.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def parse_sleep_target(text: str, now: datetime) -> datetime:
    """When a Sleep op's ``opts.duration``/``name`` ends: a duration or a date (§3.2)."""
    s = text.strip()
    if len(s) >= 10:
        try:
            return parse_datetime(s)
        except ValueError:
            pass
    return now + parse_duration(s)


# --------------------------------------------------------------------------------------------
# Models: things the SDK receives


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Open(BaseModel):
    """A model that keeps unknown fields (events, errors: users and servers add their own)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class StackInfo(_Model):
    stack: list[str] = Field(default_factory=list)
    current: int = 0


class CallContext(_Model):
    """``ctx`` of a call request (§2.2)."""

    run_id: str
    fn_id: str | None = None
    env: str | None = None
    step_id: str | None = None
    attempt: int = 0
    max_attempts: int | None = None
    stack: StackInfo | None = None
    qi_id: str | None = None
    request_id: str | None = None
    generation_id: int | None = None
    job_id: str | None = None
    disable_immediate_execution: bool = False
    use_api: bool = False


class CallRequest(_Model):
    """The body of a call request (server -> SDK POST)."""

    event: dict[str, Any] = Field(default_factory=dict)
    events: list[dict[str, Any]] = Field(default_factory=list)
    steps: dict[str, Any] = Field(default_factory=dict)
    ctx: CallContext
    version: int | None = None
    use_api: bool = False
    defers: dict[str, Any] | None = None


class MemoKind(str, enum.Enum):
    DATA = "data"
    ERROR = "error"
    INPUT = "input"
    RAW = "raw"


def memo_kind(value: Any) -> MemoKind:
    """Classify a memo: an object whose only key is data/error/input, else a raw value (§2.2)."""
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        if key == "data":
            return MemoKind.DATA
        if key == "error":
            return MemoKind.ERROR
        if key == "input":
            return MemoKind.INPUT
    return MemoKind.RAW


class ErrorPayload(_Open):
    """``{name, message, stack?, noRetry?, ...}`` as carried by StepError/StepFailed and memos."""

    name: str = "Error"
    message: str = ""
    stack: str | None = None
    noRetry: bool | None = None


class WireEvent(_Open):
    """An event as sent to ``POST /e/{key}`` and delivered in call requests."""

    name: str
    data: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None
    ts: int | None = None
    user: dict[str, Any] | None = None
    v: str | None = None


class GeneratorOp(_Open):
    """An op as an SDK returns it in a 206 or sends it to the checkpoint API (§3.2).

    ``data`` may legitimately be ``null``; use ``has_data`` to tell null from absent.
    """

    op: str
    id: str = ""
    name: str | None = None
    displayName: str | None = None
    opts: dict[str, Any] | None = None
    data: Any = None
    error: dict[str, Any] | None = None
    timing: dict[str, Any] | None = None
    userland: dict[str, Any] | None = None

    @property
    def has_data(self) -> bool:
        return "data" in self.model_fields_set


class CheckpointRequest(_Model):
    """Body of ``POST /v1/checkpoint/{run_id}/async`` (§6.3.1)."""

    run_id: str
    fn_id: str | None = None
    qi_id: str | None = None
    steps: list[GeneratorOp] = Field(default_factory=list)
    request_id: str | None = None
    generation_id: int | None = None
    request_started_at: int | None = None
    ts: int | None = None


# --------------------------------------------------------------------------------------------
# Models: the sync (register) payload


class Runtime(_Model):
    type: str = "http"
    url: str


class RetryConfig(_Model):
    attempts: int


class StepConfig(_Model):
    id: str = "step"
    name: str = "step"
    runtime: Runtime
    retries: RetryConfig | None = None


class EventTrigger(_Model):
    event: str
    expression: str | None = None


class CronTrigger(_Model):
    cron: str
    jitter: str | None = None


class ConcurrencyLimit(_Model):
    limit: int
    key: str | None = None
    scope: Literal["fn", "env", "account"] | None = None


class BatchEventsConfig(_Model):
    maxSize: int
    timeout: str
    key: str | None = None
    if_: str | None = Field(default=None, alias="if")


class RateLimitConfig(_Model):
    limit: int
    period: str
    key: str | None = None


class ThrottleConfig(_Model):
    limit: int
    period: str
    key: str | None = None
    burst: int | None = None


class DebounceConfig(_Model):
    period: str
    key: str | None = None
    timeout: str | None = None


class PriorityConfig(_Model):
    run: str | None = None


class TimeoutsConfig(_Model):
    start: str | None = None
    finish: str | None = None


class SingletonConfig(_Model):
    key: str | None = None
    mode: Literal["skip", "cancel"] = "skip"


class CancelConfig(_Model):
    event: str
    if_: str | None = Field(default=None, alias="if")
    timeout: str | None = None


class FunctionConfig(_Model):
    """One element of ``functions[]`` in the register payload (``SDKFunction``)."""

    id: str
    name: str
    triggers: list[EventTrigger | CronTrigger] = Field(default_factory=list)
    steps: dict[str, StepConfig] = Field(default_factory=dict)
    concurrency: int | list[ConcurrencyLimit] | None = None
    batchEvents: BatchEventsConfig | None = None
    idempotency: str | None = None
    rateLimit: RateLimitConfig | None = None
    throttle: ThrottleConfig | None = None
    debounce: DebounceConfig | None = None
    priority: PriorityConfig | None = None
    timeouts: TimeoutsConfig | None = None
    singleton: SingletonConfig | None = None
    cancel: list[CancelConfig] | None = None

    def retry_count(self) -> int:
        """Retries after the first attempt (``retries.attempts`` is a retry count, §1.3)."""
        step = self.steps.get("step")
        if step is None or step.retries is None:
            return DEFAULT_RETRIES
        return max(0, min(step.retries.attempts, MAX_RETRIES))

    def runtime_url(self) -> str | None:
        step = self.steps.get("step")
        return step.runtime.url if step else None

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RegisterRequest(_Model):
    """Body of ``POST /fn/register``. Use :func:`parse_register_request` for case-insensitive keys."""

    url: str
    deployType: str = "ping"
    appName: str
    appVersion: str | None = None
    sdk: str | None = None
    v: str | None = None
    framework: str | None = None
    capabilities: dict[str, str] | None = None
    functions: list[FunctionConfig] = Field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


_REGISTER_KEYS = {name.lower(): name for name in RegisterRequest.model_fields}


def parse_register_request(raw: Any) -> RegisterRequest:
    """Validate a register body, matching top-level keys case-insensitively (Go's decoder does)."""
    if not isinstance(raw, dict):
        raise ValueError("the register body must be a JSON object")
    normalised = {_REGISTER_KEYS.get(str(k).lower(), str(k)): v for k, v in raw.items()}
    if not normalised.get("appName"):
        raise ValueError("appName is required")
    return RegisterRequest.model_validate(normalised)


# --------------------------------------------------------------------------------------------
# Op builders (plain dicts: cheap on the hot path)


_STEP_RUN = Opcode.STEP_RUN.value  # enum attribute access is slow on the per-step path


def step_run_op(
    hashed_id: str,
    user_id: str,
    data: Any,
    *,
    start_ns: int | None = None,
    duration_ns: int | None = None,
    index: int = 0,
    display_name: str | None = None,
) -> dict[str, Any]:
    userland: dict[str, Any] = {"id": user_id}
    if index:
        userland["index"] = index
    op: dict[str, Any] = {
        "op": _STEP_RUN,
        "id": hashed_id,
        "name": user_id,
        "displayName": display_name or user_id,
        "data": data,
        "userland": userland,
    }
    if start_ns is not None:
        op["timing"] = {"a": start_ns, "b": duration_ns or 0}
    return op


def error_payload(exc: BaseException, *, no_retry: bool | None = None) -> dict[str, Any]:
    """Serialise an exception as ``{name, message, stack?, noRetry?}``."""
    import traceback

    name = type(exc).__name__
    if name in ("Exception",):
        name = "Error"
    payload: dict[str, Any] = {
        "name": name,
        "message": str(exc),
        "stack": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }
    if no_retry is not None:
        payload["noRetry"] = no_retry
    return payload


def _userland(user_id: str, index: int) -> dict[str, Any]:
    return {"id": user_id, "index": index} if index else {"id": user_id}


def step_planned_op(
    hashed_id: str, user_id: str, *, index: int = 0, step_type: str = "step.run"
) -> dict[str, Any]:
    """``StepPlanned``: the orchestrator is to call back with ``stepId=<hashed_id>``."""
    return {
        "op": Opcode.STEP_PLANNED.value,
        "id": hashed_id,
        "name": user_id,
        "displayName": user_id,
        "opts": {"type": step_type},
        "data": None,
        "userland": _userland(user_id, index),
    }


def step_error_op(
    hashed_id: str, user_id: str, error: dict[str, Any], *, final: bool, index: int = 0
) -> dict[str, Any]:
    """``StepError`` (attempts remain) or ``StepFailed`` (final) for a step that raised."""
    return {
        "op": (Opcode.STEP_FAILED if final else Opcode.STEP_ERROR).value,
        "id": hashed_id,
        "name": user_id,
        "displayName": user_id,
        "error": error,
        "data": None,
        "userland": _userland(user_id, index),
    }


def sleep_op(hashed_id: str, user_id: str, until: str, *, index: int = 0) -> dict[str, Any]:
    """``Sleep`` with a Go-style duration or an RFC 3339 date in ``opts.duration`` (§3.3a)."""
    return {
        "op": Opcode.SLEEP.value,
        "id": hashed_id,
        "name": user_id,
        "displayName": user_id,
        "opts": {"duration": until},
        "data": None,
        "userland": _userland(user_id, index),
    }


def wait_for_event_op(
    hashed_id: str, user_id: str, event: str, timeout: str, if_: str | None = None, *, index: int = 0
) -> dict[str, Any]:
    """``WaitForEvent`` with ``opts {event, if?, timeout}`` (§3.3a)."""
    opts: dict[str, Any] = {"event": event, "timeout": timeout}
    if if_:
        opts["if"] = if_
    return {
        "op": Opcode.WAIT_FOR_EVENT.value,
        "id": hashed_id,
        "name": user_id,
        "displayName": user_id,
        "opts": opts,
        "data": None,
        "userland": _userland(user_id, index),
    }


def invoke_op(
    hashed_id: str,
    user_id: str,
    function_id: str,
    data: Any,
    timeout: str | None = None,
    *,
    index: int = 0,
) -> dict[str, Any]:
    """``InvokeFunction`` with ``opts {function_id, payload: {data}, timeout?}`` (§3.2)."""
    opts: dict[str, Any] = {"function_id": function_id, "payload": {"data": data}}
    if timeout:
        opts["timeout"] = timeout
    return {
        "op": Opcode.INVOKE_FUNCTION.value,
        "id": hashed_id,
        "name": user_id,
        "displayName": user_id,
        "opts": opts,
        "data": None,
        "userland": _userland(user_id, index),
    }


def run_complete_op(data: Any) -> dict[str, Any]:
    """``RunComplete``: the function returned ``data`` (ends a checkpointed request)."""
    return {"op": Opcode.RUN_COMPLETE.value, "id": RUN_COMPLETE_ID, "data": data}
