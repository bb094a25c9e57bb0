"""The checkpoint buffer and its transport (a sender thread behind handle(), a task behind handle_async())."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Checkpointing:
    """How a function checkpoints.

    ``buffered_steps``: a flush starts once this many steps are unflushed (1: after every step).
    ``max_interval``: also start a flush this long after a step entered an empty buffer (None: off).
    ``max_runtime``: after this long in one request, the next step is handed back to the
    orchestrator as ``StepPlanned`` (None: no limit). ``max_unflushed_steps``: backpressure cap;
    only past it does a step wait for a flush to finish.
    """

    buffered_steps: int = 1
    max_interval: timedelta | None = None
    max_runtime: timedelta | None = timedelta(seconds=10)
    max_unflushed_steps: int = 1000

    def __post_init__(self) -> None:
        if self.buffered_steps < 1:
            raise ValueError("Checkpointing(buffered_steps=...) must be at least 1")
        if self.max_unflushed_steps < self.buffered_steps:
            raise ValueError("Checkpointing(max_unflushed_steps=...) must be >= buffered_steps")
