"""``ctx.step.ai``: model calls as durable steps, made by the orchestrator (``infer``) or by the worker
(``wrap``).

``infer`` sends the ``AIGateway`` op in the official SDKs' shape (``opts {url, auth_key, format,
headers, body, type: "step.ai.infer"}``): the orchestrator makes the HTTP request to the model and
records the reply as the step's output, so no worker waits on a slow model. ``wrap`` runs your own
model call in the worker as a step, recorded (and checkpointed) like any ``step.run``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from eagerstep.core import protocol

if TYPE_CHECKING:
    from eagerstep.core.steps import AsyncStep, SyncStep

T = TypeVar("T")

__all__ = ["Model", "anthropic", "openai"]


@dataclass(frozen=True)
class Model:
    """Where and how the orchestrator calls a model: the endpoint ``url``, the API key and its
    ``format`` (``openai-chat``: ``Authorization: Bearer``; ``anthropic``: ``x-api-key``;
    ``gemini``: ``?key=``; ``bedrock``: ``Authorization`` as given), extra ``headers``, and the
    ``model`` name put in the body when the body has none."""

    url: str
    auth_key: str = ""
    format: str = "openai-chat"
    headers: Mapping[str, str] = field(default_factory=dict)
    model: str | None = None


def openai(
    *,
    model: str,
    api_key: str,
    base_url: str = "https://api.openai.com/v1",
    headers: Mapping[str, str] | None = None,
) -> Model:
    """An OpenAI-compatible chat completions endpoint (``{base_url}/chat/completions``)."""
    return Model(
        base_url.rstrip("/") + "/chat/completions", api_key, "openai-chat", dict(headers or {}), model
    )


def anthropic(
    *,
    model: str,
    api_key: str,
    base_url: str = "https://api.anthropic.com/v1",
    headers: Mapping[str, str] | None = None,
) -> Model:
    """Anthropic's messages endpoint (``{base_url}/messages``, ``anthropic-version: 2023-06-01``)."""
    return Model(
        base_url.rstrip("/") + "/messages",
        api_key,
        "anthropic",
        dict(headers or {"anthropic-version": "2023-06-01"}),
        model,
    )


def infer_op(hashed: str, step_id: str, index: int, model: Model, body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``AIGateway`` op, as the official SDKs send it."""
    request = dict(body)
    if model.model and not request.get("model"):
        request["model"] = model.model
    return {
        "op": protocol.Opcode.AI_GATEWAY.value,
        "id": hashed,
        "name": step_id,
        "displayName": step_id,
        "opts": {
            "type": "step.ai.infer",
            "url": model.url,
            "auth_key": model.auth_key,
            "format": model.format,
            "headers": dict(model.headers),
            "body": request,
        },
        "userland": {"id": step_id, "index": index} if index else {"id": step_id},
    }


class SyncAI:
    """``ctx.step.ai`` for ``def`` functions."""

    __slots__ = ("_step",)

    def __init__(self, step: SyncStep) -> None:
        self._step = step

    def infer(self, step_id: str, *, model: Model, body: Mapping[str, Any]) -> Any:
        """Have the orchestrator send ``body`` to ``model``; return the model's JSON reply.

        A failed request (after the run's retries) raises :class:`eagerstep.StepError` named
        ``AIGatewayError``."""
        st = self._step._state
        hashed, index = st.begin(step_id, "ai.infer")
        memo = st.lookup(hashed)
        if memo is not st.MISSING:
            return st.decode_run_memo(step_id, memo, None, None)
        st.new_async_op(step_id, infer_op(hashed, step_id, index, model, body))

    def wrap(self, step_id: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run the model call ``fn(*args, **kwargs)`` in the worker as a step (recorded and
        checkpointed like ``step.run``; its reply must be JSON-serialisable or a pydantic model)."""
        return self._step.run(step_id, lambda: fn(*args, **kwargs))


class AsyncAI:
    """``ctx.step.ai`` for ``async def`` functions."""

    __slots__ = ("_step",)

    def __init__(self, step: AsyncStep) -> None:
        self._step = step

    async def infer(self, step_id: str, *, model: Model, body: Mapping[str, Any]) -> Any:
        """Have the orchestrator send ``body`` to ``model``; return the model's JSON reply."""
        st = self._step._state
        hashed, index = st.begin(step_id, "ai.infer")
        memo = st.lookup(hashed)
        if memo is not st.MISSING:
            return st.decode_run_memo(step_id, memo, None, None)
        st.new_async_op(step_id, infer_op(hashed, step_id, index, model, body))

    async def wrap(self, step_id: str, fn: Callable[..., Awaitable[T] | T], *args: Any, **kwargs: Any) -> T:
        """Run the model call ``fn(*args, **kwargs)`` (a coroutine function or a plain one) in the
        worker as a step, recorded and checkpointed like ``step.run``."""
        call: Callable[[], Any] = lambda: fn(*args, **kwargs)  # noqa: E731
        result: T = await self._step.run(step_id, call)
        return result
