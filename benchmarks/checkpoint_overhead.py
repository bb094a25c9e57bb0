"""In-worker overhead of a checkpointed step, for ``def`` and ``async def`` functions.

    .venv/bin/python benchmarks/checkpoint_overhead.py [--steps 200 2000] [--repeats 20] [--io] [--profile]

A function runs N trivial steps (each returns a small dict) in one call request, in checkpointing
mode, against a recording orchestrator in a separate process on loopback (so its HTTP server does
not compete for this process's GIL). Two numbers per flavour, in microseconds per step, as
median / min / max over the repeats:

- step loop: time the user's code spends in its loop of ``ctx.step.run`` calls, minus the same
  loop calling the step bodies directly (no eagerstep) -- what a step costs the user's code;
- whole request: the slope of ``handle()`` time between a 10-step and an N-step request, minus
  the baseline loop -- per-step cost including parsing the memo-free request and building the reply,
  with per-request fixed costs excluded.

HTTP runs off the hot path: the process sender's scheduler thread (``def`` under ``handle``) or the
loop's sender task (``async def`` under ``handle_async``) decides the flushes, and daemon worker
threads make the HTTP calls. With trivial CPU-bound steps a short run may end before the sender
gets the GIL (or the loop): its steps then go in the 206 reply, which costs no checkpoint call at
all; long runs are checkpointed as they go (the "checkpointed" column). With ``--io``, two more rows
sleep 100 µs in each step body (and in the baseline), as a fast query would, so that each step gets
a checkpoint call of its own, with ``buffered_steps`` 1 (the default) and 10. They need a quiet
machine: on a busy one, the threads' wake-up jitter after each sleep (tens to hundreds of µs) swamps
the difference. (``async def`` I/O rows are left out: asyncio's timer resolution, about a
millisecond, swamps microsecond differences.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import eagerstep  # noqa: E402
from eagerstep.core import transport  # noqa: E402
from eagerstep.core.comm import CommHandler, Request, Response  # noqa: E402
from tests.support.requests import call_request  # noqa: E402

SERVER = """
import sys
from tests.support.orchestrator import RecordingOrchestrator
with RecordingOrchestrator() as orch:
    print(orch.url, flush=True)
    sys.stdin.read()
"""

SMALL = 10
IO_SECONDS = 0.0001  # a fast query


def start_orchestrator() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError("the orchestrator process did not start")
    return proc, url


def body(i: int) -> dict[str, int]:
    return {"i": i}


async def async_body(i: int) -> dict[str, int]:
    return {"i": i}


def io_body(i: int) -> dict[str, int]:
    time.sleep(IO_SECONDS)  # a step doing I/O releases the GIL: the sender thread runs meanwhile
    return {"i": i}


async def async_io_body(i: int) -> dict[str, int]:
    await asyncio.sleep(IO_SECONDS)  # a step doing I/O yields to the loop: the sender task runs
    return {"i": i}


BODIES: dict[tuple[bool, bool], Callable[[int], Any]] = {
    (False, False): body,
    (False, True): io_body,
    (True, False): async_body,
    (True, True): async_io_body,
}


class Bench:
    def __init__(self, url: str) -> None:
        self.loop_ns: list[int] = []
        self.client = eagerstep.Client(app_id="bench", dev=True, api_base_url=url, event_api_base_url=url)
        loop_ns = self.loop_ns

        def sync_steps(ctx: eagerstep.Context) -> int:
            n, fn = ctx.event.data["n"], BODIES[False, ctx.event.data["io"]]
            run = ctx.step.run
            t0 = time.perf_counter_ns()
            for i in range(n):
                run(f"s{i}", fn, i)
            loop_ns.append(time.perf_counter_ns() - t0)
            return int(n)

        async def async_steps(ctx: Any) -> int:
            n, fn = ctx.event.data["n"], BODIES[True, ctx.event.data["io"]]
            run = ctx.step.run
            t0 = time.perf_counter_ns()
            for i in range(n):
                await run(f"s{i}", fn, i)
            loop_ns.append(time.perf_counter_ns() - t0)
            return int(n)

        trigger = eagerstep.Event("bench/run")
        self.functions = {
            (False, 1): self.client.function(id="sync-steps", trigger=trigger)(sync_steps),
            (True, 1): self.client.function(id="async-steps", trigger=trigger)(async_steps),
            (False, 10): self.client.function(
                id="sync-steps-b10", trigger=trigger, checkpointing=eagerstep.Checkpointing(buffered_steps=10)
            )(sync_steps),
        }
        self.handler = CommHandler(self.client, list(self.functions.values()), framework="bench")

    def request(self, is_async: bool, n: int, io: bool, buffered: int = 1) -> Request:
        fn_id = self.functions[is_async, buffered].fully_qualified_id
        return call_request(fn_id, event={"name": "bench/run", "data": {"n": n, "io": io}}, max_attempts=1)


async def baseline(is_async: bool, n: int, io: bool) -> int:
    """The same loop calling the step bodies directly, without eagerstep."""
    fn = BODIES[is_async, io]
    t0 = time.perf_counter_ns()
    if is_async:
        for i in range(n):
            await fn(i)
    else:
        for i in range(n):
            fn(i)
    return time.perf_counter_ns() - t0


@dataclass
class Result:
    loop_us: list[float] = field(default_factory=list)
    request_us: list[float] = field(default_factory=list)
    checkpointed: list[int] = field(default_factory=list)


async def measure(bench: Bench, is_async: bool, n: int, io: bool, repeats: int, buffered: int = 1) -> Result:
    """Per-step overhead; ``def`` functions go through ``handle`` (run here in a worker thread,
    as a WSGI server would), ``async def`` ones through ``handle_async`` on this loop."""

    async def answer(request: Request) -> Response:
        if is_async:
            return await bench.handler.handle_async(request)
        return await asyncio.to_thread(bench.handler.handle, request)

    async def timed(request: Request) -> tuple[int, Response]:
        if is_async:
            t0 = time.perf_counter_ns()
            response = await bench.handler.handle_async(request)
            return time.perf_counter_ns() - t0, response

        def run() -> tuple[int, Response]:
            t0 = time.perf_counter_ns()
            response = bench.handler.handle(request)
            return time.perf_counter_ns() - t0, response

        return await asyncio.to_thread(run)

    for _ in range(3):  # warm up: pools, the sender, keep-alive connections
        await answer(bench.request(is_async, n, io, buffered))
    result = Result()
    for _ in range(repeats):
        t_small, _ = await timed(bench.request(is_async, SMALL, io, buffered))
        bench.loop_ns.clear()
        t_large, response = await timed(bench.request(is_async, n, io, buffered))
        assert response.status == 206, response.body[:200]
        base_small, base_large = await baseline(is_async, SMALL, io), await baseline(is_async, n, io)
        result.loop_us.append((bench.loop_ns[-1] - base_large) / n / 1000)
        result.request_us.append(((t_large - t_small) - (base_large - base_small)) / (n - SMALL) / 1000)
        replied = sum(1 for op in json.loads(response.body) if op["op"] == "StepRun")
        result.checkpointed.append(n - replied)
    return result


def summarise(values: list[float]) -> str:
    return f"{statistics.median(values):6.1f} {min(values):6.1f} {max(values):6.1f}"


def profile(run: Callable[[], Any], label: str) -> None:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0001)
    profiler.start()
    run()
    profiler.stop()
    print(f"\n--- profile: {label} ---")
    print(profiler.output_text(unicode=False, color=False, show_all=False))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, nargs="+", default=[200, 2000], help="steps per run")
    parser.add_argument("--repeats", type=int, default=20, help="runs measured per row (default 20)")
    parser.add_argument("--profile", action="store_true", help="also print pyinstrument profiles")
    parser.add_argument(
        "--io", action="store_true", help="also the I/O rows (needs a quiet machine: wake-up jitter)"
    )
    args = parser.parse_args()
    proc, url = start_orchestrator()
    bench = Bench(url)
    try:
        rows: list[tuple[str, int, Result]] = []

        async def all_rows() -> None:
            for is_async in (False, True):
                for n in args.steps:
                    label = "async def" if is_async else "def"
                    rows.append((label, n, await measure(bench, is_async, n, False, args.repeats)))
            for buffered in (1, 10) if args.io else ():
                label = f"def, I/O, buffered {buffered}"
                rows.append((label, 200, await measure(bench, False, 200, True, args.repeats, buffered)))
            await transport.shutdown_async()

        asyncio.run(all_rows())
        print(f"Checkpointed step overhead: trivial steps, {args.repeats} runs per row, the orchestrator on")
        print(
            "loopback in another process. Microseconds per step (median / min / max), the step body excluded."
        )
        print("'step loop': inside the user's function; 'whole request': handle() slope between a")
        print(f"{SMALL}-step and an N-step request. 'checkpointed': median steps persisted by checkpoint")
        print("calls during the request (the rest went in the 206 reply with RunComplete).\n")
        print(f"{'function':22} {'N':>5}  {'step loop':>20}  {'whole request':>20}  {'checkpointed':>12}")
        for label, n, r in rows:
            print(
                f"{label:22} {n:5d}  {summarise(r.loop_us):>20}  {summarise(r.request_us):>20}  "
                f"{statistics.median(r.checkpointed):12.0f}"
            )
        print("\ntarget: <= 20 µs per step")
        if args.profile:
            n = max(args.steps)
            sync_requests = [bench.request(False, n, False) for _ in range(20)]
            profile(lambda: [bench.handler.handle(r) for r in sync_requests], f"def, 20 runs of {n} steps")
            async_requests = [bench.request(True, n, False) for _ in range(20)]

            async def many() -> None:
                for r in async_requests:
                    await bench.handler.handle_async(r)
                await transport.shutdown_async()

            profile(lambda: asyncio.run(many()), f"async def, 20 runs of {n} steps")
    finally:
        transport.shutdown(timeout=5)
        bench.handler.close()
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
