"""Trigger, wait and cancel expressions: CEL, evaluated with the cel-python package (``celpy``).

Bindings: ``event`` (the run's triggering event, or the incoming event for a trigger) and
``async`` (the incoming event, for waits and cancellations). A missing field makes the
expression false rather than an error, as on the Inngest server.
"""

from __future__ import annotations

import functools
from typing import Any

import celpy
from celpy.adapter import json_to_cel


class ExpressionError(ValueError):
    """The expression does not parse as CEL; the message says where."""


_ENV = celpy.Environment()


@functools.lru_cache(maxsize=1024)
def compile_expression(text: str) -> Any:
    try:
        return _ENV.program(_ENV.compile(text))
    except Exception as exc:  # celpy raises its own parse error types
        raise ExpressionError(f"invalid expression {text!r}: {exc}") from exc


def check(text: str) -> None:
    """Raise ExpressionError when ``text`` is not valid CEL."""
    compile_expression(text)


def matches(text: str | None, *, event: Any = None, async_event: Any = None) -> bool:
    """True when ``text`` is empty or evaluates to true with the given bindings."""
    if not text or not text.strip():
        return True
    try:
        program = compile_expression(text)
    except ExpressionError:
        return False
    activation: dict[str, Any] = {}
    if event is not None:
        activation["event"] = json_to_cel(event)
    if async_event is not None:
        activation["async"] = json_to_cel(async_event)
    try:
        result = program.evaluate(activation)
    except Exception:
        return False
    return result is True or (isinstance(result, celpy.celtypes.BoolType) and bool(result))


def evaluate_key(text: str, *, event: Any) -> str:
    """The string value of a key expression (concurrency keys); "" when it cannot be evaluated."""
    try:
        result = compile_expression(text).evaluate({"event": json_to_cel(event)})
    except Exception:
        return ""
    return "" if isinstance(result, Exception) else str(result)
