"""The embedded engine in its own process, with a few read-only benchmark endpoints beside its API.

``python benchmarks/engine_host.py --db PATH`` binds 127.0.0.1:<free port> and prints one JSON line,
``{"url": ..., "pid": ...}``, once it serves. The engine itself is untouched: its listener
(``Engine.add_listener``) reports finished runs and its counters (``Engine.stats``) give the calls to
the app and the checkpoint calls of each (sequential) run. Extra endpoints:

- ``GET /bench/wait/{event_id}?timeout=S``: block until the run of that event ends; its figures;
- ``POST /bench/throughput?name=EVENT&runs=R&concurrency=C``: completed runs/s, measured in this
  process by ``engine_bench.Driver`` (the engine benchmark's driver), plus the engine's counters;
- ``GET /bench/stats``: peak memory (VmHWM) and current RSS of this process;
- ``POST /bench/reset``: forget the per-run figures collected so far.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import sys
import time
from typing import Any

import uvicorn

from eagerstep.engine import Engine
from eagerstep.engine.engine import new_id
from eagerstep.engine.http import EngineApp
from eagerstep.engine.server import bind

_WAIT = re.compile(r"^/bench/wait/([^/]+)$")
_DEBUG = bool(os.environ.get("BENCH_DEBUG"))


def memory() -> dict[str, int]:
    """Peak (VmHWM) and current (VmRSS) resident memory of this process, in KiB."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmHWM:", "VmRSS:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


class Probe:
    """Per-run figures. Calls to the app and checkpoint calls come from the engine's own counters
    (``Engine.stats``), read when an event arrives and when its run ends: exact for the sequential
    runs of the latency benchmark."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.mark: dict[str, int] = {}
        self.done: dict[str, dict[str, Any]] = {}  # event id -> figures
        self.waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self.recording = True
        engine.add_listener(self.on_end)

    def counters(self) -> dict[str, int]:
        return dict(getattr(self.engine, "stats", None) or {})

    def on_event(self) -> None:
        self.mark = self.counters()

    def on_end(self, run_id: str, status: str, event_id: str | None) -> None:
        ended = time.time()
        if event_id is None or not self.recording:
            return
        row = self.engine.db.one("SELECT created_at, output, error FROM runs WHERE id=?", (run_id,))
        created = float(row[0]) if row else ended
        now = self.counters()
        figures = {
            "run_id": run_id,
            "status": status,
            "created_at": created,
            "ended_at": ended,
            "sdk_requests": now.get("calls", 0) - self.mark.get("calls", 0) if now else None,
            "checkpoint_calls": now.get("checkpoints", 0) - self.mark.get("checkpoints", 0) if now else None,
            "output": json.loads(row[1]) if row and row[1] else None,
            "error": json.loads(row[2]) if row and row[2] else None,
        }
        self.done[event_id] = figures
        for future in self.waiters.pop(event_id, []):
            if not future.done():
                future.set_result(figures)

    async def wait(self, event_id: str, timeout: float) -> dict[str, Any] | None:
        if event_id in self.done:
            return self.done.pop(event_id)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(event_id, []).append(future)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return None
        return self.done.pop(event_id, None)


class _Driver:
    """Runs events through the engine in this process with at most ``concurrency`` in flight."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.waiting: dict[str, asyncio.Future[str]] = {}
        engine.add_listener(self._finished)

    def _finished(self, run_id: str, status: str, event_id: str | None) -> None:
        future = self.waiting.pop(event_id or "", None)
        if future is not None and not future.done():
            future.set_result(status)

    async def run_once(self, name: str) -> None:
        event_id = new_id()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting[event_id] = future
        self.engine.accept_events({"name": name, "id": event_id, "data": {}})
        status = await asyncio.wait_for(future, 60)
        if status != "Completed":
            raise RuntimeError(f"{name}: run ended {status}")

    async def throughput(self, name: str, runs: int, concurrency: int) -> float:
        semaphore = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with semaphore:
                await self.run_once(name)

        await asyncio.gather(*(one() for _ in range(min(runs, concurrency))))  # warm-up wave
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(runs)))
        return runs / (time.perf_counter() - started)


class BenchApp:
    """The engine's ASGI app plus the ``/bench/`` endpoints; counts checkpoint calls on the way."""

    def __init__(self, engine: Engine, probe: Probe) -> None:
        self.engine = engine
        self.inner = EngineApp(engine)
        self.probe = probe
        self._driver: Any = None

    async def throughput(self, query: dict[str, str]) -> dict[str, Any]:
        if self._driver is None:
            try:
                from benchmarks.engine_bench import Driver
            except ImportError:  # the engine benchmark's driver is the reference; this is its shape
                Driver = _Driver
            self._driver = Driver(self.engine)
        runs, concurrency = int(query.get("runs", "200")), int(query.get("concurrency", "8"))
        before = dict(self.engine.stats)
        self.probe.recording = False
        try:
            rate = await self._driver.throughput(query["name"].replace("%2F", "/"), runs, concurrency)
        finally:
            self.probe.recording = True
        after = self.engine.stats
        counted = runs + min(runs, concurrency)  # Driver.throughput warms up with one wave first
        return {
            "runs_per_s": rate,
            "runs": runs,
            "concurrency": concurrency,
            "sdk_requests_per_run": (after["calls"] - before["calls"]) / counted,
            "checkpoint_calls_per_run": (after["checkpoints"] - before["checkpoints"]) / counted,
        }

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if _DEBUG:
                print(scope["method"], path, file=sys.stderr, flush=True)
            if path.startswith("/bench/"):
                await self.bench(scope, receive, send)
                return
            if path.startswith("/e/"):
                self.probe.on_event()
        await self.inner(scope, receive, send)

    async def bench(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path: str = scope["path"]
        status, value = 404, {"error": "no such endpoint"}
        query = dict(p.split("=", 1) for p in scope.get("query_string", b"").decode().split("&") if "=" in p)
        match = _WAIT.match(path)
        if path == "/bench/throughput":
            status, value = 200, await self.throughput(query)
        elif match:
            figures = await self.probe.wait(match.group(1), float(query.get("timeout", "60")))
            status, value = (200, figures) if figures is not None else (504, {"error": "timed out"})
        elif path == "/bench/stats":
            status, value = 200, memory()
        elif path == "/bench/reset":
            self.probe.done.clear()
            status, value = 200, {"ok": True}
        body = json.dumps(value).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def main(db: str, retry_interval: float, nodelay: bool = False) -> None:
    engine = Engine(db, retry_interval=retry_interval, call_timeout=120.0)
    async with engine:
        probe = Probe(engine)
        sock = bind("127.0.0.1", 0)
        if nodelay:  # accepted connections inherit TCP_NODELAY from the listening socket (Linux)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = uvicorn.Config(
            BenchApp(engine, probe),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=75,
            server_header=False,
            date_header=False,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.005)
        port = sock.getsockname()[1]
        # Whether accepted connections get TCP_NODELAY (asyncio sets it only when the listening
        # socket's proto is IPPROTO_TCP): without it, responses written in two parts can stall ~40 ms.
        nodelay = sock.proto == socket.IPPROTO_TCP or bool(
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        )
        print(json.dumps({"url": f"http://127.0.0.1:{port}", "nodelay": nodelay}), flush=True)
        await task


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--retry-interval", type=float, default=0.05)
    parser.add_argument(
        "--nodelay", action="store_true", help="set TCP_NODELAY on the listening socket (an A/B switch)"
    )
    args = parser.parse_args()
    try:
        asyncio.run(main(args.db, args.retry_interval, args.nodelay))
    except KeyboardInterrupt:
        sys.exit(0)
