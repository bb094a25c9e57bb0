"""Errors users raise or catch, and the configuration errors the SDK reports."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any


class EagerstepError(Exception):
    """Base class of every error this package raises on its own."""


class ConfigurationError(EagerstepError):
    """A setting is missing or invalid; the message says which one and how to fix it."""


class EventSendError(EagerstepError):
    """The event API refused the events or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, ids: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.ids = ids or []


class NonRetriableError(EagerstepError):
    """Raise it to fail a step or a function at once, without further attempts."""

    def __init__(self, message: str = "", *, cause: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


class RetryAfterError(EagerstepError):
    """Raise it to retry, but not before ``retry_after`` (seconds, a timedelta or a datetime)."""

    def __init__(self, message: str, retry_after: int | float | timedelta | datetime) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def header_value(self) -> str:
        """The ``Retry-After`` header value: whole seconds, or an HTTP date for a datetime."""
        value = self.retry_after
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            return value.astimezone(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
        seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
        return str(max(1, round(seconds)))


class StepError(EagerstepError):
    """A step failed for good; raised where the step is called, on this and every later replay.

    ``name`` and ``message`` are the original error's; ``stack`` its traceback text, if recorded.
    """

    def __init__(
        self,
        message: str,
        *,
        step_id: str = "",
        name: str = "Error",
        stack: str | None = None,
        data: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.step_id = step_id
        self.name = name
        self.stack = stack
        self.data = data

    def __str__(self) -> str:
        where = f"step {self.step_id!r} failed" if self.step_id else "a step failed"
        return f"{where}: {self.name}: {self.message}"


class StepUsageError(NonRetriableError):
    """Step code breaks a rule of durable execution (e.g. one id used for two kinds of step)."""


class OutputSerializationError(NonRetriableError):
    """A step or function returned a value that cannot be stored as JSON."""
