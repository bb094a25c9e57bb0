"""Kill the engine (SIGKILL) mid-run, start it again on the same file: the run completes, each step once."""

from __future__ import annotations

import datetime
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("inngest")
import flask
import inngest
import inngest.flask

from tests.engine.helpers import EngineClient, wait_for, wsgi_app_server

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]


ANNOUNCED = re.compile(r"Inngest API on http://127\.0\.0\.1:(\d+)")


class EngineProcess:
    """``eagerstep dev`` as a process. The first start binds port 0 (the engine announces the port it
    got, so no other process can take it in between); restarts reuse that port, as the app's URL
    for the engine must not change."""

    def __init__(self, db: Path) -> None:
        self.db, self.port = db, 0
        self.url = ""
        self.log = db.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "eagerstep", "dev", "--port", str(self.port), "--db", str(self.db)]
        cmd += ["--retry-interval", "0.05", "--log-level", "warning"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

        def announced() -> int | None:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            found = ANNOUNCED.search(self.log.read_text(errors="replace"))
            return int(found.group(1)) if found else None

        if self.port == 0:
            self.port = wait_for(announced, interval=0.02)
            self.url = f"http://127.0.0.1:{self.port}"

        def healthy() -> bool:
            try:
                return httpx.get(self.url + "/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, interval=0.05)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def engine_process(tmp_path: Path) -> Iterator[EngineProcess]:
    process = EngineProcess(tmp_path / "dev.db")
    process.start()
    yield process
    process.stop()


def test_kill_and_restart_loses_nothing(engine_process: EngineProcess) -> None:
    counts: dict[str, int] = {}
    gate = threading.Event()
    lock = threading.Lock()

    def bump(key: str) -> int:
        with lock:
            counts[key] = counts.get(key, 0) + 1
            return counts[key]

    client = inngest.Inngest(
        app_id="restart",
        is_production=False,
        api_base_url=engine_process.url,
        event_api_base_url=engine_process.url,
        logger=logging.getLogger("restart"),
    )

    @client.create_function(fn_id="durable", trigger=inngest.TriggerEvent(event="restart/go"))
    def durable(ctx: Any) -> dict[str, Any]:
        a = ctx.step.run("a", lambda: bump("a"))

        def slow() -> int:
            bump("slow")
            gate.wait(20)
            return 2

        b = ctx.step.run("slow", slow)
        ctx.step.sleep("nap", datetime.timedelta(hours=2))
        c = ctx.step.run("c", lambda: bump("c"))
        return {"a": a, "b": b, "c": c}

    app = flask.Flask("restart")
    inngest.flask.serve(app, client, [durable])
    with wsgi_app_server(app) as origin:
        api = EngineClient(engine_process.url)
        api.sync(origin + "/api/inngest")
        event_id = api.send("restart/go")
        # 1. Kill while a step call is in flight.
        wait_for(lambda: counts.get("slow") == 1)
        engine_process.kill()
        engine_process.start()
        api = EngineClient(engine_process.url)
        wait_for(lambda: counts.get("slow") == 2)  # the in-flight call was dispatched again
        gate.set()
        # 2. Kill while the run sleeps on a persisted timer.
        api.wait_step(event_id, lambda s: s["status"] == "Running" and s["name"] == "nap")
        engine_process.kill()
        engine_process.start()
        api = EngineClient(engine_process.url)
        assert api.runs_of(event_id)[0]["status"] == "Running"
        assert api.fire_timers() == 1
        run = api.wait_run(event_id)
        assert run["status"] == "Completed", run
        assert run["output"] == {"a": 1, "b": 2, "c": 1}
        assert [s["name"] for s in run["steps"]] == ["a", "slow", "nap", "c"]
        assert counts["a"] == 1 and counts["c"] == 1
        api.close()


def test_kill_and_restart_with_eagerstep_checkpointing(engine_process: EngineProcess) -> None:
    """Steps checkpointed before the kill are not run again; the in-flight request is re-dispatched."""
    import eagerstep
    from eagerstep.integrations.flask import blueprint

    counts: dict[str, int] = {}
    gate = threading.Event()
    lock = threading.Lock()

    def bump(key: str) -> int:
        with lock:
            counts[key] = counts.get(key, 0) + 1
            return counts[key]

    client = eagerstep.Client(app_id="restart-es", dev=engine_process.url, checkpointing=True)

    @client.function(id="durable", trigger=eagerstep.Event("restart-es/go"))
    def durable(ctx: eagerstep.Context) -> dict[str, Any]:
        a = ctx.step.run("a", lambda: bump("a"))

        def slow() -> int:
            bump("slow")
            gate.wait(20)
            return 2

        b = ctx.step.run("slow", slow)
        ctx.step.sleep("nap", datetime.timedelta(hours=2))
        c = ctx.step.run("c", lambda: bump("c"))
        return {"a": a, "b": b, "c": c}

    app = flask.Flask("restart-es")
    app.register_blueprint(blueprint(client, [durable]))
    with wsgi_app_server(app) as origin:
        api = EngineClient(engine_process.url)
        api.sync(origin + "/api/inngest")
        event_id = api.send("restart-es/go")
        wait_for(lambda: counts.get("slow") == 1)
        api.wait_step(event_id, lambda s: s["name"] == "a")  # step a is checkpointed
        engine_process.kill()
        engine_process.start()
        api = EngineClient(engine_process.url)
        wait_for(lambda: counts.get("slow") == 2)  # re-dispatched; a came from its memo
        gate.set()
        api.wait_step(event_id, lambda s: s["status"] == "Running" and s["name"] == "nap")
        engine_process.kill()
        engine_process.start()
        api = EngineClient(engine_process.url)
        assert api.fire_timers() == 1
        run = api.wait_run(event_id)
        assert run["status"] == "Completed", run
        assert run["output"] == {"a": 1, "b": 2, "c": 1}
        assert [s["name"] for s in run["steps"]] == ["a", "slow", "nap", "c"]
        assert counts["a"] == 1 and counts["c"] == 1
        api.close()
