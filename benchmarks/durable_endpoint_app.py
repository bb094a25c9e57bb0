"""The app the durable-endpoint benchmark calls: the same five steps as a plain view, as a durable
endpoint, and as an event-triggered function. Run as a child process:

    python benchmarks/durable_endpoint_app.py <django|flask|fastapi> <engine url>

It prints ``ready <port>`` once it listens on a free loopback port.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import eagerstep  # noqa: E402

STEPS = 5
#: Every step waits for the response: one POST /v1/checkpoint per request.
BATCHED = eagerstep.Checkpointing(buffered_steps=10)


def work(i: int) -> dict[str, int]:
    """A trivial step body: the benchmark measures what eagerstep adds, not the work."""
    return {"step": i, "value": i * i}


def make_client(engine_url: str) -> eagerstep.Client:
    return eagerstep.Client(app_id="bench-endpoints", dev=engine_url, api_base_url=engine_url)


def flask_app(client: eagerstep.Client) -> Any:
    from flask import Flask, jsonify

    from eagerstep.integrations.flask import blueprint
    from eagerstep.integrations.flask.endpoints import durable_endpoint

    @client.function(id="five-steps", trigger=eagerstep.Event("bench/five"))
    def five_steps(ctx: eagerstep.Context) -> int:
        return sum(ctx.step.run(f"s{i}", work, i)["value"] for i in range(STEPS))

    app = Flask(__name__)
    app.register_blueprint(blueprint(client, [five_steps]))

    @app.post("/plain")
    def plain() -> Any:
        return jsonify(total=sum(work(i)["value"] for i in range(STEPS)))

    @app.post("/durable")
    @durable_endpoint(client, id="five-steps-endpoint")
    def durable(ctx: eagerstep.Context) -> Any:
        return jsonify(total=sum(ctx.step.run(f"s{i}", work, i)["value"] for i in range(STEPS)))

    @app.post("/durable-batched")
    @durable_endpoint(client, id="five-steps-batched", checkpointing=BATCHED)
    def durable_batched(ctx: eagerstep.Context) -> Any:
        return jsonify(total=sum(ctx.step.run(f"s{i}", work, i)["value"] for i in range(STEPS)))

    return app


def fastapi_app(client: eagerstep.Client) -> Any:
    from fastapi import FastAPI

    from eagerstep.integrations.fastapi import router
    from eagerstep.integrations.fastapi.endpoints import durable_endpoint

    @client.function(id="five-steps", trigger=eagerstep.Event("bench/five"))
    async def five_steps(ctx: eagerstep.AsyncContext) -> int:
        return sum([(await ctx.step.run(f"s{i}", work, i))["value"] for i in range(STEPS)])

    app = FastAPI()
    app.include_router(router(client, [five_steps]), prefix="/api/inngest")

    @app.post("/plain")
    async def plain() -> dict[str, int]:
        return {"total": sum(work(i)["value"] for i in range(STEPS))}

    @app.post("/durable")
    @durable_endpoint(client, id="five-steps-endpoint")
    async def durable(ctx: eagerstep.AsyncContext) -> dict[str, int]:
        return {"total": sum([(await ctx.step.run(f"s{i}", work, i))["value"] for i in range(STEPS)])}

    @app.post("/durable-batched")
    @durable_endpoint(client, id="five-steps-batched", checkpointing=BATCHED)
    async def durable_batched(ctx: eagerstep.AsyncContext) -> dict[str, int]:
        return {"total": sum([(await ctx.step.run(f"s{i}", work, i))["value"] for i in range(STEPS)])}

    return app


def django_app(engine_url: str) -> Any:
    """Django's sync (WSGI) view; the project is benchmarks/durable_endpoint_django.py."""
    import os

    import django
    from django.conf import settings

    os.environ["EAGERSTEP_BENCH_ENGINE_URL"] = engine_url
    project = "benchmarks.durable_endpoint_django"
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmarks",
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        ROOT_URLCONF=project,
        INSTALLED_APPS=["eagerstep.integrations.django"],
        MIDDLEWARE=[],
        DATABASES={},
        LOGGING_CONFIG=None,
        EAGERSTEP={"CLIENT": f"{project}.client", "FUNCTIONS": [f"{project}.FUNCTIONS"]},
    )
    django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def main() -> None:
    framework, engine_url = sys.argv[1], sys.argv[2]
    from eagerstep.engine.server import bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    if framework in ("django", "flask"):
        from werkzeug.serving import make_server

        sock.close()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        app = django_app(engine_url) if framework == "django" else flask_app(make_client(engine_url))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        print(f"ready {server.server_port}", flush=True)
        server.serve_forever()
    else:
        import uvicorn

        print(f"ready {port}", flush=True)
        config = uvicorn.Config(fastapi_app(make_client(engine_url)), log_level="warning")
        uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
