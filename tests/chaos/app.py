"""The app the chaos suite runs: one 10-step function whose steps append to an execution log.

Configured by environment (the app runs in gunicorn/uvicorn worker processes):

- ``CHAOS_ENGINE_URL``: the orchestrator (the fault proxy in front of the engine);
- ``CHAOS_SERVE_ORIGIN``: the origin the engine reaches this app at (the fault proxy in front of it);
- ``CHAOS_CHECKPOINTING``: ``1`` (default) or ``0``;
- ``CHAOS_LOG``: the execution log, one JSON line per step start and end:
  ``{"run": run id, "step": step id, "pid": worker pid, "attempt": ctx.attempt, "phase": "start"|"end",
  "t": unix time}``.

``python -m gunicorn 'tests.chaos.app:flask_app()'``, ``'tests.chaos.app:django_app()'`` and
``python -m uvicorn --factory tests.chaos.app:fastapi_app`` serve it at ``/api/inngest``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import eagerstep

STEPS = 10
STEP_SECONDS = 0.005
EVENT = "chaos/ten"
FUNCTION_ID = "ten-steps"
RETRIES = 10


def _log(line: dict[str, Any]) -> None:
    path = os.environ.get("CHAOS_LOG")
    if not path:
        return
    data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    # O_APPEND: each line is one write(2) under PIPE_BUF, so lines from many processes never interleave
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _client() -> eagerstep.Client:
    engine = os.environ.get("CHAOS_ENGINE_URL", "http://127.0.0.1:8288")
    return eagerstep.Client(
        app_id="chaos",
        dev=True,
        api_base_url=engine,
        event_api_base_url=engine,
        serve_origin=os.environ.get("CHAOS_SERVE_ORIGIN") or None,
        serve_path="/api/inngest",
    )


def _functions(client: eagerstep.Client) -> list[eagerstep.Function[Any]]:
    checkpointing = os.environ.get("CHAOS_CHECKPOINTING", "1") == "1"

    def ten_steps(ctx: eagerstep.Context) -> dict[str, Any]:
        values = []
        for i in range(STEPS):

            def body(i: int = i) -> int:
                mark = {"run": ctx.run_id, "step": f"s{i}", "pid": os.getpid(), "attempt": ctx.attempt}
                _log({**mark, "phase": "start", "t": time.time()})
                time.sleep(STEP_SECONDS)
                _log({**mark, "phase": "end", "t": time.time()})
                return i * i

            values.append(ctx.step.run(f"s{i}", body))
        return {"sum": sum(values), "n": len(values)}

    ten_steps.__name__ = "ten_steps"
    return [
        client.function(
            id=FUNCTION_ID, trigger=eagerstep.Event(EVENT), retries=RETRIES, checkpointing=checkpointing
        )(ten_steps)
    ]


#: what a completed run returns
EXPECTED_OUTPUT = {"sum": sum(i * i for i in range(STEPS)), "n": STEPS}


def flask_app() -> Any:
    from flask import Flask

    from eagerstep.integrations.flask import EagerStep

    client = _client()
    app = Flask("chaos")
    EagerStep(app, client=client, functions=_functions(client))
    return app


def fastapi_app() -> Any:
    from fastapi import FastAPI

    from eagerstep.integrations.fastapi import router

    client = _client()
    app = FastAPI()
    app.include_router(router(client, _functions(client)), prefix="/api/inngest")
    return app


CLIENT: eagerstep.Client | None = None
FUNCTIONS: list[eagerstep.Function[Any]] = []


def django_app() -> Any:
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    global CLIENT, FUNCTIONS
    CLIENT = _client()
    FUNCTIONS = _functions(CLIENT)
    settings.configure(
        DEBUG=False,
        SECRET_KEY="chaos",
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        ROOT_URLCONF="benchmarks.django_urls",
        INSTALLED_APPS=["eagerstep.integrations.django"],
        MIDDLEWARE=[],
        DATABASES={},
        LOGGING_CONFIG=None,
        EAGERSTEP={"CLIENT": "tests.chaos.app.CLIENT", "FUNCTIONS": ["tests.chaos.app.FUNCTIONS"]},
    )
    django.setup()
    return get_wsgi_application()
