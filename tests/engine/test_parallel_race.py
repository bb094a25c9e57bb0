"""Parallel race mode (``opts.parallelMode == "race"``): as the server does, a discovery call follows
each parallel step even while others still run, so a fast branch moves on without the slow one."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from eagerstep.core import protocol
from tests.engine.helpers import WAIT_TIMEOUT, EngineClient, wsgi_app_server
from tests.engine.test_api import ScriptedApp, api, engine, ok, register

__all__ = ["api", "engine"]  # fixtures

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]

BRANCHES = [["a.1", "a.2"], ["b.1", "b.2"]]


@pytest.mark.parametrize("mode", ["race", "wait"])
def test_race_mode_discovers_after_each_parallel_step(api: EngineClient, mode: str) -> None:
    ids = {protocol.hash_step_id(name): name for branch in BRANCHES for name in branch}
    order: list[str] = []
    discoveries = 0
    fast_branch_done = threading.Event()
    lock = threading.Lock()

    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        nonlocal discoveries
        step_id = query["stepId"]
        if step_id != "step":
            name = ids[step_id]
            if name == "b.1" and mode == "race":
                # The slow branch's first step finishes only once the fast branch is done (bounded):
                # without a discovery after each step, a.2 would wait for b.1.
                fast_branch_done.wait(WAIT_TIMEOUT / 3)
            with lock:
                order.append(name)
            if name == "a.2":
                fast_branch_done.set()
            return ok([protocol.step_run_op(step_id, name, name.upper())])
        with lock:
            discoveries += 1
        memos = body["steps"]
        planned = []
        for branch in BRANCHES:
            todo = [name for name in branch if protocol.hash_step_id(name) not in memos]
            if todo:
                step = protocol.hash_step_id(todo[0])
                opts = {"parallelMode": "race"} if mode == "race" else None
                planned.append({"op": "StepPlanned", "id": step, "name": todo[0], "opts": opts})
        if not planned:
            return ok({"order": list(order)}, 200)
        return ok(planned)

    with wsgi_app_server(ScriptedApp(handle)) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "race/run"}], "retries": 0})
        run = api.wait_run(api.send("race/run"))
    assert run["status"] == "Completed", run
    if mode == "race":
        assert order == ["a.1", "a.2", "b.1", "b.2"]
        # The first plan, then one after each of the four steps (one more when a discovery's
        # reply lands after the step it plans was recorded: that reply asks for the next one).
        assert discoveries >= 5
    else:
        assert sorted(order) == ["a.1", "a.2", "b.1", "b.2"]
        assert discoveries == 3  # the first plan, after a.1+b.1, after a.2+b.2
