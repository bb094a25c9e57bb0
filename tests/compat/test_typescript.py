"""The engine runs a ten-step function served by the official Inngest TypeScript SDK (npm ``inngest``,
checkpointing on by default): one call request, steps arriving through the checkpoint API."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eagerstep.core import protocol
from eagerstep.engine import EngineServer
from tests.engine.helpers import EngineClient, wait_for

pytestmark = [pytest.mark.compat, pytest.mark.engine, pytest.mark.node, pytest.mark.timeout(120)]

APP_DIR = Path(__file__).parent / "ts_app"


def _install() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the TypeScript SDK test")
    if (APP_DIR / "node_modules" / "inngest").is_dir() and (APP_DIR / "node_modules" / "express").is_dir():
        return
    try:
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=APP_DIR,
            check=True,
            timeout=100,
            capture_output=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"npm install of the TypeScript SDK failed: {exc}")


@pytest.fixture(scope="module")
def ts_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineClient, str]]:
    _install()
    tmp = tmp_path_factory.mktemp("ts")
    log = tmp / "app.log"
    with EngineServer(tmp / "engine.db") as engine:
        with open(log, "wb") as out:  # port 0: the app listens on a free port and prints it
            proc = subprocess.Popen(
                ["node", "app.js", "0", engine.url], cwd=APP_DIR, stdout=out, stderr=subprocess.STDOUT
            )

        def ready() -> int | None:
            assert proc.poll() is None, log.read_text(errors="replace")
            found = re.search(r"^ready (\d+)$", log.read_text(errors="replace"), re.M)
            return int(found.group(1)) if found else None

        try:
            origin = f"http://127.0.0.1:{wait_for(ready, interval=0.05)}"

            def up() -> bool:
                try:
                    return httpx.get(origin + "/api/inngest", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(up, interval=0.1)
            api = EngineClient(engine.url)
            reply = api.sync(origin + "/api/inngest")
            assert reply["app_status"] == 200, reply
            yield api, origin
            api.close()
        finally:
            proc.terminate()
            proc.wait(10)


def test_ten_step_checkpointed_run(ts_app: tuple[EngineClient, str]) -> None:
    api, _ = ts_app
    run = api.wait_run(api.send("ts/run", {"n": 3}), timeout=30)
    assert run["status"] == "Completed", run
    assert run["output"] == {"total": 45, "n": 3}
    assert [s["name"] for s in run["steps"]] == [f"s{i}" for i in range(10)]
    assert [s["id"] for s in run["steps"]] == [protocol.hash_step_id(f"s{i}") for i in range(10)]
    assert [s["output"] for s in run["steps"]] == list(range(10))


def test_several_runs(ts_app: tuple[EngineClient, str]) -> None:
    api, _ = ts_app
    ids = [api.send("ts/run", {"n": i}) for i in range(5)]
    for i, event_id in enumerate(ids):
        run = api.wait_run(event_id, timeout=30)
        assert run["status"] == "Completed" and run["output"] == {"total": 45, "n": i}


def test_retry_sleep_wait_and_invoke(ts_app: tuple[EngineClient, str]) -> None:
    api, _ = ts_app
    event_id = api.send("ts/pauses", {"id": "t-1"})
    api.wait_step(event_id, lambda s: s["status"] == "Running" and s["name"] == "nap", timeout=30)
    run_id = api.runs_of(event_id)[0]["run_id"]
    assert api.fire_timers(run_id=run_id) == 1
    api.wait_step(event_id, lambda s: s["status"] == "Running" and s["name"] == "approval", timeout=30)
    api.send("ts/approved", {"id": "t-2"})
    api.send("ts/approved", {"id": "t-1", "ok": True})
    run = api.wait_run(event_id, timeout=30)
    assert run["status"] == "Completed", run
    assert run["output"] == {
        "before": "b",
        "flaky": 1,
        "approved": {"id": "t-1", "ok": True},
        "child": {"total": 45, "n": 7},
    }
    assert [s["name"] for s in run["steps"]] == ["before", "flaky", "nap", "approval", "call-child"]


def test_parallel_step_ids(ts_app: tuple[EngineClient, str]) -> None:
    """The TS SDK numbers a parallel group's steps as eagerstep does (in every mode) and inngest-py
    does (tests/compat/test_official_python.py ``test_parallel_step_ids_match_the_official_sdk``)."""
    api, _ = ts_app
    run = api.wait_run(api.send("ts/ids"), timeout=30)
    assert run["status"] == "Completed", run
    assert run["output"] == ["x", "b1b2", "y"]
    actions = api.http.get(f"/v0/runs/{run['run_id']}/actions").json()
    assert actions == {
        protocol.hash_step_id("dup"): {"data": "x"},
        protocol.hash_step_id("dup:1"): {"data": "y"},
        protocol.hash_step_id("b1"): {"data": "b1"},
        protocol.hash_step_id("b2"): {"data": "b2"},
    }
