"""Middleware: hooks around functions, steps and sent events (see docs/middleware.md)."""

from eagerstep.core.middleware import (
    Failure,
    FunctionInput,
    Middleware,
    RunInfo,
    RunOutcome,
    StepInfo,
    StepResult,
)

__all__ = [
    "Failure",
    "FunctionInput",
    "Middleware",
    "RunInfo",
    "RunOutcome",
    "StepInfo",
    "StepResult",
]
