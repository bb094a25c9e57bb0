"""Work never gets lost between the dispatcher and the calls: a failure re-arms it, it never vanishes.

The engine runs in this test's loop on the real clock; the app is a raw HTTP server on loopback that
answers each call from a script. Waits are bounded (``wait_for_run``); nothing is timed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from eagerstep.engine import Engine
from eagerstep.engine.flow import Slot
from eagerstep.engine.model import QueueItem

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]

WAIT = 30.0  # bounded; a passing test returns as soon as the run ends

Answer = Callable[[str], tuple[int, Any]]  # step id -> (status, JSON body)


@asynccontextmanager
async def app_server(answer: Answer) -> AsyncIterator[str]:
    """An SDK-like app on 127.0.0.1 (free port): each call is answered by ``answer(stepId)``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                length = next(
                    int(v) for k, _, v in (x.partition(":") for x in lines) if k.lower() == "content-length"
                )
                await reader.readexactly(length)
                step_id = parse_qs(urlsplit(lines[0].split(" ")[1]).query)["stepId"][0]
                status, value = answer(step_id)
                body = json.dumps(value).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nX-Inngest-SDK: test:v0\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/api/inngest"
    finally:
        server.close()
        await server.wait_closed()


def register(engine: Engine, url: str, *, attempts: int = 0) -> None:
    engine.register(
        {
            "url": url,
            "appName": "races",
            "framework": "test",
            "sdk": "py:v0",
            "v": "0.1",
            "functions": [
                {
                    "id": "races-fn",
                    "name": "fn",
                    "triggers": [{"event": "races/go"}],
                    "steps": {
                        "step": {
                            "id": "step",
                            "name": "step",
                            "runtime": {"type": "http", "url": f"{url}?fnId=races-fn&stepId=step"},
                            "retries": {"attempts": attempts},
                        }
                    },
                }
            ],
        },
        {},
    )


def start_run(engine: Engine) -> str:
    [event_id] = engine.accept_events({"name": "races/go", "data": {}})
    [run] = engine.event_runs(event_id)
    return str(run["run_id"])


async def test_a_call_that_fails_inside_the_engine_is_retried_then_fails_the_run(tmp_path: Path) -> None:
    # A step id no HTTP header can carry (not latin-1): building the call raises inside the engine,
    # not as a transport error. The call must count as a failed attempt, not vanish with the run
    # left waiting forever.
    calls: list[str] = []

    def answer(step_id: str) -> tuple[int, Any]:
        calls.append(step_id)
        return 206, [{"op": "StepPlanned", "id": "\u2713", "name": "check"}]

    async with app_server(answer) as url, Engine(tmp_path / "e.db", retry_interval=0.01) as engine:
        register(engine, url, attempts=2)
        run_id = start_run(engine)
        assert await engine.wait_for_run(run_id, timeout=WAIT) == "Failed"
        run = engine.get_run(run_id)
        assert run["error"]["name"] == "EngineError"
        assert "could not call the app" in run["error"]["message"]
        assert calls == ["step"]  # the discovery call; the planned step's calls never left the engine
        assert engine.pending_timers() == []


async def test_a_call_item_whose_start_fails_goes_out_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def answer(step_id: str) -> tuple[int, Any]:
        return 200, "done"

    async with app_server(answer) as url, Engine(tmp_path / "e.db", retry_interval=0.01) as engine:
        register(engine, url)
        take_slot = engine.flow.take_slot
        failures = []

        def failing_once(item: QueueItem) -> tuple[bool, Slot | None]:
            if not failures:
                failures.append(item.id)
                raise RuntimeError("injected: starting the call failed")
            return take_slot(item)

        monkeypatch.setattr(engine.flow, "take_slot", failing_once)
        with caplog.at_level(logging.ERROR, logger="eagerstep.engine"):
            run_id = start_run(engine)
            assert await engine.wait_for_run(run_id, timeout=WAIT) == "Completed"
        assert failures and "injected" in caplog.text
        assert engine.get_run(run_id)["output"] == "done"


async def test_a_failing_timer_is_rearmed_not_spun_on_or_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Resolving a sleep fails until repaired: each failure rolls back and reloads memory (the sleep
    # due now again). The dispatcher re-arms it for later instead of retrying it at once forever
    # (which never yields: the whole engine would freeze); once repaired, the run completes.
    replies = iter([(206, [{"op": "Sleep", "id": "nap", "name": "nap", "opts": {"duration": "1s"}}])])

    def answer(step_id: str) -> tuple[int, Any]:
        return next(replies, (200, "woke"))

    async with app_server(answer) as url, Engine(tmp_path / "e.db", retry_interval=0.01) as engine:
        register(engine, url)
        resolve_step = engine.lifecycle.resolve_step
        failures: list[str] = []
        repaired = asyncio.Event()

        def failing(run: Any, step_id: str, memo: Any, op: str) -> None:
            if not repaired.is_set():
                failures.append(step_id)
                raise RuntimeError("injected: resolving the sleep failed")
            resolve_step(run, step_id, memo, op)

        monkeypatch.setattr(engine.lifecycle, "resolve_step", failing)
        run_id = start_run(engine)

        async def until(condition: Callable[[], bool]) -> None:
            for _ in range(3000):  # bounded (30 s at most)
                if condition():
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("condition not met")

        await until(lambda: any(t["kind"] == "sleep" for t in engine.pending_timers()))
        assert engine.fire_timers(run_id=run_id) == 1
        await until(lambda: len(failures) >= 3)  # this test's loop keeps running meanwhile
        assert [t["kind"] for t in engine.pending_timers()] == ["sleep"]  # still queued, not lost
        repaired.set()
        assert await engine.wait_for_run(run_id, timeout=WAIT) == "Completed"
        assert set(failures) == {"nap"}
        assert engine.get_run(run_id)["output"] == "woke"


async def test_a_background_task_that_fails_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("injected: a background task failed")

    async with Engine(tmp_path / "e.db") as engine:
        with caplog.at_level(logging.ERROR, logger="eagerstep.engine"):
            task = engine.spawn(broken())
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(0)  # done callbacks run on the next loop iteration
        assert "background task" in caplog.text and "injected" in caplog.text
