"""Middleware hooks through every framework: the function's and each step's hooks, memoised vs
executed, checkpointed or orchestrated, each reported once per request (eager parallel rounds too),
the transforms of input, step output and result, sending events, failures."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import eagerstep
from eagerstep.core.function import Function
from eagerstep.core.middleware import (
    Failure,
    FunctionInput,
    Middleware,
    RunInfo,
    RunOutcome,
    StepInfo,
    StepResult,
)
from eagerstep.core.protocol import hash_step_id as h
from tests.http import functions as mf
from tests.http.clients.base import HttpClient
from tests.http.middleware_functions import BODIES
from tests.support.driver import RunResult, drive
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import wire_event


def _mode(step: StepInfo) -> str:
    if step.memoised:
        return "memoised"
    if not step.executed:
        return "scheduled"
    return "checkpointed" if step.checkpointed else "orchestrated"


class Recorder(Middleware):
    """Records every hook call, per run: (request number, hook, details...)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.failures: list[Failure] = []
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()

    def _add(self, run: RunInfo, *item: Any) -> None:
        with self.lock:
            self.calls.append((run.run_id, self.requests[run.run_id], *item))

    def before_function(self, run: RunInfo) -> None:
        with self.lock:
            self.requests[run.run_id] += 1
        self._add(run, "before_function", run.replaying, run.attempt)

    def before_execution(self, run: RunInfo) -> None:
        self._add(run, "before_execution")

    def after_function(self, run: RunInfo, outcome: RunOutcome) -> None:
        self._add(run, "after_function", outcome.kind, outcome.final)

    def before_step(self, step: StepInfo) -> None:
        self._add(step.run, "before_step", step.id, _mode(step), step.kind, step.attempt, step.parallel)

    def after_step(self, step: StepInfo, result: StepResult) -> None:
        outcome = "error" if result.error is not None else "ok"
        self._add(step.run, "after_step", step.id, _mode(step), outcome, step.attempt)

    def on_failure(self, failure: Failure) -> None:
        self.failures.append(failure)
        step = failure.step.id if failure.step is not None else None
        self._add(failure.run, "on_failure", step, failure.final, type(failure.error).__name__)

    def before_send_events(self, events: list[dict[str, Any]]) -> None:
        with self.lock:
            self.calls.append(("-", 0, "before_send_events", [e["name"] for e in events]))

    def after_send_events(
        self, events: list[dict[str, Any]], ids: list[str] | None, error: BaseException | None
    ) -> None:
        with self.lock:
            self.calls.append(("-", 0, "after_send_events", len(ids or []), error))

    # -- views ---------------------------------------------------------------------------------

    def of(self, run_id: str) -> list[tuple[Any, ...]]:
        return [c[1:] for c in self.calls if c[0] == run_id]

    def requests_of(self, run_id: str) -> list[list[tuple[Any, ...]]]:
        by_request: dict[int, list[tuple[Any, ...]]] = {}
        for number, *item in self.of(run_id):
            by_request.setdefault(number, []).append(tuple(item))
        return [by_request[n] for n in sorted(by_request)]

    def steps(self, run_id: str, hook: str = "after_step") -> list[tuple[Any, ...]]:
        return [c[2:] for c in self.of(run_id) if c[1] == hook]


@pytest.fixture
def attach() -> Iterator[Any]:
    """``attach(function, middleware)`` for this test only."""
    attached: list[tuple[Function[Any], Middleware]] = []

    def add(function: Function[Any], middleware: Middleware) -> Middleware:
        function.middleware.append(middleware)
        attached.append((function, middleware))
        return middleware

    yield add
    for function, middleware in attached:
        if middleware in function.middleware:
            function.middleware.remove(middleware)


def _check_each_request(recorder: Recorder, result: RunResult) -> None:
    """In every request: one before/after_function pair around everything; before_execution at
    most once and after every memoised step; no step reported twice."""
    requests = recorder.requests_of(result.run_id)
    assert len(requests) == result.invocations
    for calls in requests:
        names = [c[0] for c in calls]
        assert names[0] == "before_function" and names[-1] == "after_function", names
        assert names.count("before_function") == names.count("after_function") == 1
        assert names.count("before_execution") <= 1
        before = Counter(c[1] for c in calls if c[0] == "before_step")
        after = Counter(c[1] for c in calls if c[0] == "after_step")
        assert before == after and set(before.values()) <= {1}, calls
        if "before_execution" in names:
            start = names.index("before_execution")
            assert all(c[2] != "memoised" for c in calls[start:] if c[0] in ("before_step", "after_step"))


@pytest.mark.parametrize(
    ("fn", "checkpointed"), [(mf.mw_flow, True), (mf.mw_flow_async, True), (mf.mw_flow_standard, False)]
)
def test_function_and_step_hooks_across_replays(
    http_client: HttpClient,
    orchestrator: RecordingOrchestrator,
    attach: Any,
    fn: Function[Any],
    checkpointed: bool,
) -> None:
    recorder = attach(fn, Recorder())
    result = drive(
        http_client.handle, fn.fully_qualified_id, wire_event("test/mw"), orchestrator=orchestrator
    )
    assert result.completed, result.error
    _check_each_request(recorder, result)
    requests = recorder.requests_of(result.run_id)

    # the first request: new work at once; "a" runs (checkpointed, or as the reply in standard mode)
    first = requests[0]
    assert first[0] == ("before_function", False, 0) and first[1] == ("before_execution",)
    mode = "checkpointed" if checkpointed else "orchestrated"
    assert ("before_step", "a", mode, "run", 0, False) in first
    assert first[-1] == ("after_function", "handed_over", False)

    # every step ran (or was handed over) exactly as often as the run needed, across requests
    executed = Counter((c[0], c[1], c[2], c[3]) for c in recorder.steps(result.run_id) if c[1] != "memoised")
    assert executed == {
        ("a", mode, "ok", 0): 1,
        ("nap", "scheduled", "ok", 0): 1,
        ("b", mode, "error", 0): 1,  # the first attempt fails...
        ("b", "orchestrated", "ok", 1): 1,  # ...the retry replies with its result alone
        ("emit", "orchestrated", "ok", 0): 1,  # send_event replies at once, in either mode
    }
    assert BODIES[(result.run_id, "a")] == 1 and BODIES[(result.run_id, "b")] == 2

    # a later request replays: each earlier step is reported once, as memoised, before new work
    last = requests[-1]
    assert last[0] == ("before_function", True, 0)
    memoised = [c[1] for c in last if c[0] == "after_step" and c[2] == "memoised"]
    assert memoised == ["a", "nap", "b", "emit"]
    assert last[-2:] == [("before_execution",), ("after_function", "completed", False)]

    # one failure, not final (the orchestrator retried it)
    assert [c[:3] for c in recorder.steps(result.run_id, "on_failure")] == [("b", False, "ValueError")]
    sent = [c for c in recorder.calls if c[2] in ("before_send_events", "after_send_events")]
    assert sent == [
        ("-", 0, "before_send_events", ["test/mw-emitted"]),
        ("-", 0, "after_send_events", 1, None),
    ]


@pytest.mark.parametrize("fn", [mf.mw_parallel, mf.mw_parallel_async])
def test_an_eager_group_reports_each_step_once_and_a_replay_reports_them_memoised(
    http_client: HttpClient, orchestrator: RecordingOrchestrator, attach: Any, fn: Function[Any]
) -> None:
    recorder = attach(fn, Recorder())
    result = drive(http_client.handle, fn.fully_qualified_id, orchestrator=orchestrator)
    assert result.completed, result.error
    assert result.invocations == 1  # the group's two rounds ran in the one request
    _check_each_request(recorder, result)
    steps = recorder.steps(result.run_id, "before_step")
    assert sorted(c[0] for c in steps) == ["before", "p1", "p2a", "p2b", "p3"]
    assert all(c[1] == "checkpointed" for c in steps)  # no memoised report from the second round
    assert {c[0] for c in steps if c[4]} == {"p1", "p2a", "p2b", "p3"}  # parallel=True
    assert all(BODIES[(result.run_id, n)] == 1 for n in ["before", "p1", "p2a", "p2b", "p3"])

    # the same steps recorded already (a replay): all memoised, each once, nothing runs
    replay = drive(http_client.handle, fn.fully_qualified_id, orchestrator=orchestrator, steps=result.memos)
    assert replay.completed and replay.output == result.output
    calls = recorder.requests_of(replay.run_id)
    assert len(calls) == 1
    reported = [(c[1], c[2]) for c in calls[0] if c[0] == "after_step"]
    assert sorted(reported) == sorted((n, "memoised") for n in ["before", "p1", "p2a", "p2b", "p3"])
    assert calls[0][-2:] == [("before_execution",), ("after_function", "completed", False)]
    assert not any(BODIES[(replay.run_id, n)] for n in ["before", "p1", "p2a", "p2b", "p3"])


class Wrapper(Middleware):
    """Wraps what leaves (step outputs, the result, events) and unwraps what comes back."""

    def transform_input(self, run: RunInfo, input: FunctionInput) -> None:
        for key, memo in input.steps.items():
            if isinstance(memo, dict) and isinstance(memo.get("data"), dict) and "wrapped" in memo["data"]:
                input.steps[key] = {"data": memo["data"]["wrapped"]}
        input.event["data"] = {**input.event.get("data", {}), "seen": True}

    def transform_step_output(self, step: StepInfo, output: Any) -> Any:
        return {"wrapped": output}

    def transform_output(self, run: RunInfo, output: Any) -> Any:
        return {"wrapped": output}

    def before_send_events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            event["data"]["stamp"] = "mw"


@pytest.mark.parametrize("fn", [mf.mw_flow, mf.mw_flow_async, mf.mw_flow_standard])
def test_transforms_change_what_the_orchestrator_sees_not_what_the_code_sees(
    http_client: HttpClient, orchestrator: RecordingOrchestrator, attach: Any, fn: Function[Any]
) -> None:
    attach(fn, Wrapper())
    result = drive(
        http_client.handle, fn.fully_qualified_id, wire_event("test/mw"), orchestrator=orchestrator
    )
    assert result.completed, result.error
    plain_a = {"step": "a", "secret": "a-secret"}
    # the orchestrator holds wrapped outputs, the code got them plain (and the event transformed)
    assert result.memos[h("a")] == {"data": {"wrapped": plain_a}}
    assert result.memos[h("emit")]["data"] == {"ids": [orchestrator.events[-1]["id"]]}  # not a step.run
    assert result.output == {
        "wrapped": {"a": plain_a, "b": {"step": "b", "secret": "b-secret"}, "event": {"seen": True}}
    }
    assert orchestrator.events[-1]["data"] == {"encrypted": {"pin": 1234}, "k": 1, "stamp": "mw"}


class BrokenInput(Middleware):
    def transform_input(self, run: RunInfo, input: FunctionInput) -> None:
        raise RuntimeError("cannot read the input")


class BrokenObserver(Recorder):
    def after_step(self, step: StepInfo, result: StepResult) -> None:
        raise RuntimeError("telemetry is down")


def test_a_failing_transform_fails_the_attempt_and_a_failing_observer_does_not(
    http_client: HttpClient,
    orchestrator: RecordingOrchestrator,
    attach: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    attach(mf.mw_parallel, BrokenInput())
    failed = drive(
        http_client.handle, mf.mw_parallel.fully_qualified_id, orchestrator=orchestrator, max_attempts=1
    )
    assert failed.status == "failed" and "cannot read the input" in str(failed.error)
    assert not any(count for (run, _), count in BODIES.items() if run == failed.run_id)

    mf.mw_parallel.middleware.clear()
    caplog.set_level(logging.ERROR, logger="eagerstep")
    attach(mf.mw_parallel, BrokenObserver())
    result = drive(http_client.handle, mf.mw_parallel.fully_qualified_id, orchestrator=orchestrator)
    assert result.completed, result.error
    assert any("BrokenObserver.after_step raised; the run goes on" in r.getMessage() for r in caplog.records)


def test_a_step_that_fails_for_good_is_final_once(
    http_client: HttpClient, orchestrator: RecordingOrchestrator, attach: Any
) -> None:
    recorder = attach(mf.mw_fails, Recorder())
    result = drive(
        http_client.handle, mf.mw_fails.fully_qualified_id, orchestrator=orchestrator, max_attempts=2
    )
    assert result.status == "failed"
    assert [c[:3] for c in recorder.steps(result.run_id, "on_failure")] == [
        ("doomed", False, "ValueError"),  # attempt 1 of 2: retried
        ("doomed", True, "ValueError"),  # attempt 2 of 2: the step fails for good
        (None, True, "StepError"),  # the function did not catch it: the run fails
    ]
    assert recorder.requests_of(result.run_id)[-1][-1] == ("after_function", "failed", True)


def test_client_middleware_sees_sent_events_and_runs_before_a_functions_own(
    orchestrator: RecordingOrchestrator,
) -> None:
    order: list[str] = []

    class Named(Middleware):
        def __init__(self, name: str) -> None:
            self.name = name

        def before_send_events(self, events: list[dict[str, Any]]) -> None:
            order.append(f"{self.name}:before")
            events[0]["data"][self.name] = True

        def after_send_events(self, events: Any, ids: Any, error: Any) -> None:
            order.append(f"{self.name}:after")

    client = eagerstep.Client(
        app_id="mw-send", dev=True, event_api_base_url=orchestrator.url, middleware=[Named("client")]
    )
    assert client.send({"name": "test/sent", "data": {}})
    assert orchestrator.events[-1]["data"] == {"client": True}

    @client.function(id="f", trigger=eagerstep.Event("test/f"), middleware=[Named("function")])
    def f(ctx: eagerstep.Context) -> None:
        pass

    order.clear()
    client.send_now({"name": "test/sent", "data": {}}, middleware=f.middleware_chain())
    assert order == ["client:before", "function:before", "function:after", "client:after"]
    assert orchestrator.events[-1]["data"] == {"client": True, "function": True}
    with pytest.raises(TypeError, match="Middleware instances"):
        eagerstep.Client(app_id="x", middleware=[object()])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="Middleware instances"):
        client.function(id="g", trigger=eagerstep.Event("t"), middleware=[Named])(f.handler)  # type: ignore[list-item]
