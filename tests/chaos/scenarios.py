"""The chaos scenarios: a load of runs with one fault firing, then the invariants checked.

A :class:`Rig` is one app (under its real server, checkpointing on or off) and one engine, with a
fault proxy on each side: the app reaches the engine (sync, checkpoint API) through ``to_engine``,
the engine reaches the app (call requests) through ``to_app``. :func:`run_scenario` sends ``runs``
events at ``in_flight`` at a time while the scenario's fault fires, waits (bounded) for every run to
end, and checks, from the engine's SQLite file and the app's execution log:

- every accepted event started exactly one run (``lost``: none; ``duplicate_runs``: more than one);
- every completed run stored each of its 10 steps exactly once, and returned the expected output;
- a step body ran more than once only for a cause the fault explains (a killed worker, a result
  lost before it was confirmed, a duplicate delivery); anything else is ``unexplained``;
- no run is still running ``stuck_after`` seconds after the last event was accepted;
- failed runs only where the fault makes failure the documented outcome;
- the resident memory of the engine and of the app's processes (sampled) grows by at most
  ``MEMORY_GROWTH_MB`` in a scenario.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.chaos.app import EVENT, EXPECTED_OUTPUT, STEPS
from tests.chaos.faultproxy import Fault, FaultProxy
from tests.chaos.processes import AppProcess, EngineProcess, alive, read_log

FINAL = ("Completed", "Failed", "Cancelled")
#: how much the resident memory of the engine, or of all the app's processes, may grow in one scenario
MEMORY_GROWTH_MB = 200
CHECKPOINT = "/v1/checkpoint/"
CALL = "/api/inngest"


@dataclass(frozen=True)
class Scenario:
    """One fault. ``to_engine``/``to_app``: the proxies' faults; ``action``: what a thread does while
    runs are in flight (``kill-worker``, ``kill-engine``, ``duplicate-events``); ``causes``: why a
    step may run again under this fault; ``may_fail``: why a run may fail under it (else none may)."""

    name: str
    what: str
    to_engine: Fault | None = None
    to_app: Fault | None = None
    action: str = ""
    checkpoint_only: bool = False
    causes: tuple[str, ...] = ()
    may_fail: str = ""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("none", "no fault (baseline)"),
    Scenario(
        "checkpoint-500",
        "every 3rd checkpoint call answered 500",
        to_engine=Fault("status", CHECKPOINT, every=3, status=500),
        checkpoint_only=True,
    ),
    Scenario(
        "checkpoint-hang",
        "every 7th checkpoint call held 2.5 s (past the SDK's 2 s timeout), then delivered late",
        to_engine=Fault("hang", CHECKPOINT, every=7, seconds=2.5),
        checkpoint_only=True,
    ),
    Scenario(
        "checkpoint-refused",
        "every 3rd checkpoint connection reset at once (as refused)",
        to_engine=Fault("reset", CHECKPOINT, every=3),
        checkpoint_only=True,
    ),
    Scenario(
        "checkpoint-409",
        "every 10th checkpoint call answered 409 (stale dispatch) though it is not",
        to_engine=Fault("status", CHECKPOINT, every=10, status=409),
        checkpoint_only=True,
        causes=("stale-409",),
    ),
    Scenario(
        "call-duplicate",
        "every 5th call request delivered to the app twice at once",
        to_app=Fault("duplicate", CALL, every=5),
        causes=("duplicate-delivery",),
    ),
    Scenario(
        "app-down",
        "the app unreachable 0.6 s of every 2 s while the engine dispatches",
        to_app=Fault("down", CALL, seconds=0.6, period=2.0),
    ),
    Scenario(
        "worker-kill",
        "a worker process SIGKILLed mid-step (up to 3 times), restarted by its server",
        action="kill-worker",
        causes=("worker-killed",),
    ),
    Scenario(
        "engine-kill",
        "the engine SIGKILLed mid-run (twice), restarted on the same SQLite file",
        action="kill-engine",
        causes=("engine-killed",),
    ),
    Scenario(
        "event-duplicate",
        "every event sent twice with the same id (and once more after its run ended)",
        action="duplicate-events",
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass
class Result:
    scenario: str
    app: str
    mode: str
    accepted: int = 0
    started: int = 0
    completed: int = 0
    failed: int = 0
    failed_expected: int = 0
    lost: int = 0
    duplicate_runs: int = 0
    stuck: int = 0
    bad_steps: int = 0
    reexecutions: Counter[str] = field(default_factory=Counter)
    faults_fired: int = 0
    latencies: list[float] = field(default_factory=list)
    engine_rss_mb: tuple[float, float] = (0.0, 0.0)  # first sample, peak
    app_rss_mb: tuple[float, float] = (0.0, 0.0)
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> str:
        causes = ", ".join(f"{k} {v}" for k, v in sorted(self.reexecutions.items())) or "0"
        return (
            f"{self.scenario:18} {self.app:16} {self.mode:4} accepted {self.accepted} started {self.started}"
            f" completed {self.completed} failed {self.failed} (expected {self.failed_expected})"
            f" lost {self.lost} stuck {self.stuck} re-executions: {causes}"
            f" p50 {self.percentile(0.5) * 1000:.0f} ms p99 {self.percentile(0.99) * 1000:.0f} ms"
            + (f" VIOLATIONS: {'; '.join(self.violations)}" if self.violations else "")
        )


class Confirmations:
    """When the engine confirmed each step result, as the proxies see it: a checkpoint it answered
    200 (stored before the answer), or a later call request whose memoised ``steps`` carry it (a
    call reply reaching the engine's socket is not yet a confirmation: the engine may die before it
    stores it). A step body that starts again after its result was confirmed had no reason to,
    unless the request that ran it again was a stale one: a duplicate delivery, or a call the engine
    had given up on (its reply found the engine gone: ``abandoned``) and made again."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, str], float] = {}
        self.abandoned: set[str] = set()  # runs with a call reply the engine no longer waited for
        self.calls: dict[str, list[float]] = {}  # run -> when each of its call requests arrived
        self._names: dict[tuple[str, str], str] = {}  # (run, hashed step id) -> step name
        self._lock = threading.Lock()
        #: what the proxies saw, in order (written next to the execution log, to debug a violation)
        self.trace: list[dict[str, Any]] = []

    def _ops(self, run_id: str, ops: Any, *, confirmed: bool, now: float) -> None:
        if not isinstance(ops, list):
            return
        with self._lock:
            for op in ops:
                if isinstance(op, dict) and op.get("op") == "StepRun":
                    name = str(op.get("displayName") or op.get("name"))
                    self._names[(run_id, str(op.get("id")))] = name
                    if confirmed:
                        self.at.setdefault((run_id, name), now)

    def made_before(self, run_id: str, started: float, confirmed: float) -> bool:
        """Whether the call request that ran a step body starting at ``started`` (the newest one of
        the run that arrived before it) was made before ``confirmed``: its memo could not hold it."""
        arrivals = self.calls.get(run_id, [])
        index = bisect.bisect_right(arrivals, started) - 1
        return index >= 0 and arrivals[index] < confirmed

    def checkpoint(
        self, arrived: float, path: str, body: bytes, status: int, reply: bytes, delivered: bool
    ) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
            payload = json.loads(body)
            self.trace.append({
                "t": time.time(), "what": "checkpoint", "run": payload["run_id"], "status": status,
                "delivered": delivered, "generation": payload.get("generation_id"),
                "steps": [op.get("displayName") for op in payload.get("steps") or []],
            })  # fmt: skip
        if status == 200 and path.startswith(CHECKPOINT):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                payload = json.loads(body)
                self._ops(str(payload["run_id"]), payload.get("steps"), confirmed=True, now=time.time())

    def call(
        self, arrived: float, path: str, body: bytes, status: int, reply: bytes, delivered: bool
    ) -> None:
        if not path.startswith(CALL) or not body:
            return
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
            request = json.loads(body)
            run_id = str(request["ctx"]["run_id"])
            now = arrived
            self.trace.append({
                "t": now, "what": "call", "run": run_id, "status": status, "delivered": delivered,
                "attempt": request["ctx"].get("attempt"), "memo": len(request.get("steps") or {}),
                "reply": reply[:300].decode(errors="replace"),
            })  # fmt: skip
            with self._lock:
                bisect.insort(self.calls.setdefault(run_id, []), arrived)
                for step_hash in request.get("steps") or {}:
                    if (name := self._names.get((run_id, step_hash))) is not None:
                        self.at.setdefault((run_id, name), now)
                if not delivered:
                    self.abandoned.add(run_id)
            if delivered and status == 206:
                self._ops(run_id, json.loads(reply), confirmed=False, now=now)


class Rig:
    """An engine and an app (``checkpointing`` on or off) with a fault proxy each way."""

    def __init__(self, workdir: Path, app: str, checkpointing: bool) -> None:
        self.workdir = workdir
        self.app_name, self.checkpointing = app, checkpointing
        self.mode = "on" if checkpointing else "off"
        tag = f"{app}-{self.mode}"
        self.exec_log = workdir / f"exec-{tag}.jsonl"
        self.engine = EngineProcess(workdir / f"engine-{tag}.db", workdir / f"engine-{tag}.log")
        self._stack = contextlib.ExitStack()
        self.to_engine: FaultProxy | None = None
        self.to_app: FaultProxy | None = None
        self.app: AppProcess | None = None
        self.confirmations = Confirmations()

    def __enter__(self) -> Rig:
        try:
            self.engine.start()
            self._stack.callback(self.engine.stop)
            self.to_engine = self._stack.enter_context(
                FaultProxy(self.engine.url, observer=self.confirmations.checkpoint)
            )
            self.to_app = self._stack.enter_context(
                FaultProxy("http://127.0.0.1:1", observer=self.confirmations.call)
            )
            env = {
                "CHAOS_ENGINE_URL": self.to_engine.url,
                "CHAOS_SERVE_ORIGIN": self.to_app.url,
                "CHAOS_CHECKPOINTING": "1" if self.checkpointing else "0",
                "CHAOS_LOG": str(self.exec_log),
            }
            self.app = AppProcess(self.app_name, env, self.workdir / f"app-{self.app_name}-{self.mode}.log")
            self.app.start()
            self._stack.callback(self.app.stop)
            self.to_app.retarget(self.app.url)
            reply = httpx.post(
                f"{self.engine.url}/v1/dev/apps", json={"url": self.to_app.url + CALL}, timeout=30
            )
            if reply.status_code != 200:
                raise RuntimeError(f"sync failed: {reply.status_code} {reply.text}")
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        with open(self.workdir / f"trace-{self.app_name}-{self.mode}.jsonl", "w") as trace:
            for line in self.confirmations.trace:
                trace.write(json.dumps(line) + "\n")

    def restart_engine(self) -> None:
        self.engine.kill()
        time.sleep(0.3)
        self.engine.start()
        assert self.to_engine is not None
        self.to_engine.retarget(self.engine.url)

    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(f"file:{self.engine.db}?mode=ro", uri=True, timeout=10)
        try:
            yield conn
        finally:
            conn.close()


class _Sampler(threading.Thread):
    """RSS of the engine and of the app's processes, every half second."""

    def __init__(self, rig: Rig) -> None:
        super().__init__(daemon=True)
        self.rig = rig
        self.engine: list[int] = []
        self.app: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            self.sample()

    def sample(self) -> None:
        if value := self.rig.engine.rss_kib():
            self.engine.append(value)
        if self.rig.app is not None and (value := self.rig.app.rss_kib()):
            self.app.append(value)


def _mb(samples: list[int]) -> tuple[float, float]:
    return (samples[0] / 1024, max(samples) / 1024) if samples else (0.0, 0.0)


class _Chaos(threading.Thread):
    """Kills a worker mid-step, or the engine mid-run, once per progress mark of the load (each mark
    comes while runs are in flight: the load is held at its in-flight limit)."""

    def __init__(self, rig: Rig, action: str, marks: threading.Semaphore, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.rig, self.action, self.marks, self.stop = rig, action, marks, stop
        self.killed: list[int] = []
        self.engine_kills = 0
        self.error = ""

    def run(self) -> None:
        try:
            while self.marks.acquire(timeout=120) and not self.stop.is_set():
                if self.action == "kill-worker":
                    self._kill_worker()
                elif self.action == "kill-engine":
                    self.rig.restart_engine()
                    self.engine_kills += 1
        except Exception as exc:  # reported, never silent: the scenario fails on it
            self.error = repr(exc)

    def _kill_worker(self) -> None:
        """SIGKILL the worker of the newest step start without its end (one in a step body)."""
        assert self.rig.app is not None
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not self.stop.is_set():
            pid = self._mid_step_pid()
            if pid and alive(pid) and pid in self.rig.app.workers():
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)
                return
            time.sleep(0.002)

    def _mid_step_pid(self) -> int:
        if not self.rig.exec_log.exists():
            return 0
        with open(self.rig.exec_log, "rb") as log:
            log.seek(max(0, log.seek(0, 2) - 8192))
            tail = log.read().splitlines()[1:]
        open_steps: dict[tuple[str, str, int], int] = {}
        for raw in tail:
            with contextlib.suppress(ValueError, KeyError):
                line = json.loads(raw)
                key = (line["run"], line["step"], line["pid"])
                if line["phase"] == "start":
                    open_steps[key] = line["pid"]
                else:
                    open_steps.pop(key, None)
        return next(reversed(open_steps.values()), 0)


def run_scenario(
    rig: Rig, scenario: Scenario, *, runs: int, in_flight: int, stuck_after: float = 60.0
) -> Result:
    """Send ``runs`` events (``in_flight`` at a time) under ``scenario``'s fault; check the invariants."""
    assert rig.to_engine is not None and rig.to_app is not None
    result = Result(scenario.name, rig.app_name, rig.mode)
    prefix = f"{scenario.name}-{rig.mode}-{random.getrandbits(32):08x}-"
    ids = [f"{prefix}{n:05d}" for n in range(runs)]
    fired_before = sum(v for k, v in (rig.to_engine.counts + rig.to_app.counts).items() if k != "forwarded")
    sampler = _Sampler(rig)
    sampler.sample()
    sampler.start()
    stop, marks = threading.Event(), threading.Semaphore(0)
    chaos = _Chaos(rig, scenario.action, marks, stop)
    rig.to_engine.arm(scenario.to_engine)
    rig.to_app.arm(scenario.to_app)
    chaos.start()
    began = time.monotonic()
    accepted: list[str] = []
    duplicates = 0
    http = httpx.Client(timeout=10)
    try:
        sent = 0
        at = {
            "kill-engine": {runs // 3, (2 * runs) // 3},
            "kill-worker": {runs // 4, runs // 2, (3 * runs) // 4},
        }.get(scenario.action, set())
        duplicates = 0
        while sent < runs:
            finished = _count_final(rig, prefix)
            room = in_flight - (len(accepted) - finished)
            if room <= 0:
                time.sleep(0.02)
                if time.monotonic() - began > stuck_after * 3:
                    result.violations.append("the load did not progress")
                    break
                continue
            batch = ids[sent : sent + min(room, 25)]
            _send(http, rig, batch, deadline=time.monotonic() + 30)
            if scenario.action == "duplicate-events":
                _send(http, rig, batch, deadline=time.monotonic() + 30)
                duplicates += len(batch)
            accepted.extend(batch)
            sent += len(batch)
            for mark in at:
                if sent - len(batch) < mark <= sent:
                    marks.release()
        last_accepted = time.monotonic()
        while _count_final(rig, prefix) < len(accepted) and time.monotonic() - last_accepted < stuck_after:
            time.sleep(0.05)
        if scenario.action == "duplicate-events":
            again = accepted[: max(1, len(accepted) // 4)]
            _send(http, rig, again, deadline=time.monotonic() + 30)
            duplicates += len(again)
            time.sleep(0.3)
    finally:
        stop.set()
        marks.release()
        chaos.join(30)
        rig.to_engine.arm(None)
        rig.to_app.arm(None)
        sampler.done.set()
        sampler.join(5)
        http.close()
    result.seconds = time.monotonic() - began
    result.accepted = len(accepted)
    fired_after = sum(v for k, v in (rig.to_engine.counts + rig.to_app.counts).items() if k != "forwarded")
    result.faults_fired = fired_after - fired_before + len(chaos.killed) + chaos.engine_kills + duplicates
    result.engine_rss_mb, result.app_rss_mb = _mb(sampler.engine), _mb(sampler.app)
    for who, (first, peak) in (("engine", result.engine_rss_mb), ("app", result.app_rss_mb)):
        if peak - first > MEMORY_GROWTH_MB:
            result.violations.append(f"{who} memory grew {peak - first:.0f} MB (bound {MEMORY_GROWTH_MB} MB)")
    if chaos.killed and rig.app is not None:
        deadline = time.monotonic() + 20
        while not rig.app.workers_ready() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not rig.app.workers_ready():
            result.violations.append(f"{rig.app_name} did not replace its killed workers within 20 s")
    if chaos.error:
        result.violations.append(f"the fault thread failed: {chaos.error}")
    if scenario.action and not result.faults_fired:
        result.violations.append("the fault never fired")
    _check(rig, scenario, result, accepted, prefix, set(chaos.killed))
    return result


def _send(http: httpx.Client, rig: Rig, ids: list[str], deadline: float) -> None:
    """Send the events (retried, with the same ids, while the engine is down or restarting)."""
    events = [{"name": EVENT, "id": event_id, "data": {"n": event_id}} for event_id in ids]
    while True:
        try:
            reply = http.post(f"{rig.engine.url}/e/chaos", json=events)
            if reply.status_code == 200 and reply.json().get("ids") == ids:
                return
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the engine did not accept events within 30 s")
        time.sleep(0.1)


def _count_final(rig: Rig, prefix: str) -> int:
    with rig.reader() as db:
        row = db.execute(
            "SELECT COUNT(*) FROM runs WHERE event_id >= ? AND event_id < ? AND status IN (?,?,?)",
            (prefix, prefix + "\uffff", *FINAL),
        ).fetchone()
    return int(row[0])


def _check(
    rig: Rig, scenario: Scenario, result: Result, accepted: list[str], prefix: str, killed: set[int]
) -> None:
    with rig.reader() as db:
        rows = db.execute(
            "SELECT id, event_id, status, output, error, created_at, ended_at FROM runs"
            " WHERE event_id >= ? AND event_id < ?",
            (prefix, prefix + "\uffff"),
        ).fetchall()
        steps: dict[str, list[tuple[str, str, str]]] = {}
        for run_id, name, op, memo in db.execute(
            "SELECT s.run_id, s.name, s.op, s.memo FROM steps s JOIN runs r ON r.id = s.run_id"
            " WHERE r.event_id >= ? AND r.event_id < ?",
            (prefix, prefix + "\uffff"),
        ):
            steps.setdefault(run_id, []).append((name, op, memo))
    runs_of = Counter(row[1] for row in rows)
    result.started = len(rows)
    result.lost = sum(1 for event_id in accepted if runs_of[event_id] == 0)
    result.duplicate_runs = sum(n - 1 for n in runs_of.values() if n > 1)
    run_ids = set()
    for run_id, _event, status, output, error, created, ended in rows:
        run_ids.add(run_id)
        if status not in FINAL:
            result.stuck += 1
            continue
        if status == "Completed":
            result.completed += 1
            result.latencies.append(float(ended) - float(created))
            names = [s[0] for s in steps.get(run_id, []) if s[1] == "StepRun"]
            if (
                sorted(names) != sorted(f"s{i}" for i in range(STEPS))
                or json.loads(output) != EXPECTED_OUTPUT
            ):
                result.bad_steps += 1
        else:
            result.failed += 1
            if scenario.may_fail:
                result.failed_expected += 1
            else:
                result.violations.append(f"run {run_id} {status}: {str(error)[:200]}")
    # re-executions, from the execution log
    starts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    log = read_log(rig.exec_log)
    for line in log:
        if line.get("run") in run_ids and line.get("phase") == "start":
            starts.setdefault((str(line["run"]), str(line["step"])), []).append(line)
    ends = {
        (str(line["run"]), str(line["step"]), line["pid"], line["attempt"])
        for line in log
        if line.get("run") in run_ids and line.get("phase") == "end"
    }
    confirmed, abandoned = rig.confirmations.at, rig.confirmations.abandoned
    newest_attempt: dict[str, int] = {}
    for (run_id, _step), lines in starts.items():
        for line in lines:
            newest_attempt[run_id] = max(newest_attempt.get(run_id, 0), int(line["attempt"]))
    for (run_id, step), lines in starts.items():
        for earlier, later in itertools.pairwise(lines):
            confirmed_at = confirmed.get((run_id, step))
            stale = run_id in abandoned and int(later["attempt"]) < newest_attempt[run_id]
            confirmed_before = confirmed_at is not None and float(later["t"]) > confirmed_at
            made_before = confirmed_before and rig.confirmations.made_before(
                run_id, float(later["t"]), float(confirmed_at or 0)
            )
            if "duplicate-delivery" in scenario.causes:
                cause = "duplicate-delivery"
            elif confirmed_before and not made_before and not stale:
                cause = "after its result was confirmed"
                result.violations.append(f"{run_id}/{step} ran again after the engine confirmed it")
            elif "engine-killed" in scenario.causes:
                cause = "engine-killed (result unconfirmed)"
            elif stale:
                cause = "stale call (the engine had timed it out and called again)"
            elif made_before:
                cause = "call made before the result was confirmed (it waited in the server's backlog)"
            elif run_id in abandoned:
                cause = "reply lost (the engine had timed the call out)"
            else:
                cause = _cause(scenario, earlier, killed, ends, run_id, step)
            result.reexecutions[cause] += 1
    for name, value in (
        ("lost", result.lost),
        ("stuck", result.stuck),
        ("duplicate runs", result.duplicate_runs),
    ):
        if value:
            result.violations.append(f"{value} {name}")
    if result.bad_steps:
        result.violations.append(f"{result.bad_steps} completed runs without each step exactly once")
    if result.started != result.accepted - result.lost:
        result.violations.append(f"{result.started} runs for {result.accepted} events")
    unexplained = result.reexecutions.get("unexplained", 0)
    if unexplained:
        result.violations.append(f"{unexplained} step re-executions no fault explains")


def _cause(
    scenario: Scenario,
    earlier: dict[str, Any],
    killed: set[int],
    ends: set[tuple[str, str, Any, Any]],
    run_id: str,
    step: str,
) -> str:
    """Why a step body ran again after ``earlier``."""
    finished = (run_id, step, earlier["pid"], earlier["attempt"]) in ends
    if earlier["pid"] in killed:
        return "worker-killed" if not finished else "worker-killed (after the step, before it was confirmed)"
    if "engine-killed" in scenario.causes:
        return "engine-killed (result unconfirmed)"
    if "duplicate-delivery" in scenario.causes:
        return "duplicate-delivery"
    if "stale-409" in scenario.causes:
        return "stale-409 (attempt abandoned)"
    if "worker-killed" in scenario.causes and not finished:
        return "worker-killed"
    return "unexplained"
