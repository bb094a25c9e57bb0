"""The fast paths of a checkpointed step keep their guarantees: the value a step gives back in the
same request equals what a replay would give (JSON round trip) and is the code's own copy; the
checkpoint settings' derived bounds, the target's value semantics, the hashed step ids, and the
checkpoints of an ``async def`` function served by ``handle()``."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import eagerstep
from eagerstep.core import protocol, transport
from eagerstep.core.checkpoint import Checkpointing, CheckpointTarget
from eagerstep.core.comm import CommHandler
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import call_request


class Colour(str, enum.Enum):
    RED = "red"


SHARED = {"n": 1}

# (step id, what the step returns, what a replay gives back)
OUTPUTS: list[tuple[str, Any, Any]] = [
    ("flat-dict", {"i": 1, "s": "x", "f": 2.5, "b": True, "z": None}, None),
    ("empty-dict", {}, None),
    ("flat-list", [1, "a", None, 2.5], None),
    ("tuple", (1, 2), [1, 2]),
    ("nested", {"a": [1, 2], "b": {"c": 3}}, None),
    ("brackets-in-strings", {"s": "has [brackets] and {braces}"}, None),
    ("list-of-dicts", [{"a": 1}, {"b": [2]}], None),
    ("int-keys", {1: "one"}, {"1": "one"}),
    ("enum", Colour.RED, "red"),
    ("enum-in-dict", {"c": Colour.RED}, {"c": "red"}),
    ("shared", SHARED, None),
    ("text", "plain", None),
    ("number", 7, None),
]


def replayed(out: Any, expected: Any) -> Any:
    return json.loads(json.dumps(out)) if expected is None else expected


def same_json(a: Any, b: Any) -> bool:
    """Equal, with exactly the same types all the way down (``1 == True`` and ``"red" ==
    Colour.RED`` do not count)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def handler_for(api: str, *, is_async: bool) -> tuple[CommHandler, list[tuple[str, Any, Any]]]:
    client = eagerstep.Client(app_id="perf", dev=True, api_base_url=api)
    seen: list[tuple[str, Any, Any]] = []

    def check(step_id: str, out: Any, expected: Any, got: Any) -> None:
        seen.append((step_id, got, replayed(out, expected)))
        if isinstance(got, dict):
            got["mutated"] = True
            for value in got.values():
                if isinstance(value, (dict, list)):
                    value.clear()
        elif isinstance(got, list):
            got.append("mutated")
            for value in got:
                if isinstance(value, (dict, list)):
                    value.clear()

    if is_async:

        @client.function(id="f", trigger=eagerstep.Event("e"))
        async def af(ctx: eagerstep.AsyncContext) -> str:
            for step_id, out, expected in OUTPUTS:

                async def give(out: Any = out) -> Any:
                    return out

                check(step_id, out, expected, await ctx.step.run(step_id, give))
            return "done"

        return CommHandler(client, [af], framework="test"), seen

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> str:
        for step_id, out, expected in OUTPUTS:
            check(step_id, out, expected, ctx.step.run(step_id, lambda out=out: out))
        return "done"

    return CommHandler(client, [f], framework="test"), seen


@pytest.mark.parametrize("is_async", [False, True], ids=["def", "async-def"])
def test_step_values_are_round_tripped_copies(orchestrator: RecordingOrchestrator, is_async: bool) -> None:
    handler, seen = handler_for(orchestrator.url, is_async=is_async)
    run_id = "01PERFPATHS" + ("A" if is_async else "S") * 15
    response = handler.handle(call_request("perf-f", run_id=run_id))
    handler.close()
    assert response.status == 206, response.body
    ops = json.loads(response.body)
    assert ops[-1]["op"] == "RunComplete" and ops[-1]["data"] == "done"

    # what the code got back in this request is what a replay would give, with the same types
    assert [s for s, _, _ in seen] == [s for s, _, _ in OUTPUTS]
    for step_id, got, want in seen:
        if not isinstance(got, (dict, list)):
            assert same_json(got, want), step_id
    assert SHARED == {"n": 1}, "the code's copy must not be the object the step returned"

    # what was recorded (checkpointed or in the reply) is the unmutated round trip
    recorded = dict(orchestrator.stored_steps(run_id))
    recorded.update({op["id"]: op["data"] for op in ops if op["op"] == "StepRun"})
    for step_id, out, expected in OUTPUTS:
        assert same_json(recorded[protocol.hash_step_id(step_id)], replayed(out, expected)), step_id


def test_repeated_step_ids_hash_like_the_protocol_across_runs(orchestrator: RecordingOrchestrator) -> None:
    client = eagerstep.Client(app_id="perf", dev=True, api_base_url=orchestrator.url)

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> int:
        return sum(ctx.step.run("same", lambda i=i: i) for i in range(3))

    handler = CommHandler(client, [f], framework="test")
    for run in range(2):
        run_id = f"01PERFHASHES{run}" + "0" * 14
        response = handler.handle(call_request("perf-f", run_id=run_id))
        assert response.status == 206, response.body
        ops = json.loads(response.body)
        ids = set(orchestrator.stored_steps(run_id)) | {op["id"] for op in ops if op["op"] == "StepRun"}
        assert ids == {protocol.step_id_for_occurrence("same", i) for i in range(3)}
    handler.close()


def test_async_function_under_handle_checkpoints_through_the_sender_thread(
    orchestrator: RecordingOrchestrator,
) -> None:
    client = eagerstep.Client(app_id="perf", dev=True, api_base_url=orchestrator.url)

    @client.function(id="f", trigger=eagerstep.Event("e"))
    async def af(ctx: eagerstep.AsyncContext) -> int:
        total = 0
        for i in range(50):

            async def step(i: int = i) -> int:
                return i

            total += await ctx.step.run(f"s{i}", step)
        return total

    handler = CommHandler(client, [af], framework="test")
    run_id = "01PERFASYNCUNDERSYNC000000"
    before = dict(transport._loops)
    response = handler.handle(call_request("perf-f", run_id=run_id))
    handler.close()
    assert response.status == 206, response.body
    ops = json.loads(response.body)
    assert ops[-1] == {"op": "RunComplete", "id": protocol.RUN_COMPLETE_ID, "data": sum(range(50))}
    stored = orchestrator.stored_steps(run_id)
    replied = {op["id"] for op in ops if op["op"] == "StepRun"}
    assert not set(stored) & replied and not stored.duplicates
    assert set(stored) | replied == {protocol.hash_step_id(f"s{i}") for i in range(50)}
    assert dict(transport._loops) == before, "no loop sender was set up for the private loop"


def test_checkpointing_bounds_are_derived_once_and_unchanged() -> None:
    config = Checkpointing(
        request_timeout=timedelta(seconds=1.5), max_attempts=3, retry_delay=timedelta(milliseconds=40)
    )
    base = 0.04
    expected = 3 * 1.5 * 2 + (base + base) + (2 * base + base) + 0.5
    assert config.longest_flush() == pytest.approx(expected)
    assert config.reply_wait() == pytest.approx(min(expected, Checkpointing.MAX_REPLY_WAIT))
    assert Checkpointing().reply_wait() == Checkpointing.MAX_REPLY_WAIT
    changed = dataclasses.replace(config, max_attempts=1)
    assert changed.longest_flush() == pytest.approx(1 * 1.5 * 2 + 0.5)
    assert config == Checkpointing(
        request_timeout=timedelta(seconds=1.5), max_attempts=3, retry_delay=timedelta(milliseconds=40)
    )
    assert "_longest_flush" not in repr(config)


def test_checkpoint_target_keeps_its_value_semantics() -> None:
    fields = {
        "api_base_url": "http://127.0.0.1:9/",
        "run_id": "r1",
        "fn_id": "f",
        "qi_id": None,
        "request_id": "q",
        "generation_id": 2,
        "request_started_at_ms": 5,
        "signing_key": None,
        "signing_key_fallback": None,
        "sdk_header": "eagerstep-py:v0",
    }
    target = CheckpointTarget(**fields)
    assert target.url == "http://127.0.0.1:9/v1/checkpoint/r1/async"
    assert target == CheckpointTarget(**fields) and hash(target) == hash(CheckpointTarget(**fields))
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.run_id = "r2"  # type: ignore[misc]
    other = dataclasses.replace(target, run_id="r2")
    assert other.url.endswith("/v1/checkpoint/r2/async") and other.request_id == "q"
    assert dataclasses.asdict(target) == fields


SENDER_START = """
import threading
import time
import eagerstep
from eagerstep.core.comm import CommHandler, Request

client = eagerstep.Client(app_id="perf", dev=True, api_base_url="http://127.0.0.1:9")

@client.function(id="f", trigger=eagerstep.Event("e"))
def f(ctx):
    return 1

handler = CommHandler(client, [f], framework="test")
print(sorted(t.name for t in threading.enumerate()))
response = handler.handle(Request("GET", "http://127.0.0.1:9/api/inngest"))
names = sorted(t.name for t in threading.enumerate())
print(response.status, names)
deadline = time.monotonic() + 10  # the sender starts its first HTTP worker itself
while "eagerstep-checkpoint-http-0" not in names and time.monotonic() < deadline:
    time.sleep(0.01)
    names = sorted(t.name for t in threading.enumerate())
print(names)
"""


def test_sender_starts_on_the_first_request_not_at_construction() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    result = subprocess.run(
        [sys.executable, "-c", SENDER_START], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    created, served, later = result.stdout.strip().splitlines()[-3:]
    assert created == "['MainThread']"
    assert served.startswith("200 ") and "'eagerstep-checkpoint'" in served
    assert "'eagerstep-checkpoint-http-0'" in later


SENDER_AFTER_FORK = """
import os, time
import eagerstep
from eagerstep.core import transport
from eagerstep.core.comm import CommHandler, Request

client = eagerstep.Client(app_id="perf", dev=True, api_base_url="http://127.0.0.1:9")

@client.function(id="f", trigger=eagerstep.Event("e"))
def f(ctx):
    return 1

handler = CommHandler(client, [f], framework="test")
handler.handle(Request("GET", "http://127.0.0.1:9/api/inngest"))
parent = transport._thread
assert parent is not None and parent.pid == os.getpid()
pid = os.fork()
if pid == 0:
    code = 1
    try:
        assert transport._thread is None  # the parent's sender does not exist here
        handler.handle(Request("GET", "http://127.0.0.1:9/api/inngest"))
        child = transport._thread
        ok = child is not None and child is not parent and child.pid == os.getpid()
        code = 0 if ok and child._thread.is_alive() else 2
    finally:
        os._exit(code)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.01)
else:
    os.kill(pid, 9)
    raise SystemExit("the forked child did not finish")
print("child", os.waitstatus_to_exitcode(status), "parent alive", parent._thread.is_alive())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_its_own_sender_on_its_first_request() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    result = subprocess.run(
        [sys.executable, "-c", SENDER_AFTER_FORK],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "child 0 parent alive True"
