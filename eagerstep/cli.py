"""The ``eagerstep`` command: ``dev`` (the embedded engine), ``send`` (an event), ``timers``, ``sync``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from eagerstep._version import __version__

DEFAULT_URL = "http://127.0.0.1:8288"
#: Kinds of the engine's timer queue (eagerstep.engine.model), listed here so the CLI imports no engine code.
TIMER_KINDS = frozenset(
    {
        "sleep",
        "wait_timeout",
        "invoke_timeout",
        "call",
        "cancel_timeout",
        "cron",
        "run_timeout",
        "debounce",
        "batch",
    }
)


def _engine_url(args: argparse.Namespace) -> str:
    """--url, else INNGEST_DEV_URL, else INNGEST_DEV when it holds an origin (as apps read it)."""
    dev = os.environ.get("INNGEST_DEV", "")
    dev_origin = dev if dev.startswith(("http://", "https://")) else None
    return str(args.url or os.environ.get("INNGEST_DEV_URL") or dev_origin or DEFAULT_URL).rstrip("/")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eagerstep", description="eagerstep: durable functions over the Inngest protocol"
    )
    parser.add_argument("--version", action="version", version=f"eagerstep {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run the embedded dev orchestrator (Inngest-compatible API)")
    dev.add_argument(
        "-u",
        "--sdk-url",
        dest="app_urls",
        action="append",
        default=[],
        metavar="APP_URL",
        help="an app's serve URL to sync at start (repeatable), e.g. http://127.0.0.1:8000/api/inngest",
    )
    dev.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)"
    )
    dev.add_argument("-p", "--port", type=int, default=8288, help="port (default 8288)")
    dev.add_argument(
        "--db", default=os.path.join(".eagerstep", "dev.db"), help="SQLite file (default .eagerstep/dev.db)"
    )
    dev.add_argument(
        "--signing-key",
        default=os.environ.get("INNGEST_SIGNING_KEY"),
        help="sign calls and require this key on API calls (default: none, no auth)",
    )
    dev.add_argument(
        "--retry-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="delay between retries when the app gives no Retry-After (default 1)",
    )
    dev.add_argument(
        "--call-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long one call to an app may take (default 300)",
    )
    dev.add_argument(
        "--max-inline-state",
        type=int,
        default=4 * 1024 * 1024,
        metavar="BYTES",
        help="a call request larger than this carries no steps or events (use_api: the SDK fetches them"
        " from /v0/runs/{id}/actions and /batch), as an Inngest server does past 4 MB (default 4194304)",
    )
    dev.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    send = commands.add_parser("send", help="send an event to the engine (or any Inngest event API)")
    send.add_argument("name", help="event name, e.g. shop/order.created")
    send.add_argument("--data", default="{}", help="event data as a JSON object")
    send.add_argument("--id", default=None, help="event id (for deduplication)")
    send.add_argument("--url", default=None, help=f"engine URL (default {DEFAULT_URL})")
    send.add_argument("--key", default=os.environ.get("INNGEST_EVENT_KEY") or "dev", help="event key")

    timers = commands.add_parser("timers", help="list or fire pending timers (sleeps, timeouts, retries)")
    timers.add_argument("action", choices=["list", "fire"])
    timers.add_argument("--run", default=None, help="only this run's timers")
    timers.add_argument(
        "--kind",
        action="append",
        default=None,
        choices=sorted(TIMER_KINDS),
        help="timer kinds to fire (repeatable; default: sleep, wait_timeout, invoke_timeout, call)",
    )
    timers.add_argument("--url", default=None, help=f"engine URL (default {DEFAULT_URL})")

    sync = commands.add_parser("sync", help="ask the engine to sync an app now")
    sync.add_argument("app_url", help="the app's serve URL, e.g. http://127.0.0.1:8000/api/inngest")
    sync.add_argument("--url", default=None, help=f"engine URL (default {DEFAULT_URL})")

    run = commands.add_parser("run", help="show a run (status, output, steps)")
    run.add_argument("run_id")
    run.add_argument("--url", default=None, help=f"engine URL (default {DEFAULT_URL})")
    return parser


def _dev(args: argparse.Namespace) -> int:
    from eagerstep.engine import Engine, serve
    from eagerstep.engine.server import bind

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    engine = Engine(
        args.db,
        signing_key=args.signing_key,
        retry_interval=args.retry_interval,
        call_timeout=args.call_timeout,
        app_urls=args.app_urls,
        max_inline_state=args.max_inline_state,
    )
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(f"eagerstep dev: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]  # the real port, also with --port 0
    origin = f"http://{args.host}:{port}"
    print(f"eagerstep dev {__version__}: Inngest API on {origin} (state in {args.db})", flush=True)
    print(f"  point apps at it with INNGEST_DEV={origin}; dashboard: {origin}/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(engine, args.host, port, log_level="warning", sock=sock))
    return 0


def _request(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    import httpx

    try:
        response = httpx.request(method, url, json=body, timeout=30.0)
    except httpx.HTTPError as exc:
        raise SystemExit(f"eagerstep: cannot reach {url}: {exc} (is `eagerstep dev` running?)") from exc
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def _print(status: int, value: Any) -> int:
    print(json.dumps(value, indent=2))
    return 0 if status < 300 else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "dev":
        return _dev(args)
    base = _engine_url(args)
    if args.command == "send":
        try:
            data = json.loads(args.data)
        except ValueError as exc:
            print(f"eagerstep send: --data is not valid JSON: {exc}", file=sys.stderr)
            return 2
        if not isinstance(data, dict):
            print("eagerstep send: --data must be a JSON object", file=sys.stderr)
            return 2
        event: dict[str, Any] = {"name": args.name, "data": data}
        if args.id:
            event["id"] = args.id
        return _print(*_request("POST", f"{base}/e/{args.key}", event))
    if args.command == "timers":
        if args.action == "list":
            return _print(*_request("GET", f"{base}/v1/dev/timers"))
        body: dict[str, Any] = {}
        if args.run:
            body["run_id"] = args.run
        if args.kind:
            body["kinds"] = args.kind
        return _print(*_request("POST", f"{base}/v1/dev/timers/fire", body))
    if args.command == "sync":
        return _print(*_request("POST", f"{base}/v1/dev/apps", {"url": args.app_url}))
    if args.command == "run":
        return _print(*_request("GET", f"{base}/v1/runs/{args.run_id}"))
    return 2
