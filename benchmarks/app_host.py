"""One benchmark app in its own process, behind a real server on 127.0.0.1:<free port>.

``python benchmarks/app_host.py FRAMEWORK --engine URL`` serves ``bench_functions`` and prints one
JSON line, ``{"url": <serve URL>}``, once it accepts connections. FRAMEWORK is one of:

- ``django-wsgi``: Django's sync view on werkzeug's threaded WSGI server (HTTP/1.1 keep-alive);
- ``django-asgi``: Django's async view on uvicorn;
- ``flask``: the Flask extension on werkzeug's threaded WSGI server;
- ``fastapi``: the FastAPI router on uvicorn;
- ``inngest-flask``: the same functions written with the official ``inngest`` SDK, on Flask/werkzeug.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

FRAMEWORKS = ("django-wsgi", "django-asgi", "flask", "fastapi", "inngest-flask")
ASGI = ("django-asgi", "fastapi")


def _django(engine_url: str, asgi: bool) -> Any:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmarks",
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        ROOT_URLCONF="benchmarks.django_urls_async" if asgi else "benchmarks.django_urls",
        INSTALLED_APPS=["eagerstep.integrations.django"],
        MIDDLEWARE=[],
        DATABASES={},
        LOGGING_CONFIG=None,
        EAGERSTEP={
            "CLIENT": "benchmarks.bench_functions.client",
            "FUNCTIONS": ["benchmarks.bench_functions.FUNCTIONS"],
            "DEV": True,
            "API_BASE_URL": engine_url,
            "EVENT_API_BASE_URL": engine_url,
        },
    )
    django.setup()
    if asgi:
        from django.core.asgi import get_asgi_application

        return get_asgi_application()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def _flask() -> Any:
    from flask import Flask

    from benchmarks import bench_functions
    from eagerstep.integrations.flask import EagerStep

    app = Flask("bench")
    EagerStep(app, client=bench_functions.client, functions=bench_functions.FUNCTIONS)
    return app


def _fastapi() -> Any:
    from fastapi import FastAPI

    from benchmarks import bench_functions
    from eagerstep.integrations.fastapi import router

    app = FastAPI()
    app.include_router(router(bench_functions.client, bench_functions.FUNCTIONS), prefix="/api/inngest")
    return app


def _official(engine_url: str) -> Any:
    import inngest
    import inngest.flask
    from flask import Flask

    from benchmarks import bench_functions

    client = inngest.Inngest(
        app_id="bench-official",
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        logger=logging.getLogger("bench-official"),
    )
    app = Flask("bench-official")
    inngest.flask.serve(app, client, bench_functions.official_functions(client))
    return app


def build(framework: str, engine_url: str) -> Any:
    if framework in ("django-wsgi", "django-asgi"):
        return _django(engine_url, asgi=framework == "django-asgi")
    if framework == "flask":
        return _flask()
    if framework == "fastapi":
        return _fastapi()
    if framework == "inngest-flask":
        return _official(engine_url)
    raise SystemExit(f"unknown framework {framework!r}; pick one of {', '.join(FRAMEWORKS)}")


def serve_wsgi(app: Any) -> None:
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    print(json.dumps({"url": f"http://127.0.0.1:{server.server_port}/api/inngest"}), flush=True)
    server.serve_forever()


def serve_asgi(app: Any, lifespan: str) -> None:
    import asyncio

    import uvicorn

    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the listening
    # socket's proto is IPPROTO_TCP; with proto 0, uvicorn's two writes per response (head, body) stall
    # ~40 ms on delayed ACKs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan=lifespan, log_level="warning", access_log=False, timeout_keep_alive=75)
    )

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.005)
        print(json.dumps({"url": f"http://127.0.0.1:{port}/api/inngest"}), flush=True)
        await task

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("framework", choices=FRAMEWORKS)
    parser.add_argument("--engine", required=True, help="the engine's base URL")
    args = parser.parse_args()
    os.environ["BENCH_ENGINE_URL"] = args.engine
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    logging.basicConfig(
        level=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = build(args.framework, args.engine)
    if args.framework in ASGI:
        serve_asgi(app, "off" if args.framework == "django-asgi" else "on")
    else:
        serve_wsgi(app)


if __name__ == "__main__":
    main()
