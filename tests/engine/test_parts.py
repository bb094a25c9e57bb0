"""Engine parts in isolation: op parsing (fast path vs the wire model), deferred step rows, and how
malformed 206 replies and checkpoint bodies are reported. No app is called: the dispatcher is stopped."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from eagerstep.core import protocol
from eagerstep.engine import Engine, EngineError, ManualClock
from eagerstep.engine.model import CALL
from eagerstep.engine.ops import fast_op, from_model, parse_ops
from eagerstep.engine.store import Store

pytestmark = [pytest.mark.engine, pytest.mark.timeout(20)]

WELL_FORMED: list[dict[str, Any]] = [
    {"op": "StepRun", "id": "a1", "name": "one", "displayName": "One", "data": {"x": 1}},
    {"op": "StepRun", "id": "a2", "data": None, "timing": {"a": 1, "b": 2}, "userland": {"id": "two"}},
    {"op": "StepPlanned", "id": "a3", "opts": {"type": "step"}},
    {"op": "StepError", "id": "a4", "error": {"name": "Error", "message": "boom"}, "extra": [1]},
    {"op": "RunComplete", "data": [1, 2]},
    {"op": "None"},
]


@pytest.mark.parametrize("raw", WELL_FORMED)
def test_fast_op_agrees_with_the_wire_model(raw: dict[str, Any]) -> None:
    fast = fast_op(raw)
    assert fast is not None
    assert fast == from_model(protocol.GeneratorOp.model_validate(raw))


@pytest.mark.parametrize(
    "raw",
    [{"op": 5}, {"id": "x"}, {"op": "StepRun", "id": None}, {"op": "Sleep", "opts": "1s"}, "StepRun", None],
)
def test_malformed_ops_are_explained_by_the_model(raw: Any) -> None:
    assert fast_op(raw) is None
    with pytest.raises(ValidationError):
        parse_ops([WELL_FORMED[0], raw])


def test_store_defers_rows_to_the_commit_and_drops_them_on_rollback(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    insert = "INSERT INTO apps(url, name, checksum, synced_at) VALUES (?,?,?,?)"
    count = "SELECT COUNT(*) FROM apps"
    with store.tx():
        store.execute_deferred(insert, ("u1", "a", "c", 1.0))
        store.execute_deferred(insert, ("u2", "a", "c", 1.0))
        assert store.one(count) == (0,)  # not written yet
    assert store.one(count) == (2,)
    with pytest.raises(RuntimeError), store.tx():
        store.execute_deferred(insert, ("u3", "a", "c", 1.0))
        raise RuntimeError("rolled back")
    with store.tx():
        pass  # the dropped row is not written by a later transaction either
    assert store.one(count) == (2,)
    store.execute_deferred(insert, ("u4", "a", "c", 1.0))  # outside a transaction: at once
    assert store.one(count) == (3,)
    store.close()


def _register(engine: Engine) -> None:
    url = "http://127.0.0.1:9/api/inngest"
    engine.register(
        {
            "url": url,
            "appName": "parts",
            "framework": "test",
            "sdk": "py:v0",
            "v": "0.1",
            "functions": [
                {
                    "id": "parts-fn",
                    "name": "fn",
                    "triggers": [{"event": "parts/go"}],
                    "steps": {
                        "step": {
                            "id": "step",
                            "name": "step",
                            "runtime": {"type": "http", "url": f"{url}?fnId=parts-fn&stepId=step"},
                            "retries": {"attempts": 0},
                        }
                    },
                }
            ],
        },
        {},
    )


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with Engine(tmp_path / "engine.db", clock=ManualClock()) as engine:
        await engine.queue.stop()  # nothing is dispatched: the tests feed replies by hand
        _register(engine)
        yield engine


def _reply(engine: Engine, ops: Any) -> str:
    """Start a run and answer its first call with a 206 carrying ``ops``; return the run id."""
    [event_id] = engine.accept_events({"name": "parts/go", "data": {}})
    [run] = engine.event_runs(event_id)
    item = next(i for i in engine.queue.items.values() if i.kind == CALL and i.run_id == run["run_id"])
    live = engine.runs[run["run_id"]]
    with engine.transaction():
        engine.queue.delete_item(item)
        engine.caller.handle_reply(
            item,
            live,
            engine.functions[live.function_id],
            206,
            {"x-inngest-sdk": "test:v0"},
            json.dumps(ops).encode(),
            None,
            0.0,
        )
    return str(run["run_id"])


async def test_a_reply_of_many_steps_is_stored_in_order(engine: Engine) -> None:
    ops = [{"op": "StepRun", "id": f"s{i}", "name": f"step {i}", "data": i} for i in range(50)]
    run_id = _reply(engine, [*ops, {"op": "RunComplete", "data": "done"}])
    run = engine.get_run(run_id)
    assert run["status"] == "Completed" and run["output"] == "done"
    assert [s["id"] for s in run["steps"]] == [f"s{i}" for i in range(50)]
    assert engine.run_actions(run_id)["s7"] == {"data": 7}


async def test_invalid_ops_fail_the_run_readably(engine: Engine) -> None:
    run_id = _reply(engine, [{"op": "StepRun", "id": "ok", "data": 1}, {"op": 5, "id": "bad"}])
    run = engine.get_run(run_id)
    assert run["status"] == "Failed"
    assert run["error"]["name"] == "InvalidOps"
    assert "invalid ops" in run["error"]["message"] and "op" in run["error"]["message"]
    assert run["steps"] == []


async def test_malformed_checkpoint_bodies_are_400s(engine: Engine) -> None:
    with pytest.raises(EngineError) as caught:
        engine.checkpoint("R1", {"run_id": "R1", "steps": [{"op": "StepRun", "id": 3}]})
    assert caught.value.status == 400 and "invalid checkpoint body" in caught.value.message
    with pytest.raises(EngineError) as caught:
        engine.checkpoint("R1", {"steps": []})
    assert caught.value.status == 400 and "run_id" in caught.value.message
    with pytest.raises(EngineError) as caught:
        engine.checkpoint("R1", {"run_id": "R1", "steps": [{"op": "Sleep", "id": "z"}]})
    assert "cannot checkpoint async steps" in caught.value.message
    with pytest.raises(EngineError) as caught:  # well-formed, coerced by the model, unknown run
        engine.checkpoint("R1", {"run_id": "R1", "generation_id": "2", "steps": []})
    assert "not found" in caught.value.message


async def test_a_failing_deferred_write_rolls_back_and_reloads_memory(engine: Engine) -> None:
    engine.functions.clear()  # memory out of step with the file: the reload must restore it
    with pytest.raises(sqlite3.OperationalError), engine.transaction():
        engine.accept_events({"name": "parts/go", "data": {}})
        engine.db.execute_deferred("INSERT INTO no_such_table VALUES (?)", (1,))
    assert "parts-fn" in engine.functions
    assert engine.list_runs() == [] and engine.runs == {}
