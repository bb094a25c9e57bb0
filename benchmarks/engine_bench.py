"""Engine benchmark: completed runs per second (3-step function, bounded concurrency) and end-to-end
latency of a 10-step run, eagerstep checkpointing vs standard mode (and the official TypeScript SDK,
checkpointing, when Node.js and tests/compat/ts_app/node_modules are present).

The engine runs in this process (its HTTP API on a loopback port); the apps run in their own
processes, as they would in development. Latency is measured from the engine accepting the event to
the run completing. Usage: python benchmarks/engine_bench.py [--runs N] [--concurrency C] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eagerstep.engine import Engine  # noqa: E402
from eagerstep.engine.http import EngineApp  # noqa: E402
from eagerstep.engine.model import new_id  # noqa: E402
from eagerstep.engine.server import bind  # noqa: E402

TS_APP = ROOT / "tests" / "compat" / "ts_app"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url, timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up")
            await asyncio.sleep(0.1)


class Driver:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.waiting: dict[str, asyncio.Future[tuple[str, float]]] = {}
        engine.add_listener(self._finished)

    def _finished(self, run_id: str, status: str, event_id: str | None) -> None:
        future = self.waiting.pop(event_id or "", None)
        if future is not None and not future.done():
            future.set_result((status, time.perf_counter()))

    async def run_once(self, name: str) -> float:
        event_id = new_id()
        future: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()
        self.waiting[event_id] = future
        started = time.perf_counter()
        self.engine.accept_events({"name": name, "id": event_id, "data": {}})
        status, ended = await asyncio.wait_for(future, 60)
        if status != "Completed":
            raise RuntimeError(f"{name}: run ended {status}")
        return ended - started

    async def latency(self, name: str, runs: int) -> list[float]:
        for _ in range(3):
            await self.run_once(name)
        return [await self.run_once(name) for _ in range(runs)]

    async def throughput(self, name: str, runs: int, concurrency: int) -> float:
        semaphore = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with semaphore:
                await self.run_once(name)

        await asyncio.gather(*(one() for _ in range(min(runs, concurrency))))  # warm up connections
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(runs)))
        return runs / (time.perf_counter() - started)


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="eagerstep-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    async with Engine(tmp / "bench.db", retry_interval=0.05) as engine:
        sock = bind("127.0.0.1", 0)
        server = uvicorn.Server(uvicorn.Config(EngineApp(engine), log_level="warning", lifespan="off"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        engine_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        try:
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(ROOT / "benchmarks" / "engine_bench_app.py"), str(port), engine_url]
                )
            )
            app_url = f"http://127.0.0.1:{port}/api/inngest"
            await wait_up(app_url)
            status, reply = await engine.sync_app(app_url)
            assert status == 200, reply
            ts_name = None
            if not args.no_ts and shutil.which("node") and (TS_APP / "node_modules" / "inngest").is_dir():
                ts_port = free_port()
                processes.append(
                    subprocess.Popen(
                        ["node", "app.js", str(ts_port), engine_url], cwd=TS_APP, stdout=subprocess.DEVNULL
                    )
                )
                ts_url = f"http://127.0.0.1:{ts_port}/api/inngest"
                await wait_up(ts_url)
                status, reply = await engine.sync_app(ts_url)
                ts_name = "ts/run" if status == 200 else None
            driver = Driver(engine)
            print(f"engine benchmark ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})\n")
            print(f"10-step run, event accepted -> run completed, {args.latency_runs} sequential runs")
            print("| app | median ms | p90 ms | vs eagerstep checkpointing |")
            print("|---|---|---|---|")
            rows = [
                ("eagerstep checkpointing", "bench/steps10-ckpt"),
                ("eagerstep standard", "bench/steps10-std"),
            ]
            if ts_name:
                rows.append(("TypeScript SDK (checkpointing)", ts_name))
            base = None
            for label, name in rows:
                values = await driver.latency(name, args.latency_runs)
                median = statistics.median(values) * 1000
                base = base or median
                print(f"| {label} | {median:.2f} | {ms(values, 0.9):.2f} | {median / base:.2f}x |")
            print(f"\n3-step function, {args.runs} runs, at most {args.concurrency} in flight")
            print("| app | runs/s | vs standard |")
            print("|---|---|---|")
            results = {}
            for label, name in [
                ("eagerstep checkpointing", "bench/steps3-ckpt"),
                ("eagerstep standard", "bench/steps3-std"),
            ]:
                results[label] = await driver.throughput(name, args.runs, args.concurrency)
            for label, value in results.items():
                print(f"| {label} | {value:.0f} | {value / results['eagerstep standard']:.2f}x |")
            print(f"\nengine counters: {engine.stats}")
        finally:
            for process in processes:
                process.terminate()
                process.wait(10)
            server.should_exit = True
            await serving
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=400, help="runs per throughput measurement")
    parser.add_argument("--concurrency", type=int, default=20, help="runs in flight at most")
    parser.add_argument("--latency-runs", type=int, default=30, help="sequential runs per latency row")
    parser.add_argument("--no-ts", action="store_true", help="skip the TypeScript SDK row")
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.runs, arguments.latency_runs = 60, 10
    asyncio.run(main(arguments))
