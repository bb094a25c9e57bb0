"""RunCheckpointer against a recording orchestrator on a real loopback socket."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from eagerstep.core import transport
from eagerstep.core.checkpoint import Checkpointing, CheckpointTarget, RunCheckpointer
from eagerstep.core.protocol import hash_step_id, step_run_op
from eagerstep.core.signing import hash_signing_key
from tests.support.orchestrator import RecordingOrchestrator, unused_url

KEY = "signkey-test-0123456789abcdef"
FALLBACK = "signkey-test-fedcba9876543210"
SDK = "eagerstep-py:v0.0.0-test"
FAST = Checkpointing(retry_delay=timedelta(milliseconds=5), request_timeout=timedelta(seconds=2))
CKPT = "/v1/checkpoint/"


def target(url: str, run_id: str = "run-1", **overrides: Any) -> CheckpointTarget:
    values: dict[str, Any] = {
        "api_base_url": url,
        "run_id": run_id,
        "fn_id": "8726914f-5a55-515f-8ab4-96321d00f915",
        "qi_id": "cWk6OmRlZmF1bHQ=",
        "request_id": "01REQUEST",
        "generation_id": 3,
        "request_started_at_ms": 1_700_000_000_123,
        "signing_key": None,
        "signing_key_fallback": None,
        "sdk_header": SDK,
    }
    values.update(overrides)
    return CheckpointTarget(**values)


def op(i: int) -> dict[str, Any]:
    return step_run_op(hash_step_id(f"s{i}"), f"s{i}", {"i": i}, start_ns=1, duration_ns=2)


def stored_ids(orch: RecordingOrchestrator, run_id: str = "run-1") -> list[str]:
    return list(orch.stored_steps(run_id))


def ids(ops: list[dict[str, Any]]) -> list[str]:
    return [o["id"] for o in ops]


def test_flush_sends_the_full_body_and_headers(orchestrator: RecordingOrchestrator) -> None:
    ckpt = RunCheckpointer.sync(target(orchestrator.url), FAST)
    for i in range(3):
        ckpt.push(op(i))
    assert ckpt.flush(timeout=5) == []
    assert stored_ids(orchestrator) == [hash_step_id(f"s{i}") for i in range(3)]
    assert orchestrator.stored_steps("run-1").duplicates == {}
    calls = orchestrator.checkpoint_calls("run-1")
    body = calls[0].json
    assert set(body) == {
        "run_id",
        "fn_id",
        "qi_id",
        "steps",
        "request_id",
        "generation_id",
        "request_started_at",
        "ts",
    }
    assert body["run_id"] == "run-1" and body["generation_id"] == 3 and body["request_id"] == "01REQUEST"
    assert body["request_started_at"] == 1_700_000_000_123 and isinstance(body["ts"], int)
    assert body["steps"][0] == op(0)
    assert calls[0].header("x-inngest-sdk") == SDK
    assert calls[0].header("content-type") == "application/json"
    assert calls[0].header("authorization") is None  # no key configured: no bearer
    assert ckpt.confirmed == 3 and not ckpt.stale and not ckpt.failed


def test_steps_finishing_during_a_flush_join_the_next_one(orchestrator: RecordingOrchestrator) -> None:
    gate = orchestrator.hold(CKPT, times=1)
    ckpt = RunCheckpointer.sync(target(orchestrator.url), FAST)
    ckpt.push(op(0))  # buffered_steps=1: a flush starts now
    assert orchestrator.wait_received(CKPT, 1)
    for i in range(1, 10):
        ckpt.push(op(i))  # in flight: these wait for the next flush
    assert ckpt.in_flight
    gate.set()
    assert ckpt.flush(timeout=5) == []
    calls = orchestrator.checkpoint_calls("run-1")
    assert [len(c.json["steps"]) for c in calls] == [1, 9]
    assert stored_ids(orchestrator) == [hash_step_id(f"s{i}") for i in range(10)]
    assert orchestrator.stored_steps("run-1").duplicates == {}


def test_buffered_steps_and_max_interval(orchestrator: RecordingOrchestrator) -> None:
    config = Checkpointing(buffered_steps=3, retry_delay=timedelta(milliseconds=5))
    ckpt = RunCheckpointer.sync(target(orchestrator.url), config)
    ckpt.push(op(0))
    ckpt.push(op(1))
    assert orchestrator.received(CKPT) == 0  # push itself never sends
    ckpt.push(op(2))  # third step: the flush starts
    orchestrator.wait_for_calls(CKPT, 1)
    assert [len(c.json["steps"]) for c in orchestrator.checkpoint_calls("run-1")] == [3]

    timed = Checkpointing(buffered_steps=100, max_interval=timedelta(milliseconds=30))
    ckpt2 = RunCheckpointer.sync(target(orchestrator.url, "run-2"), timed)
    ckpt2.push(op(0))
    ckpt2.push(op(1))
    assert orchestrator.wait_for_calls(f"{CKPT}run-2", 1)  # the timer started it (100 > 2 steps)
    assert ckpt2.flush(timeout=5) == []
    calls = orchestrator.checkpoint_calls("run-2")
    assert sum(len(c.json["steps"]) for c in calls) == 2  # usually one call; two if the timer split them


def test_server_errors_are_retried(orchestrator: RecordingOrchestrator) -> None:
    orchestrator.fail(CKPT, status=500, times=2)
    ckpt = RunCheckpointer.sync(target(orchestrator.url), FAST)
    ckpt.push(op(0))
    assert ckpt.flush(timeout=5) == []
    assert [c.status for c in orchestrator.checkpoint_calls("run-1")] == [500, 500, 200]
    assert stored_ids(orchestrator) == [hash_step_id("s0")]


def test_always_failing_returns_every_unconfirmed_op_in_order(orchestrator: RecordingOrchestrator) -> None:
    orchestrator.fail(CKPT, status=503)
    ckpt = RunCheckpointer.sync(target(orchestrator.url), FAST)
    for i in range(4):
        ckpt.push(op(i))
    assert ids(ckpt.flush(timeout=5)) == [hash_step_id(f"s{i}") for i in range(4)]
    assert ckpt.failed and not ckpt.stale
    assert len(orchestrator.checkpoint_calls("run-1")) == FAST.max_attempts
    ckpt.push(op(4))  # after a failure nothing more is sent; everything stays unconfirmed
    assert ids(ckpt.settle(timeout=5)) == [hash_step_id(f"s{i}") for i in range(5)]
    assert len(orchestrator.checkpoint_calls("run-1")) == FAST.max_attempts


def test_client_errors_are_not_retried(orchestrator: RecordingOrchestrator) -> None:
    orchestrator.fail(CKPT, status=413)
    ckpt = RunCheckpointer.sync(target(orchestrator.url), FAST)
    ckpt.push(op(0))
    assert ids(ckpt.flush(timeout=5)) == [hash_step_id("s0")]
    assert ckpt.failed and len(orchestrator.checkpoint_calls("run-1")) == 1


def test_timeouts_fall_back(orchestrator: RecordingOrchestrator) -> None:
    orchestrator.delay(CKPT, 1.0)
    config = Checkpointing(
        request_timeout=timedelta(milliseconds=100), max_attempts=2, retry_delay=timedelta(milliseconds=5)
    )
    ckpt = RunCheckpointer.sync(target(orchestrator.url), config)
    ckpt.push(op(0))
    assert ids(ckpt.flush(timeout=5)) == [hash_step_id("s0")]
    assert ckpt.failed
    assert orchestrator.received(CKPT) == 2


def test_conflict_means_stale_and_no_retry(orchestrator: RecordingOrchestrator) -> None:
    orchestrator.fail(CKPT, status=409)
    ckpt = RunCheckpointer.sync(target(orchestrator.url), FAST)
    ckpt.push(op(0))
    ckpt.push(op(1))
    unconfirmed = ckpt.flush(timeout=5)
    assert ckpt.stale and not ckpt.failed
    assert ids(unconfirmed) == [hash_step_id("s0"), hash_step_id("s1")]
    assert len(orchestrator.checkpoint_calls("run-1")) == 1


def test_endpoint_down_falls_back() -> None:
    ckpt = RunCheckpointer.sync(target(unused_url()), FAST)
    ckpt.push(op(0))
    ckpt.push(op(1))
    assert ids(ckpt.flush(timeout=5)) == [hash_step_id("s0"), hash_step_id("s1")]
    assert ckpt.failed and ckpt.calls == FAST.max_attempts


def test_dropped_connection_is_retried(orchestrator: RecordingOrchestrator) -> None:
    orchestrator.fail(CKPT, drop=True, times=1)
    ckpt = RunCheckpointer.sync(target(orchestrator.url), FAST)
    ckpt.push(op(0))
    assert ckpt.flush(timeout=5) == []
    assert stored_ids(orchestrator) == [hash_step_id("s0")]


def test_fallback_key_on_401() -> None:
    with RecordingOrchestrator(signing_keys=[FALLBACK]) as orch:
        ckpt = RunCheckpointer.sync(target(orch.url, signing_key=KEY, signing_key_fallback=FALLBACK), FAST)
        ckpt.push(op(0))
        assert ckpt.flush(timeout=5) == []
        ckpt.push(op(1))
        assert ckpt.flush(timeout=5) == []
        calls = orch.checkpoint_calls("run-1")
        assert [c.status for c in calls] == [401, 200, 200]
        assert calls[0].header("authorization") == f"Bearer {hash_signing_key(KEY)}"
        assert calls[1].header("authorization") == f"Bearer {hash_signing_key(FALLBACK)}"
        assert calls[2].header("authorization") == f"Bearer {hash_signing_key(FALLBACK)}"
        assert stored_ids(orch) == [hash_step_id("s0"), hash_step_id("s1")]

        wrong = RunCheckpointer.sync(target(orch.url, "run-2", signing_key=KEY), FAST)
        wrong.push(op(0))
        assert ids(wrong.flush(timeout=5)) == [hash_step_id("s0")]
        assert wrong.failed and len(orch.checkpoint_calls("run-2")) == 1


def test_settle_waits_for_the_flush_in_flight_only(orchestrator: RecordingOrchestrator) -> None:
    gate = orchestrator.hold(CKPT, times=1)
    ckpt = RunCheckpointer.sync(target(orchestrator.url), FAST)
    ckpt.push(op(0))
    assert orchestrator.wait_received(CKPT, 1)
    ckpt.push(op(1))

    def open_gate_once_settling() -> None:
        # only after settle() has closed the checkpointer: s1 must not join a flush before it
        deadline = time.monotonic() + 5
        while not ckpt.closed and time.monotonic() < deadline:
            time.sleep(0.001)
        gate.set()

    opener = threading.Thread(target=open_gate_once_settling, daemon=True)
    opener.start()
    assert ids(ckpt.settle(timeout=5)) == [hash_step_id("s1")]  # s0 confirmed, s1 never sent
    opener.join(5)
    ckpt.push(op(2))  # settled: buffered, never sent
    assert ids(ckpt.unconfirmed()) == [hash_step_id("s1"), hash_step_id("s2")]
    assert len(orchestrator.checkpoint_calls("run-1")) == 1


def test_settle_timeout_returns_the_flush_in_flight(orchestrator: RecordingOrchestrator) -> None:
    gate = orchestrator.hold(CKPT, times=1)
    ckpt = RunCheckpointer.sync(target(orchestrator.url), FAST)
    ckpt.push(op(0))
    assert orchestrator.wait_received(CKPT, 1)
    assert ids(ckpt.settle(timeout=0.05)) == [hash_step_id("s0")]
    gate.set()


def test_settle_during_backoff_does_not_wait_for_retries(orchestrator: RecordingOrchestrator) -> None:
    orchestrator.fail(CKPT, status=500)
    slow_retry = Checkpointing(retry_delay=timedelta(seconds=30))
    ckpt = RunCheckpointer.sync(target(orchestrator.url), slow_retry)
    ckpt.push(op(0))
    orchestrator.wait_for_calls(CKPT, 1)
    assert orchestrator.wait_for(lambda: ckpt.calls == 1, 5)
    assert ids(ckpt.settle(timeout=10)) == [hash_step_id("s0")]
    assert not ckpt.failed  # answered, not failed: the reply carries the step


def test_non_json_output_is_returned_not_lost(orchestrator: RecordingOrchestrator) -> None:
    ckpt = RunCheckpointer.sync(target(orchestrator.url), FAST)
    bad = step_run_op("h", "bad", object())
    ckpt.push(bad)
    assert ckpt.flush(timeout=5) == [bad]
    assert ckpt.failed and orchestrator.received(CKPT) == 0


def test_backpressure_only_past_the_cap(orchestrator: RecordingOrchestrator) -> None:
    gate = orchestrator.hold(CKPT, times=1)
    config = Checkpointing(max_unflushed_steps=3, retry_delay=timedelta(milliseconds=5))
    ckpt = RunCheckpointer.sync(target(orchestrator.url), config)
    ckpt.push(op(0))
    assert orchestrator.wait_received(CKPT, 1)
    ckpt.push(op(1))  # 2 unconfirmed: below the cap, returns at once
    blocked = threading.Thread(target=ckpt.push, args=(op(2),))
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive()  # 3 unconfirmed: waits for the flush in flight
    gate.set()
    blocked.join(5)
    assert not blocked.is_alive()
    assert ckpt.flush(timeout=5) == []
    assert stored_ids(orchestrator) == [hash_step_id(f"s{i}") for i in range(3)]


def test_many_runs_share_the_sender(orchestrator: RecordingOrchestrator) -> None:
    checkpointers = [RunCheckpointer.sync(target(orchestrator.url, f"r{n}"), FAST) for n in range(8)]

    def work(ckpt: RunCheckpointer) -> None:
        for i in range(20):
            ckpt.push(op(i))
        assert ckpt.flush(timeout=10) == []

    threads = [threading.Thread(target=work, args=(c,)) for c in checkpointers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    for n in range(8):
        stored = orchestrator.stored_steps(f"r{n}")
        assert list(stored) == [hash_step_id(f"s{i}") for i in range(20)] and stored.duplicates == {}


def test_a_slow_call_does_not_hold_up_other_runs(orchestrator: RecordingOrchestrator) -> None:
    gate = orchestrator.hold(f"{CKPT}slow-run")
    slow = RunCheckpointer.sync(target(orchestrator.url, "slow-run"), FAST)
    slow.push(op(0))
    assert orchestrator.wait_received(f"{CKPT}slow-run", 1)
    quick = RunCheckpointer.sync(target(orchestrator.url, "quick-run"), FAST)
    quick.push(op(1))
    assert quick.flush(timeout=5) == []  # while the slow run's call is still held
    assert slow.in_flight
    gate.set()
    assert slow.flush(timeout=5) == []


def test_shutdown_then_lazily_restarted(orchestrator: RecordingOrchestrator) -> None:
    ckpt = RunCheckpointer.sync(target(orchestrator.url), FAST)
    ckpt.push(op(0))
    transport.shutdown(timeout=5)
    assert stored_ids(orchestrator) == [hash_step_id("s0")]  # shutdown let the flush finish
    again = RunCheckpointer.sync(target(orchestrator.url, "run-2"), FAST)
    again.push(op(1))
    assert again.flush(timeout=5) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_gets_a_fresh_sender(orchestrator: RecordingOrchestrator) -> None:
    parent = RunCheckpointer.sync(target(orchestrator.url, "parent"), FAST)
    parent.push(op(0))
    assert parent.flush(timeout=5) == []
    parent_sender = transport.thread_sender()
    pid = os.fork()
    if pid == 0:  # the child: must leave with os._exit, whatever happens
        code = 1
        try:
            child = RunCheckpointer.sync(target(orchestrator.url, "child"), FAST)
            fresh = transport.thread_sender() is not parent_sender
            child.push(op(1))
            code = 0 if fresh and child.flush(timeout=5) == [] else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 15
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child did not finish")
    assert status is not None and os.waitstatus_to_exitcode(status) == 0
    assert stored_ids(orchestrator, "child") == [hash_step_id("s1")]
    parent.close()
    again = RunCheckpointer.sync(target(orchestrator.url, "parent-2"), FAST)
    again.push(op(2))
    assert again.flush(timeout=5) == []  # the parent's sender still works


# ---------------------------------------------------------------------------- the asyncio flavour


async def test_async_flush_and_coalescing(orchestrator: RecordingOrchestrator) -> None:
    loop = asyncio.get_running_loop()
    gate = orchestrator.hold(CKPT, times=1)
    ckpt = RunCheckpointer.for_loop(target(orchestrator.url), FAST, loop)
    await ckpt.push_async(op(0))
    assert await asyncio.to_thread(orchestrator.wait_received, CKPT, 1)
    for i in range(1, 10):
        ckpt.push(op(i))
    gate.set()
    assert await ckpt.flush_async(timeout=5) == []
    assert [len(c.json["steps"]) for c in orchestrator.checkpoint_calls("run-1")] == [1, 9]
    assert stored_ids(orchestrator) == [hash_step_id(f"s{i}") for i in range(10)]
    with pytest.raises(RuntimeError):
        ckpt.flush()  # would block the loop
    await transport.shutdown_async()


async def test_async_faults(orchestrator: RecordingOrchestrator) -> None:
    loop = asyncio.get_running_loop()
    orchestrator.fail(f"{CKPT}r500", status=500)
    orchestrator.fail(f"{CKPT}r409", status=409)
    orchestrator.fail(f"{CKPT}rretry", status=502, times=1)
    failing = RunCheckpointer.for_loop(target(orchestrator.url, "r500"), FAST, loop)
    stale = RunCheckpointer.for_loop(target(orchestrator.url, "r409"), FAST, loop)
    retried = RunCheckpointer.for_loop(target(orchestrator.url, "rretry"), FAST, loop)
    down = RunCheckpointer.for_loop(target(unused_url(), "rdown"), FAST, loop)
    for ckpt in (failing, stale, retried, down):
        await ckpt.push_async(op(0))
        await ckpt.push_async(op(1))
    results = await asyncio.gather(*(c.flush_async(timeout=5) for c in (failing, stale, retried, down)))
    two = [hash_step_id("s0"), hash_step_id("s1")]
    assert [ids(r) for r in results] == [two, two, [], two]
    assert failing.failed and stale.stale and down.failed and not retried.failed
    assert len(orchestrator.checkpoint_calls("r500")) == FAST.max_attempts
    assert len(orchestrator.checkpoint_calls("r409")) == 1
    assert await stale.settle_async(timeout=1) == stale.unconfirmed()
    await transport.shutdown_async()


async def test_async_settle_and_timer(orchestrator: RecordingOrchestrator) -> None:
    loop = asyncio.get_running_loop()
    timed = Checkpointing(buffered_steps=50, max_interval=timedelta(milliseconds=20))
    ckpt = RunCheckpointer.for_loop(target(orchestrator.url), timed, loop)
    await ckpt.push_async(op(0))
    await asyncio.to_thread(orchestrator.wait_for_calls, CKPT, 1)
    await ckpt.push_async(op(1))
    unconfirmed = await ckpt.settle_async(timeout=5)
    assert ids(unconfirmed) in ([hash_step_id("s1")], [])  # s1 may have gone with a second timer flush
    assert stored_ids(orchestrator)[0] == hash_step_id("s0")
    await transport.shutdown_async()


async def test_async_pushes_from_a_worker_thread(orchestrator: RecordingOrchestrator) -> None:
    """``def`` functions served by handle_async run in a pool but checkpoint through the loop."""
    loop = asyncio.get_running_loop()
    ckpt = RunCheckpointer.for_loop(target(orchestrator.url), FAST, loop)

    def user_code() -> list[dict[str, Any]]:
        for i in range(5):
            ckpt.push(op(i))
        return ckpt.flush(timeout=5)

    assert await asyncio.to_thread(user_code) == []
    assert stored_ids(orchestrator) == [hash_step_id(f"s{i}") for i in range(5)]
    await transport.shutdown_async()


async def test_async_backpressure_awaits(orchestrator: RecordingOrchestrator) -> None:
    loop = asyncio.get_running_loop()
    gate = orchestrator.hold(CKPT, times=1)
    config = Checkpointing(max_unflushed_steps=2, retry_delay=timedelta(milliseconds=5))
    ckpt = RunCheckpointer.for_loop(target(orchestrator.url), config, loop)
    await ckpt.push_async(op(0))
    assert await asyncio.to_thread(orchestrator.wait_received, CKPT, 1)
    pushing = asyncio.ensure_future(ckpt.push_async(op(1)))
    await asyncio.sleep(0.1)
    assert not pushing.done()
    gate.set()
    await asyncio.wait_for(pushing, 5)
    assert await ckpt.flush_async(timeout=5) == []
    assert stored_ids(orchestrator) == [hash_step_id("s0"), hash_step_id("s1")]
    await transport.shutdown_async()
