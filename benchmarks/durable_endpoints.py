"""A 5-step durable endpoint vs the same view without eagerstep vs the same work as an event-triggered
function, per framework, against ``eagerstep dev`` on loopback.

    .venv/bin/python benchmarks/durable_endpoints.py [--requests 200] [--frameworks django flask fastapi]

The engine and the app each run in their own process; this process is the caller and makes one
request at a time. Per framework, in milliseconds, median (p90):

- plain view: ``POST /plain``, five step bodies called directly;
- durable endpoint: ``POST /durable``, the same five bodies as ``ctx.step.run`` steps, answered in
  the request (its run created by ``POST /v1/checkpoint``, its response checkpointed);
- durable, ``buffered_steps=10``: the same endpoint sending its steps with the response, in one
  ``POST /v1/checkpoint``;
- event-triggered function: ``POST /e/{key}`` until the run is Completed (polled every 1 ms through
  ``GET /v1/events/{id}/runs``), the five steps checkpointed in one call request.

Added latency is durable minus plain, per request and per step; checkpoint calls per durable request
come from the engine's counters. Timings only mean something on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STEPS = 5


@contextmanager
def child(argv: list[str], pattern: str, cwd: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        for line in proc.stdout:
            found = re.search(pattern, line)
            if found:
                # keep draining its output: a full pipe would block the child mid-benchmark
                threading.Thread(target=proc.stdout.read, daemon=True).start()
                yield proc, found.group(1)
                return
            if time.monotonic() > deadline:
                break
        raise RuntimeError(f"{argv[:3]} did not start")
    finally:
        proc.terminate()
        proc.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer")
        time.sleep(0.05)


@contextmanager
def engine(tmp: Path) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "eagerstep", "dev", "--port", str(port), "--db", str(tmp / "dev.db")]
    proc = subprocess.Popen([*argv, "--log-level", "warning"], cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def timed(call: Callable[[], object], count: int) -> list[float]:
    for _ in range(min(20, count)):
        call()  # warm-up: connections, imports, first-run caches
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    return f"{statistics.median(ordered):.2f} ({ordered[int(len(ordered) * 0.9) - 1]:.2f})"


def bench(framework: str, requests: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, engine(Path(tmp)) as engine_url:
        app_argv = [sys.executable, str(HERE / "durable_endpoint_app.py"), framework, engine_url]
        with child(app_argv, r"ready (\d+)", ROOT) as (_, port):
            app_url = f"http://127.0.0.1:{port}"
            http = httpx.Client(timeout=30)
            wait_until_up(f"{app_url}/api/inngest")
            synced = http.post(f"{engine_url}/v1/dev/apps", json={"url": f"{app_url}/api/inngest"})
            assert synced.status_code == 200, synced.text

            def plain() -> None:
                assert http.post(f"{app_url}/plain").status_code == 200

            def durable() -> None:
                response = http.post(f"{app_url}/durable")
                assert response.status_code == 200, response.text

            def batched() -> None:
                response = http.post(f"{app_url}/durable-batched")
                assert response.status_code == 200, response.text

            def function() -> None:
                event_id = http.post(f"{engine_url}/e/bench", json={"name": "bench/five"}).json()["ids"][0]
                while True:
                    runs = http.get(f"{engine_url}/v1/events/{event_id}/runs").json()["data"]
                    if runs and runs[0]["status"] == "Completed":
                        return
                    time.sleep(0.001)

            plain_ms = timed(plain, requests)
            before = http.get(f"{engine_url}/v1/dev/stats").json()["data"]
            durable_ms = timed(durable, requests)
            after = http.get(f"{engine_url}/v1/dev/stats").json()["data"]
            batched_ms = timed(batched, requests)
            function_ms = timed(function, requests)
            warmups = min(20, requests)
            checkpoints = (after["checkpoints"] - before["checkpoints"]) / (requests + warmups)
            http.close()
    added = statistics.median(durable_ms) - statistics.median(plain_ms)
    return {
        "framework": framework,
        "plain": summary(plain_ms),
        "durable": summary(durable_ms),
        "batched": summary(batched_ms),
        "function": summary(function_ms),
        "added": f"{added:.2f}",
        "per_step": f"{added / STEPS:.2f}",
        "steps_calls": f"{checkpoints:.2f}",
    }


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--frameworks", nargs="+", default=["django", "flask", "fastapi"])
    parser.add_argument("--write", type=Path, help="also write the table (Markdown) to this file")
    args = parser.parse_args(argv)
    rows = [bench(framework, args.requests) for framework in args.frameworks]
    lines = [
        "# Durable endpoints: a 5-step endpoint vs a plain view vs an event-triggered function",
        "",
        f"`benchmarks/durable_endpoints.py --requests {args.requests}`: {args.requests} sequential"
        " requests per figure, after 20 warm-up ones; ms, median (p90). The engine and the app each in"
        f" their own process, on loopback. Machine: {os.cpu_count()} cores, load average"
        f" {os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d')}.",
        "",
        "| app | plain view | durable endpoint | added per request | added per step"
        " | /steps calls per request | durable, buffered_steps=10 | event-triggered function |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['framework']} | {row['plain']} | {row['durable']} | {row['added']} | {row['per_step']}"
            f" | {row['steps_calls']} | {row['batched']} | {row['function']} |"
        )
    print("\n" + "\n".join(lines))
    if args.write:
        args.write.write_text("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main()
