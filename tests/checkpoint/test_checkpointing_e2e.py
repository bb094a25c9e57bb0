"""Checkpointing end to end: CommHandler.handle / handle_async, driven like an orchestrator would,
checkpointing to a recording orchestrator on a real loopback socket.

Every scenario runs for a ``def`` function (served by ``handle``) and an ``async def`` one (served
by ``handle_async``). Each checks that every completed step reached the orchestrator exactly once
(through a checkpoint or in a 206 reply) and that no step body ran twice unless it failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

import eagerstep
from eagerstep.core import transport
from eagerstep.core.comm import CommHandler, Response
from eagerstep.core.function import Function
from eagerstep.core.protocol import hash_step_id
from tests.support.driver import RunResult, drive, drive_async, parse_ops
from tests.support.orchestrator import RecordingOrchestrator, unused_url
from tests.support.requests import call_request

CKPT = "/v1/checkpoint/"
FLAVOURS = ["def", "async"]
FAST_RETRIES = eagerstep.Checkpointing(
    retry_delay=timedelta(milliseconds=5), request_timeout=timedelta(seconds=2)
)

Action = tuple[Any, ...]


@dataclass
class Harness:
    """A client whose API is the recording orchestrator, and a way to define and run functions."""

    orch: RecordingOrchestrator
    flavour: str
    api_url: str
    checkpointing: eagerstep.Checkpointing | bool = FAST_RETRIES
    executed: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # step name -> times left to raise
    hooks: dict[str, Callable[[], None]] = field(default_factory=dict)  # run inside a step body
    step_seconds: float = 0.002

    def __post_init__(self) -> None:
        self.client = eagerstep.Client(
            app_id="ckpt",
            dev=True,
            api_base_url=self.api_url,
            event_api_base_url=self.orch.url,
            checkpointing=self.checkpointing,
        )
        self.functions: list[Function[Any]] = []
        self._handler: CommHandler | None = None

    @property
    def handler(self) -> CommHandler:
        if self._handler is None:
            self._handler = CommHandler(self.client, self.functions, framework="test")
        return self._handler

    def define(self, fid: str, actions: list[Action], **options: Any) -> Function[Any]:
        """A function doing ``actions`` in order and returning ``{"out": [each result]}``."""
        if self.flavour == "def":
            fn = self.client.function(id=fid, trigger=eagerstep.Event("t/run"), **options)(
                self._sync_handler(actions)
            )
        else:
            fn = self.client.function(id=fid, trigger=eagerstep.Event("t/run"), **options)(
                self._async_handler(actions)
            )
        self.functions.append(fn)
        return fn

    def _body(self, name: str) -> Callable[[], Any]:
        def body() -> Any:
            self.executed[name] += 1
            if self.failures[name] > 0:
                self.failures[name] -= 1
                raise RuntimeError(f"{name} failed")
            if name in self.hooks:
                self.hooks[name]()
            elif self.step_seconds:
                threading.Event().wait(self.step_seconds)
            return {"n": name}

        return body

    def _async_body(self, name: str) -> Callable[[], Any]:
        async def body() -> Any:
            self.executed[name] += 1
            if self.failures[name] > 0:
                self.failures[name] -= 1
                raise RuntimeError(f"{name} failed")
            if name in self.hooks:
                await asyncio.to_thread(self.hooks[name])
            elif self.step_seconds:
                await asyncio.sleep(self.step_seconds)
            return {"n": name}

        return body

    def _sync_handler(self, actions: list[Action]) -> Callable[[eagerstep.Context], Any]:
        def handler(ctx: eagerstep.Context) -> Any:
            out: list[Any] = []
            for action in actions:
                kind, name = action[0], action[1]
                if kind == "run":
                    out.append(ctx.step.run(name, self._body(name))["n"])
                elif kind == "catch":
                    try:
                        out.append(ctx.step.run(name, self._body(name))["n"])
                    except eagerstep.StepError as exc:
                        out.append(f"caught {exc.message}")
                elif kind == "sleep":
                    ctx.step.sleep(name, "1s")
                    out.append("slept")
                elif kind == "wait":
                    event = ctx.step.wait_for_event(name, event=action[2], timeout="1h")
                    out.append(None if event is None else event.data)
                elif kind == "invoke":
                    out.append(ctx.step.invoke(name, function=action[2], data={"x": 1}))
                elif kind == "send":
                    out.append(len(ctx.step.send_event(name, {"name": "t/sent", "data": {}})))
                elif kind == "parallel":
                    group = ctx.step.parallel([self._member(ctx, n) for n in action[1]])
                    out.append([r["n"] for r in group])
            return {"out": out}

        return handler

    def _member(self, ctx: eagerstep.Context, name: str) -> Callable[[], Any]:
        def member() -> Any:
            return ctx.step.run(name, self._body(name))

        return member

    def _async_handler(self, actions: list[Action]) -> Callable[[eagerstep.Context], Any]:
        async def handler(ctx: Any) -> Any:
            out: list[Any] = []
            for action in actions:
                kind, name = action[0], action[1]
                if kind == "run":
                    out.append((await ctx.step.run(name, self._async_body(name)))["n"])
                elif kind == "catch":
                    try:
                        out.append((await ctx.step.run(name, self._async_body(name)))["n"])
                    except eagerstep.StepError as exc:
                        out.append(f"caught {exc.message}")
                elif kind == "sleep":
                    await ctx.step.sleep(name, "1s")
                    out.append("slept")
                elif kind == "wait":
                    event = await ctx.step.wait_for_event(name, event=action[2], timeout="1h")
                    out.append(None if event is None else event.data)
                elif kind == "invoke":
                    out.append(await ctx.step.invoke(name, function=action[2], data={"x": 1}))
                elif kind == "send":
                    out.append(len(await ctx.step.send_event(name, {"name": "t/sent", "data": {}})))
                elif kind == "parallel":
                    group = await ctx.step.parallel(
                        [lambda n=n: ctx.step.run(n, self._async_body(n)) for n in action[1]]
                    )
                    out.append([r["n"] for r in group])
            return {"out": out}

        return handler

    def run(self, fn: Function[Any], **options: Any) -> RunResult:
        """Drive one run to its end through handle (def) or handle_async (async def)."""
        options.setdefault("orchestrator", self.orch)
        if self.flavour == "def":
            return drive(self.handler.handle, fn.fully_qualified_id, **options)
        return asyncio.run(drive_async(self.handler.handle_async, fn.fully_qualified_id, **options))

    def call(self, fn: Function[Any], **options: Any) -> Response:
        """One call request, answered."""
        request = call_request(fn.fully_qualified_id, **options)
        if self.flavour == "def":
            return self.handler.handle(request)
        return asyncio.run(self.handler.handle_async(request))


@pytest.fixture(params=FLAVOURS)
def harness(request: pytest.FixtureRequest, orchestrator: RecordingOrchestrator) -> Iterator[Harness]:
    h = Harness(orchestrator, request.param, orchestrator.url)
    yield h
    if h._handler is not None:
        h._handler.close()


def runs(*names: str) -> list[Action]:
    return [("run", n) for n in names]


def step_runs_in_replies(result: RunResult) -> list[str]:
    return [op["id"] for op in result.ops if op["op"] == "StepRun"]


def assert_each_step_once(
    result: RunResult, orch: RecordingOrchestrator, names: list[str], *, duplicates_allowed: bool = False
) -> None:
    """Every named step reached the orchestrator: by checkpoint or in a 206, once (unless allowed)."""
    stored = orch.stored_steps(result.run_id)
    replied = step_runs_in_replies(result)
    expected = {hash_step_id(n) for n in names}
    assert expected <= set(stored) | set(replied)
    assert expected <= set(result.memos)
    assert len(replied) == len(set(replied)), "a step came back in two replies"
    if not duplicates_allowed:
        assert stored.duplicates == {}
        assert not set(stored) & set(replied), "a step was both checkpointed and replied"
    for name in names:
        assert result.memos[hash_step_id(name)] == {"data": {"n": name}}


TEN = [f"s{i}" for i in range(10)]


# ------------------------------------------------------------------------------------------------
# The headline: one invocation instead of eleven


def test_ten_steps_in_one_invocation(harness: Harness) -> None:
    fn = harness.define("ten", runs(*TEN))
    result = harness.run(fn)
    assert result.completed and result.output == {"out": TEN}
    assert result.invocations == 1
    calls = harness.orch.checkpoint_calls(result.run_id)
    assert 1 <= len(calls) <= 10
    assert all(c.status == 200 for c in calls)
    assert_each_step_once(result, harness.orch, TEN)
    assert result.op_batches[-1][-1]["op"] == "RunComplete"
    assert all(harness.executed[n] == 1 for n in TEN)
    body = calls[0].json
    assert body["run_id"] == result.run_id and body["fn_id"] and body["qi_id"]
    assert body["request_id"] == result.requests[0].header("x-request-id")
    assert body["generation_id"] == 1


def test_ten_fast_steps_coalesce(harness: Harness) -> None:
    harness.step_seconds = 0
    fn = harness.define("ten-fast", runs(*TEN))
    result = harness.run(fn)
    assert result.completed and result.invocations == 1
    assert len(harness.orch.checkpoint_calls(result.run_id)) <= 10
    assert_each_step_once(result, harness.orch, TEN)


def test_standard_mode_takes_eleven_invocations(harness: Harness) -> None:
    fn = harness.define("ten-standard", runs(*TEN), checkpointing=False)
    result = harness.run(fn)
    assert result.completed and result.output == {"out": TEN}
    assert result.invocations == 11
    assert harness.orch.checkpoint_calls(result.run_id) == []
    assert all(len(batch) == 1 for batch in result.op_batches)


def test_no_fn_id_means_standard_mode(harness: Harness) -> None:
    fn = harness.define("no-fn-id", runs("a", "b"))
    result = harness.run(fn, request_options={"internal_fn_id": None})
    assert result.completed and result.invocations == 3
    assert harness.orch.checkpoint_calls(result.run_id) == []


@pytest.mark.parametrize("function_kind", ["def", "async"])
def test_each_kind_under_the_other_entry_point(
    orchestrator: RecordingOrchestrator, function_kind: str
) -> None:
    """``def`` under handle_async (thread pool) and ``async def`` under handle (private loop)."""
    h = Harness(orchestrator, function_kind, orchestrator.url)
    fn = h.define("cross", runs(*TEN))
    if function_kind == "def":
        result = asyncio.run(
            drive_async(h.handler.handle_async, fn.fully_qualified_id, orchestrator=orchestrator)
        )
    else:
        result = drive(h.handler.handle, fn.fully_qualified_id, orchestrator=orchestrator)
    h.handler.close()
    assert result.completed and result.invocations == 1
    assert len(orchestrator.checkpoint_calls(result.run_id)) <= 10
    assert_each_step_once(result, orchestrator, TEN)


# ------------------------------------------------------------------------------------------------
# Falling back to standard orchestration


def test_step_error_with_attempts_left(harness: Harness) -> None:
    harness.failures["c"] = 1
    fn = harness.define("step-error", runs("a", "b", "c", "d"))
    result = harness.run(fn)
    assert result.completed and result.output == {"out": ["a", "b", "c", "d"]}
    first = result.responses[0]
    assert first.status == 206 and first.header("X-Inngest-No-Retry") == "false"
    error_ops = [op for op in result.op_batches[0] if op["op"] == "StepError"]
    assert len(error_ops) == 1 and error_ops[0]["id"] == hash_step_id("c")
    assert error_ops[0]["error"]["message"] == "c failed" and error_ops[0]["error"]["noRetry"] is False
    # the retry (attempt 1) runs c and returns right after it; then checkpointing resumes
    retry = json.loads(result.requests[1].body)["ctx"]
    assert retry["attempt"] == 1
    assert [op["op"] for op in result.op_batches[1]] == ["StepRun"]
    assert result.op_batches[1][0]["id"] == hash_step_id("c")
    assert result.invocations == 3
    assert harness.executed == Counter({"a": 1, "b": 1, "c": 2, "d": 1})
    assert_each_step_once(result, harness.orch, ["a", "b", "c", "d"])


def test_step_failed_on_the_last_attempt(harness: Harness) -> None:
    harness.failures["b"] = 1
    fn = harness.define("step-failed", [("run", "a"), ("catch", "b"), ("run", "c")], retries=0)
    result = harness.run(fn, max_attempts=1)
    assert result.completed and result.output == {"out": ["a", "caught b failed", "c"]}
    first = result.responses[0]
    assert first.header("X-Inngest-No-Retry") == "true"
    failed = [op for op in result.op_batches[0] if op["op"] == "StepFailed"]
    assert len(failed) == 1 and failed[0]["error"]["noRetry"] is True
    assert result.memos[hash_step_id("b")]["error"]["message"] == "b failed"
    assert result.invocations == 2
    assert_each_step_once(result, harness.orch, ["a", "c"])


def test_function_error_after_steps_keeps_the_steps(harness: Harness) -> None:
    harness.failures["c"] = 5
    fn = harness.define("fn-error", [("run", "a"), ("run", "b"), ("catch", "c"), ("run", "d")], retries=0)
    result = harness.run(fn, max_attempts=1)
    assert result.completed and result.output == {"out": ["a", "b", "caught c failed", "d"]}
    assert_each_step_once(result, harness.orch, ["a", "b", "d"])


def test_sleep(harness: Harness) -> None:
    fn = harness.define("sleep", [*runs("a", "b"), ("sleep", "nap"), *runs("c")])
    result = harness.run(fn)
    assert result.completed and result.output == {"out": ["a", "b", "slept", "c"]}
    assert result.invocations == 2
    first = [op["op"] for op in result.op_batches[0]]
    assert first[-1] == "Sleep" and set(first[:-1]) <= {"StepRun"}
    assert result.op_batches[0][-1]["opts"] == {"duration": "1s"}
    assert_each_step_once(result, harness.orch, ["a", "b", "c"])


def test_wait_for_event(harness: Harness) -> None:
    fn = harness.define("wait", [*runs("a"), ("wait", "approval", "t/approved"), *runs("b")])
    answer = {"name": "t/approved", "data": {"ok": True}, "id": "e1", "ts": 1}
    result = harness.run(fn, wait_for_event={"approval": answer})
    assert result.completed and result.output == {"out": ["a", {"ok": True}, "b"]}
    assert result.op_batches[0][-1]["op"] == "WaitForEvent"
    assert result.op_batches[0][-1]["opts"]["event"] == "t/approved"
    assert result.invocations == 2
    assert_each_step_once(result, harness.orch, ["a", "b"])


def test_invoke(harness: Harness) -> None:
    fn = harness.define("invoker", [*runs("a"), ("invoke", "call-other", "ckpt-other"), *runs("b")])
    result = harness.run(fn, invoke={"call-other": {"data": 42}})
    assert result.completed and result.output == {"out": ["a", 42, "b"]}
    invoke_op = result.op_batches[0][-1]
    assert invoke_op["op"] == "InvokeFunction" and invoke_op["opts"]["function_id"] == "ckpt-other"
    assert_each_step_once(result, harness.orch, ["a", "b"])


def test_send_event_replies_at_once(harness: Harness) -> None:
    fn = harness.define("sender", [*runs("a"), ("send", "notify"), *runs("b")])
    result = harness.run(fn)
    assert result.completed and result.output == {"out": ["a", 1, "b"]}
    assert [e["name"] for e in harness.orch.events] == ["t/sent"]
    sent = [op for op in result.op_batches[0] if op["id"] == hash_step_id("notify")]
    assert sent and sent[0]["op"] == "StepRun"
    assert_each_step_once(result, harness.orch, ["a", "b"])


def test_parallel_group_then_checkpointing_resumes(harness: Harness) -> None:
    fn = harness.define(
        "parallel", [*runs("a", "b"), ("parallel", ["p1", "p2"]), *runs("c", "d")], parallel="orchestrated"
    )
    result = harness.run(fn)
    assert result.completed and result.output == {"out": ["a", "b", ["p1", "p2"], "c", "d"]}
    planned = [op for op in result.op_batches[0] if op["op"] == "StepPlanned"]
    assert [op["id"] for op in planned] == [hash_step_id("p1"), hash_step_id("p2")]
    targeted = [r.query["stepId"] for r in result.requests[1:3]]
    assert targeted == [hash_step_id("p1"), hash_step_id("p2")]
    assert all(json.loads(r.body)["ctx"]["disable_immediate_execution"] for r in result.requests[1:3])
    # after the group drains, one request runs c and d both: checkpointing resumed
    assert result.invocations == 4
    last = json.loads(result.requests[3].body)["ctx"]
    assert last["disable_immediate_execution"] is False
    assert result.op_batches[-1][-1]["op"] == "RunComplete"
    assert harness.executed == Counter({n: 1 for n in ("a", "b", "p1", "p2", "c", "d")})
    assert_each_step_once(result, harness.orch, ["a", "b", "p1", "p2", "c", "d"])


def test_eager_parallel_group_in_one_invocation(harness: Harness) -> None:
    fn = harness.define("eager", [*runs("a"), ("parallel", ["p1", "p2", "p3"]), *runs("c")])
    result = harness.run(fn)
    assert result.completed and result.output == {"out": ["a", ["p1", "p2", "p3"], "c"]}
    assert result.invocations == 1
    assert result.op_batches == [
        [{"op": "RunComplete", "id": hash_step_id("complete"), "data": result.output}]
    ]
    assert harness.executed == Counter({n: 1 for n in ("a", "p1", "p2", "p3", "c")})
    assert_each_step_once(result, harness.orch, ["a", "p1", "p2", "p3", "c"])


def test_eager_parallel_group_past_max_runtime_is_planned(harness: Harness) -> None:
    harness.step_seconds = 0.2  # "a" alone takes the request past max_runtime
    fn = harness.define(
        "late",
        [*runs("a"), ("parallel", ["p1", "p2"])],
        checkpointing=eagerstep.Checkpointing(max_runtime=timedelta(milliseconds=150)),
    )
    result = harness.run(fn)
    assert result.completed and result.output == {"out": ["a", ["p1", "p2"]]}
    planned = [op["id"] for op in result.ops if op["op"] == "StepPlanned"]
    assert planned == [hash_step_id("p1"), hash_step_id("p2")]
    assert harness.executed == Counter({n: 1 for n in ("a", "p1", "p2")})


def test_max_runtime_plans_the_next_step(harness: Harness) -> None:
    harness.step_seconds = 0.05
    fn = harness.define(
        "runtime",
        runs("a", "b", "c", "d"),
        checkpointing=eagerstep.Checkpointing(max_runtime=timedelta(milliseconds=80)),
    )
    result = harness.run(fn)
    assert result.completed and result.output == {"out": ["a", "b", "c", "d"]}
    first = result.op_batches[0]
    assert [op["op"] for op in first if op["op"] != "StepRun"] == ["StepPlanned"]
    planned = first[-1]["id"]
    assert planned != hash_step_id("a")  # at least one step ran before the limit
    assert result.requests[1].query["stepId"] == planned  # the orchestrator runs it on its own
    assert result.invocations >= 3
    assert harness.executed == Counter({"a": 1, "b": 1, "c": 1, "d": 1})
    assert_each_step_once(result, harness.orch, ["a", "b", "c", "d"])


def test_a_retry_request_returns_after_its_first_step(harness: Harness) -> None:
    fn = harness.define("retry-first", runs("a", "b", "c"))
    response = harness.call(fn, attempt=1, run_id="R-retry")
    assert response.status == 206
    ops = parse_ops(response)
    assert [op["op"] for op in ops] == ["StepRun"] and ops[0]["id"] == hash_step_id("a")
    assert harness.orch.checkpoint_calls("R-retry") == []
    assert harness.executed == Counter({"a": 1})


# ------------------------------------------------------------------------------------------------
# The checkpoint API misbehaving


def test_checkpoint_api_500_then_ok(harness: Harness) -> None:
    harness.orch.fail(CKPT, status=500, times=2)
    fn = harness.define("flaky", runs(*TEN))
    result = harness.run(fn)
    assert result.completed and result.invocations == 1
    statuses = [c.status for c in harness.orch.checkpoint_calls(result.run_id)]
    assert statuses[0] == 500  # retried (or handed back in the reply if the run ended first)
    assert_each_step_once(result, harness.orch, TEN)


def test_checkpoint_api_always_500(harness: Harness) -> None:
    harness.orch.fail(CKPT, status=500)
    fn = harness.define("broken", runs(*TEN))
    result = harness.run(fn)
    assert result.completed and result.output == {"out": TEN}
    assert harness.orch.stored_steps(result.run_id) == {}
    assert step_runs_in_replies(result) == [hash_step_id(n) for n in TEN]  # all of them, in order
    assert all(harness.executed[n] == 1 for n in TEN)
    assert_each_step_once(result, harness.orch, TEN)


def test_checkpoint_api_times_out(orchestrator: RecordingOrchestrator, flavour: str) -> None:
    orchestrator.delay(CKPT, 1.0)
    config = eagerstep.Checkpointing(
        request_timeout=timedelta(milliseconds=100), max_attempts=2, retry_delay=timedelta(milliseconds=5)
    )
    h = Harness(orchestrator, flavour, orchestrator.url, checkpointing=config)
    fn = h.define("slow-api", runs("a", "b", "c"))
    result = h.run(fn)
    h.handler.close()
    assert result.completed and result.output == {"out": ["a", "b", "c"]}
    # the slow server may store a step after the SDK gave up on it: a harmless duplicate
    assert_each_step_once(result, orchestrator, ["a", "b", "c"], duplicates_allowed=True)
    assert set(step_runs_in_replies(result)) >= {hash_step_id("a")}


def test_checkpoint_api_409_stops_the_run(harness: Harness) -> None:
    harness.orch.fail(CKPT, status=409)
    seen_stale = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "re-dispatched" in record.getMessage():
                seen_stale.set()

    watch = Watch()
    logging.getLogger("eagerstep").addHandler(watch)
    previous_level = logging.getLogger("eagerstep").level
    logging.getLogger("eagerstep").setLevel(logging.INFO)

    def wait_until_stale() -> None:
        seen_stale.wait(5)

    harness.hooks["s1"] = wait_until_stale
    try:
        fn = harness.define("stale", runs(*TEN))
        result = harness.run(fn)
    finally:
        logging.getLogger("eagerstep").removeHandler(watch)
        logging.getLogger("eagerstep").setLevel(previous_level)
    assert result.status == "failed" and result.invocations == 1
    response = result.responses[0]
    assert response.status == 400 and response.header("X-Inngest-No-Retry") == "true"
    assert json.loads(response.body)["code"] == "stale_dispatch"
    assert len(harness.orch.checkpoint_calls(result.run_id)) == 1  # never retried
    assert harness.executed == Counter({"s0": 1, "s1": 1})  # stopped at the next step boundary


def test_checkpoint_api_down(orchestrator: RecordingOrchestrator, flavour: str) -> None:
    h = Harness(orchestrator, flavour, unused_url())
    fn = h.define("down", runs(*TEN))
    result = h.run(fn)
    h.handler.close()
    assert result.completed and result.output == {"out": TEN}
    assert step_runs_in_replies(result) == [hash_step_id(n) for n in TEN]
    assert all(h.executed[n] == 1 for n in TEN)


def test_failing_checkpoints_hand_over_at_the_next_step(
    orchestrator: RecordingOrchestrator, flavour: str
) -> None:
    """Once a flush has failed for good, the request replies at the next step boundary."""
    h = Harness(orchestrator, flavour, unused_url())
    h.step_seconds = 0.05  # the failure (5 quick attempts) is known well before the run ends
    fn = h.define("down-slow", runs("a", "b", "c", "d", "e", "f"))
    result = h.run(fn)
    h.handler.close()
    assert result.completed and result.output == {"out": list("abcdef")}
    assert result.invocations > 1
    assert step_runs_in_replies(result) == [hash_step_id(n) for n in "abcdef"]
    assert all(h.executed[n] == 1 for n in "abcdef")


def test_signed_requests_and_hashed_bearer(flavour: str) -> None:
    key = "signkey-test-00112233445566778899aabbccddeeff"
    with RecordingOrchestrator(signing_keys=[key]) as orch:
        h = Harness(orch, flavour, orch.url)
        h.client = eagerstep.Client(
            app_id="ckpt", dev=False, signing_key=key, api_base_url=orch.url, checkpointing=FAST_RETRIES
        )
        fn = h.define("signed", runs("a", "b", "c"))
        result = h.run(fn, signing_key=key)
        h.handler.close()
        assert result.completed and result.invocations == 1
        assert all(r.header("X-Inngest-Signature") for r in result.responses)
        assert all(c.status == 200 for c in orch.checkpoint_calls(result.run_id))
        assert_each_step_once(result, orch, ["a", "b", "c"])


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def teardown_module() -> None:
    transport.shutdown(timeout=5)
