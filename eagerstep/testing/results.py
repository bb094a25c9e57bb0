"""What a test asserts on: a run (status, output or error) and the steps it executed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepResult:
    """One step of a run, as the engine recorded it.

    ``name`` is the id you gave the step (``ctx.step.run("charge", ...)`` → ``"charge"``), ``id`` the
    hashed id on the wire. ``attempts`` counts executions: failed attempts plus the one that
    succeeded. ``via`` says how its result reached the engine: ``"checkpoint"`` (ran in the web
    worker and reported by a checkpoint, the default), ``"reply"`` (standard orchestration: in the
    reply to a call request) or ``"orchestrator"`` (a sleep, a wait, an invoke: the engine's own).
    """

    id: str
    name: str
    op: str | None
    status: str
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 1
    via: str = "checkpoint"
    failures: tuple[dict[str, Any], ...] = ()
    waits_for: str | None = None

    @property
    def checkpointed(self) -> bool:
        """The step ran in the worker and reached the engine through the checkpoint API."""
        return self.via == "checkpoint"

    @property
    def orchestrated(self) -> bool:
        """The step's result came back in a call's reply (standard orchestration)."""
        return self.via == "reply"


@dataclass(frozen=True)
class RunResult:
    """A run: ``status`` is ``Completed``, ``Failed``, ``Cancelled`` or ``Running`` (it sleeps or
    waits); ``output`` is what the function returned, ``error`` why it failed."""

    run_id: str
    function_id: str
    event_id: str
    status: str
    output: Any
    error: dict[str, Any] | None
    steps: tuple[StepResult, ...] = field(default=())

    @property
    def completed(self) -> bool:
        return self.status == "Completed"

    @property
    def failed(self) -> bool:
        return self.status == "Failed"

    @property
    def step_names(self) -> list[str]:
        """The steps' names (your step ids) in the order they ran."""
        return [step.name for step in self.steps]

    @property
    def outputs(self) -> dict[str, Any]:
        """``{step name: output}`` of the steps that completed."""
        return {step.name: step.output for step in self.steps if step.status == "Completed"}

    @property
    def waiting_for(self) -> list[str]:
        """Names of the events the run waits for (``step.wait_for_event``), if it is parked."""
        return [step.waits_for for step in self.steps if step.status == "Waiting" and step.waits_for]

    def step(self, name: str) -> StepResult:
        """The step called ``name``; a ``KeyError`` naming the steps there are otherwise."""
        for step in self.steps:
            if step.name == name or step.id == name:
                return step
        raise KeyError(f"run {self.run_id} has no step {name!r}; its steps: {self.step_names}")


def run_result(data: dict[str, Any]) -> RunResult:
    """Build a :class:`RunResult` from the engine's run view (``dashboard.queries.get_run``)."""
    steps: list[StepResult] = []
    for step in data["steps"]:
        failures = tuple(step.get("attempts") or ())
        status = str(step.get("status"))
        attempts = len(failures) + (1 if status == "Completed" else 0)
        steps.append(
            StepResult(
                id=str(step["id"]),
                name=str(step.get("name") or step["id"]),
                op=step.get("op"),
                status=status,
                output=step.get("output"),
                error=step.get("error"),
                attempts=attempts,
                via=str(step.get("via") or "orchestrator"),
                failures=failures,
                waits_for=step.get("waits_for") if step.get("op") == "WaitForEvent" else None,
            )
        )
    return RunResult(
        run_id=str(data["run_id"]),
        function_id=str(data["function_id"]),
        event_id=str(data["event_id"]),
        status=str(data["status"]),
        output=data.get("output"),
        error=data.get("error"),
        steps=tuple(steps),
    )
