"""Bugs the chaos matrix found, each as a short version of its scenario (in-process engine and app)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import eagerstep
from eagerstep.engine.server import EngineServer
from eagerstep.integrations.flask import EagerStep
from tests.chaos.faultproxy import Fault, FaultProxy
from tests.engine.helpers import EngineClient, wsgi_app_server

pytestmark = pytest.mark.engine


def _app(engine_url: str, executed: Counter[str]) -> Flask:
    client = eagerstep.Client(app_id="chaos-regressions", dev=True, api_base_url=engine_url)

    @client.function(id="five", trigger=eagerstep.Event("chaos/five"), retries=10)
    def five(ctx: eagerstep.Context) -> int:
        total = 0
        for i in range(5):

            def body(i: int = i) -> int:
                executed[f"{ctx.run_id}/s{i}"] += 1
                time.sleep(0.002)  # a checkpoint call per step, not one coalesced
                return i

            total += ctx.step.run(f"s{i}", body)
        return total

    app = Flask("chaos-regressions")
    EagerStep(app, client=client, functions=[five])
    return app


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineServer]:
    with EngineServer(tmp_path / "engine.db", retry_interval=0.02) as server:
        yield server


def test_a_409_from_a_proxy_does_not_fail_the_run(engine: EngineServer) -> None:
    """Bug: a 409 from something between the app and the engine (a proxy, a load balancer) made the
    SDK stop as a stale dispatch and answer 400 no-retry, and the engine failed the run for good,
    though the call was the run's current dispatch. Now the engine dispatches it again."""
    executed: Counter[str] = Counter()
    api = EngineClient(engine.url)
    with FaultProxy(engine.url, Fault("status", "/v1/checkpoint/", every=2, status=409)) as proxy:
        with wsgi_app_server(_app(proxy.url, executed)) as origin:
            api.sync(origin + "/api/inngest")
            events = [api.send("chaos/five") for _ in range(3)]
            runs: list[dict[str, Any]] = [api.wait_run(event) for event in events]
        assert proxy.counts["status"] >= 1, "the 409 never fired"
    assert [run["status"] for run in runs] == ["Completed"] * 3, runs
    assert [run["output"] for run in runs] == [10] * 3
    for run in runs:
        assert sorted(s["name"] for s in run["steps"]) == [f"s{i}" for i in range(5)]
    api.close()
