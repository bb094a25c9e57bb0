"""The ``error`` of an ``inngest/function.failed`` event, in the Inngest server's shape.

The server builds it from the final reply (``state.DriverResponse.StandardError``): ``error`` is the
transport-level error (``"invalid status code: 500"`` for an error reply, the network error when
the app was unreachable), unless the body carries an ``error`` of its own; ``name``, ``message``,
``stack`` and ``cause`` come from the SDK's error body (or from its ``error``/``body`` field when
that holds the error object). The run's own output keeps the SDK's body unchanged.
"""

from __future__ import annotations

import json
from typing import Any

DEFAULT_NAME = "Error"
DEFAULT_MESSAGE = "Function execution error"


def _unwrap(error: dict[str, Any]) -> dict[str, Any]:
    """The server's ``processErrorFields``: an ``error`` or ``body`` field holding the real error
    (an object, or a string of JSON) replaces the outer one."""
    for key in ("error", "body"):
        value = error.get(key)
        if isinstance(value, dict):
            return value
        if isinstance(value, str) and len(value) <= 32 * 1024:
            try:
                inner = json.loads(value)
            except ValueError:
                continue
            if isinstance(inner, str):
                try:
                    inner = json.loads(inner)
                except ValueError:
                    continue
            if isinstance(inner, dict):
                return inner
    return error


def standard_error(error: dict[str, Any] | None, transport_error: str | None) -> dict[str, Any]:
    """``error`` (the SDK's error body, or the engine's own error) as the server's StandardError."""
    result: dict[str, Any] = {"error": DEFAULT_MESSAGE, "name": DEFAULT_NAME, "message": DEFAULT_MESSAGE}
    processed = _unwrap(error or {})
    for key in ("error", "name", "message", "stack"):
        value = processed.get(key)
        if isinstance(value, str) and value:
            result[key] = value
    if "cause" in processed:
        result["cause"] = processed["cause"]
    fallback = transport_error or (error or {}).get("message")
    if isinstance(fallback, str) and fallback:
        if result["error"] == DEFAULT_MESSAGE:
            result["error"] = fallback
        if result["message"] == DEFAULT_MESSAGE:
            result["message"] = fallback
    return result
