"""Sentry: one event per final failure of a step or a function, tagged with the run and the step
(``pip install eagerstep[sentry]``).

    import sentry_sdk
    from eagerstep.extras.sentry import SentryMiddleware

    sentry_sdk.init(dsn=...)
    client = eagerstep.Client(app_id="shop", middleware=[SentryMiddleware()])

A failed attempt that the orchestrator retries is a breadcrumb, not an event; the last attempt's
failure is the event. A step that fails for good is reported then, with its own traceback; when
the function then lets its :class:`~eagerstep.StepError` through (a later request), that is the
same failure and is not reported again.
"""

from __future__ import annotations

from typing import Any

from eagerstep.core.errors import StepError
from eagerstep.core.middleware import Failure, Middleware

try:
    import sentry_sdk
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "eagerstep.extras.sentry needs the Sentry SDK: pip install 'eagerstep[sentry]'"
    ) from exc

__all__ = ["SentryMiddleware"]


class SentryMiddleware(Middleware):
    """Report final failures to Sentry. ``flush``: wait for the event to be sent before the
    request answers (for short-lived processes, as serverless platforms run them).

    eagerstep logs every failed attempt on the ``eagerstep`` logger (the last one at ERROR level),
    which Sentry's logging integration would turn into events of their own: so that a final failure
    is one event, this middleware tells the integration to ignore that logger (``ignore_logger=False``
    keeps it).
    """

    def __init__(
        self, *, flush: bool = False, flush_timeout: float = 2.0, ignore_logger: bool = True
    ) -> None:
        self.flush = flush
        self.flush_timeout = flush_timeout
        if ignore_logger:
            from sentry_sdk.integrations.logging import ignore_logger as ignore

            ignore("eagerstep")

    def on_failure(self, failure: Failure) -> None:
        run, step = failure.run, failure.step
        where = f"step {step.id!r}" if step is not None else "the function"
        if not failure.final:
            sentry_sdk.add_breadcrumb(
                category="eagerstep",
                level="warning",
                message=(
                    f"{where} of {run.function_id} raised {type(failure.error).__name__} on attempt "
                    f"{run.attempt + 1} of {run.max_attempts}; the orchestrator retries"
                ),
                data={"run_id": run.run_id},
            )
            return
        if step is None and isinstance(failure.error, StepError):
            return  # the step's final failure, reported when it happened
        tags: dict[str, Any] = {
            "eagerstep.app_id": run.function.client.app_id,
            "eagerstep.function_id": run.function_id,
            "eagerstep.run_id": run.run_id,
            "eagerstep.attempt": run.attempt,
        }
        event_name = run.event.get("name")
        if isinstance(event_name, str):
            tags["eagerstep.event_name"] = event_name
        if step is not None:
            tags["eagerstep.step_id"] = step.id
            tags["eagerstep.step.checkpointed"] = step.checkpointed
        with sentry_sdk.new_scope() as scope:
            for key, value in tags.items():
                scope.set_tag(key, value)
            scope.set_context(
                "eagerstep",
                {
                    "run_id": run.run_id,
                    "function_id": run.function_id,
                    "attempt": run.attempt,
                    "max_attempts": run.max_attempts,
                    "step_id": step.id if step is not None else None,
                    "step_hashed_id": step.hashed_id if step is not None else None,
                },
            )
            sentry_sdk.capture_exception(failure.error)
        if self.flush:
            sentry_sdk.flush(timeout=self.flush_timeout)
