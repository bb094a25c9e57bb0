"""Play an orchestrator's call loop over an SDK handler, in process.

``drive(handle, fn_id, event)`` sends call requests to ``handle(Request) -> Response`` (sync) and
``await drive_async(handle_async, ...)`` to an async one, exactly as a server would: it keeps the
memos and the stack, honours ``StepPlanned`` targeting and the parallel force-plan, retries
``StepError`` and retriable function errors with ``attempt + 1``, resolves ``Sleep`` at once and
``WaitForEvent``/``InvokeFunction`` from answers the test gives, and merges steps a
:class:`RecordingOrchestrator` received through checkpoints (as the real server stores them).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ulid import ULID

from eagerstep.core.comm import Request, Response
from eagerstep.core.protocol import LAZY_OPCODES
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import DEFAULT_SERVE_URL, call_request, wire_event

Handle = Callable[[Request], Response]
AsyncHandle = Callable[[Request], Awaitable[Response]]

#: Default memo stored for an InvokeFunction op without an answer.
INVOKE_DEFAULT: dict[str, Any] = {"data": None}


class DriveError(AssertionError):
    """The SDK answered something an orchestrator cannot make progress with."""


@dataclass
class RunResult:
    """What happened to one run."""

    run_id: str
    status: str = "running"  # completed | failed
    output: Any = None
    error: Any = None
    requests: list[Request] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    op_batches: list[list[dict[str, Any]]] = field(default_factory=list)  # ops of each 206
    memos: dict[str, Any] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)

    @property
    def invocations(self) -> int:
        return len(self.requests)

    @property
    def ops(self) -> list[dict[str, Any]]:
        return [op for batch in self.op_batches for op in batch]

    @property
    def completed(self) -> bool:
        return self.status == "completed"


def parse_ops(response: Response) -> list[dict[str, Any]]:
    """The ops of a 206 body: a JSON array, or a single op object (older SDKs); [] for empty."""
    if not response.body:
        return []
    parsed = json.loads(response.body)
    if parsed is None:
        return []
    if isinstance(parsed, dict):
        return [parsed]
    if not isinstance(parsed, list) or not all(isinstance(op, dict) and "op" in op for op in parsed):
        raise DriveError(f"206 body is not a list of ops: {response.body[:300]!r}")
    return parsed


#: Ops a parallel group's plan is made of (each one is scheduled by the orchestrator).
PLAN_OPS = frozenset({"StepPlanned", "Sleep", "WaitForEvent", "InvokeFunction", "AIGateway", "Gateway"})


def check_reply_rules(ops: list[dict[str, Any]], confirmed: Mapping[str, Any] | None = None) -> None:
    """The rules a real Inngest server imposes on a 206 (protocol.md §3.3a, §3.3b), asserted on
    every reply the test orchestrators receive.

    - Every op carries ``"data"`` (``null`` when it has none): the server's conformance runner
      compares it as raw JSON bytes.
    - One non-lazy op per reply, except a parallel group's plan: to the server, several non-lazy
      ops are a parallel group (``executor.go`` ``HandleGeneratorResponse``: ForceStepPlan, each
      op handled concurrently). The one exception: ``StepRun`` ops whose checkpoint failed for
      good may ride ahead of the final op; a step the orchestrator already stored from a
      checkpoint (``confirmed``) never does.
    """
    for op in ops:
        if "data" not in op:
            raise DriveError(f'op {op.get("op")} has no "data" key (null when none): {op}')
    non_lazy = [op for op in ops if op.get("op") not in LAZY_OPCODES]
    if len(non_lazy) <= 1 or all(op.get("op") in PLAN_OPS for op in non_lazy):
        return
    leading = non_lazy[:-1]
    kinds = [op.get("op") for op in non_lazy]
    if any(op.get("op") not in ("StepRun", "Step") for op in leading):
        raise DriveError(f"a reply with several non-lazy ops that is not a parallel plan: {kinds}")
    stored = [op.get("id") for op in leading if confirmed is not None and op.get("id") in confirmed]
    if stored:
        raise DriveError(
            f"the reply repeats {len(stored)} step(s) already confirmed by checkpoint, turning it into "
            f"a parallel group on a real server: {kinds}"
        )


def _no_retry(response: Response) -> bool:
    return (response.header("X-Inngest-No-Retry") or "").lower() == "true"


class RunDriver:
    """The orchestrator's state machine for one run; ``drive``/``drive_async`` feed it."""

    def __init__(
        self,
        fn_id: str,
        event: Mapping[str, Any] | None = None,
        *,
        events: list[Mapping[str, Any]] | None = None,
        orchestrator: RecordingOrchestrator | None = None,
        max_attempts: int = 5,
        max_requests: int = 200,
        run_id: str | None = None,
        steps: Mapping[str, Any] | None = None,
        wait_for_event: Mapping[str, Any] | None = None,
        invoke: Mapping[str, Any] | None = None,
        signing_key: str | None = None,
        url: str = DEFAULT_SERVE_URL,
        request_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.fn_id = fn_id
        self.event = dict(event) if event is not None else wire_event()
        self.events = [dict(e) for e in events] if events is not None else None
        self.orchestrator = orchestrator
        self.max_attempts = max_attempts
        self.max_requests = max_requests
        self.wait_answers = dict(wait_for_event or {})
        self.invoke_answers = dict(invoke or {})
        self.signing_key = signing_key
        self.url = url
        self.request_options = dict(request_options or {})
        self.result = RunResult(run_id=run_id or str(ULID()))
        self.result.memos.update(steps or {})
        self.result.stack.extend((steps or {}).keys())
        self.queue: deque[tuple[str, int]] = deque([("step", 0)])
        self.force_plan = False
        self.outstanding: set[str] = set()
        self.generation = 0
        self._current: tuple[str, int] = ("step", 0)

    # ------------------------------------------------------------------ state

    @property
    def done(self) -> bool:
        return self.result.status != "running"

    def _store(self, step_id: str, memo: Any) -> None:
        if step_id not in self.result.memos:
            self.result.stack.append(step_id)
        self.result.memos[step_id] = memo

    def merge_checkpoints(self) -> None:
        """Take in steps the orchestrator stored from checkpoints (the server keeps the first)."""
        if self.orchestrator is None:
            return
        for step_id, data in self.orchestrator.stored_steps(self.result.run_id).items():
            if step_id not in self.result.memos:
                self._store(step_id, {"data": data})

    def _enqueue(self, item: tuple[str, int]) -> None:
        if item not in self.queue:
            self.queue.append(item)

    # ------------------------------------------------------------------ the loop

    def next_request(self) -> Request:
        if not self.queue:
            raise DriveError(
                f"the run stalled: nothing left to call (last ops {self.result.op_batches[-1:]})"
            )
        if len(self.result.requests) >= self.max_requests:
            raise DriveError(f"more than {self.max_requests} call requests; the run does not converge")
        self.merge_checkpoints()
        self._current = step_id, attempt = self.queue.popleft()
        self.generation += 1
        request = call_request(
            self.fn_id,
            event=self.event,
            events=self.events,
            steps=self.result.memos,
            stack=self.result.stack,
            step_id=step_id,
            run_id=self.result.run_id,
            attempt=attempt,
            max_attempts=self.max_attempts,
            request_id=str(ULID()),
            generation_id=self.generation,
            disable_immediate_execution=self.force_plan,
            signing_key=self.signing_key,
            url=self.url,
            **self.request_options,
        )
        self.result.requests.append(request)
        return request

    def accept(self, response: Response) -> None:
        self.result.responses.append(response)
        self.merge_checkpoints()
        step_id, attempt = self._current
        if response.status == 200:
            self.result.status = "completed"
            self.result.output = json.loads(response.body) if response.body else None
            return
        if response.status == 206:
            ops = parse_ops(response)
            confirmed = None
            if self.orchestrator is not None:
                confirmed = self.orchestrator.stored_steps(self.result.run_id)
            check_reply_rules(ops, confirmed)
            self._accept_ops(ops, response)
            return
        error: Any = None
        if response.body:
            try:
                error = json.loads(response.body)
            except ValueError:
                error = response.body.decode(errors="replace")
        if _no_retry(response) or attempt + 1 >= self.max_attempts:
            self.result.status = "failed"
            self.result.error = error
            return
        self._enqueue((step_id, attempt + 1))

    def _accept_ops(self, ops: list[dict[str, Any]], response: Response) -> None:
        self.result.op_batches.append(ops)
        step_id, attempt = self._current
        # Priority ops first, as the executor does.
        ordered = [o for o in ops if o["op"] == "WaitForEvent"] + [
            o for o in ops if o["op"] != "WaitForEvent"
        ]
        discover = False
        retry = False
        planned: list[str] = []
        complete: list[dict[str, Any]] = []
        for op in ordered:
            kind, op_id = op["op"], str(op.get("id", ""))
            if kind in ("StepRun", "Step"):
                if op_id not in self.result.memos:
                    self._store(op_id, {"data": op.get("data")})
                self.outstanding.discard(op_id)
                discover = True
            elif kind == "StepPlanned":
                planned.append(op_id)
            elif kind == "StepError" and not self._final(op, response, attempt):
                retry = True
            elif kind in ("StepError", "StepFailed"):
                self._store(op_id, {"error": op.get("error") or {}})
                self.outstanding.discard(op_id)
                discover = True
            elif kind == "Sleep":
                self._store(op_id, None)
                discover = True
            elif kind == "WaitForEvent":
                self._store(op_id, self._answer(self.wait_answers, op, None))
                discover = True
            elif kind == "InvokeFunction":
                self._store(op_id, self._answer(self.invoke_answers, op, INVOKE_DEFAULT))
                discover = True
            elif kind == "RunComplete":
                complete.append(op)
            elif kind == "DiscoveryRequest":
                discover = True
            elif kind == "None":
                pass
            else:
                raise DriveError(f"unsupported op {kind!r}")
        if complete:
            self.result.status = "completed"
            self.result.output = complete[-1].get("data")
            return
        if len(planned) > 1:
            self.force_plan = True
        if self.force_plan:
            self.outstanding.update(planned)
        for planned_id in planned:
            self._enqueue((planned_id, 0))
        if retry:
            self._enqueue((step_id, attempt + 1))
            return
        if self.force_plan and not self.outstanding and not planned:
            self.force_plan = False
            self._enqueue(("step", 0))
        elif discover and not self.force_plan:
            self._enqueue(("step", 0))

    def _final(self, op: Mapping[str, Any], response: Response, attempt: int) -> bool:
        error = op.get("error") or {}
        return bool(error.get("noRetry")) or _no_retry(response) or attempt + 1 >= self.max_attempts

    @staticmethod
    def _answer(answers: Mapping[str, Any], op: Mapping[str, Any], default: Any) -> Any:
        userland = op.get("userland") or {}
        for key in (op.get("id"), op.get("name"), op.get("displayName"), userland.get("id")):
            if key is not None and key in answers:
                return answers[key]
        return default


def drive(handle: Handle, fn_id: str, event: Mapping[str, Any] | None = None, **options: Any) -> RunResult:
    """Run ``fn_id`` to the end through ``handle``; see :class:`RunDriver` for options."""
    driver = RunDriver(fn_id, event, **options)
    while not driver.done:
        driver.accept(handle(driver.next_request()))
    driver.merge_checkpoints()
    return driver.result


async def drive_async(
    handle_async: AsyncHandle, fn_id: str, event: Mapping[str, Any] | None = None, **options: Any
) -> RunResult:
    """The async flavour of :func:`drive`, over ``await handle_async(Request)``."""
    driver = RunDriver(fn_id, event, **options)
    while not driver.done:
        driver.accept(await handle_async(driver.next_request()))
    driver.merge_checkpoints()
    return driver.result
