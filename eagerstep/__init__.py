"""eagerstep: durable functions for Django, Flask and FastAPI over the Inngest protocol."""

from eagerstep._version import __version__
from eagerstep.core import ai
from eagerstep.core.checkpoint import Checkpointing
from eagerstep.core.client import Client
from eagerstep.core.errors import (
    ConfigurationError,
    EventSendError,
    NonRetriableError,
    RetryAfterError,
    StepError,
    StepUsageError,
)
from eagerstep.core.function import Cron, Event, Function
from eagerstep.core.middleware import Middleware
from eagerstep.core.steps import AsyncContext, Context

__all__ = [
    "AsyncContext",
    "Checkpointing",
    "Client",
    "ConfigurationError",
    "Context",
    "Cron",
    "Event",
    "EventSendError",
    "Function",
    "Middleware",
    "NonRetriableError",
    "RetryAfterError",
    "StepError",
    "StepUsageError",
    "__version__",
    "ai",
]
