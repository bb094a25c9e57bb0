"""The FastAPI example's functions in process: eagerstep.testing's engine on a manual clock.

The approval a run waits for is delivered through the app's own review route; nothing waits in
real time for the wait_for_event's hour-long timeout.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")  # the engine extra

from eagerstep.testing import Harness, asgi

pytestmark = [pytest.mark.fastapi, pytest.mark.timeout(60)]

PIPELINE = ["classify", "retrieve-context", "draft-reply", "check-policy", "wait-for-approval", "send-reply"]


@pytest.fixture(scope="module")
def example() -> ModuleType:
    os.environ.setdefault("PIPELINE_MODEL_LATENCY", "0.001")
    return importlib.import_module("main")


@pytest.fixture
def h(example: ModuleType) -> Iterator[Harness]:
    with Harness(asgi(example.app), example.client) as harness:
        yield harness


def post(h: Harness, path: str, body: dict[str, object]) -> dict[str, object]:
    """A request to the app's own routes, on the loop the harness serves it on."""
    reply = h.target.client.post(path, json=body)
    assert reply.status_code == 200, reply.text
    result: dict[str, object] = reply.json()
    return result


def test_ticket_waits_for_approval_then_sends(h: Harness) -> None:
    (event_id,) = post(h, "/tickets", {"ticket_id": "T-1", "text": "Where is my invoice?"})["event_ids"]  # type: ignore[misc]
    parked = h.wait(event_id, until="idle")
    assert parked.waiting_for == ["support/reply.reviewed"]
    post(h, "/tickets/T-1/review", {"approved": True})
    done = h.wait(event_id)

    assert done.completed, done.error
    assert done.output["status"] == "sent"
    assert done.output["sent_to"] == "customer-of-T-1"
    assert done.step_names == PIPELINE
    assert done.step("check-policy").output == {"ok": True, "flags": []}  # the invoked sub-function
    assert done.step("classify").checkpointed


def test_flagged_draft_is_escalated_without_waiting(h: Harness) -> None:
    (event_id,) = post(h, "/tickets", {"ticket_id": "T-2", "text": "I want a refund"})["event_ids"]  # type: ignore[misc]
    done = h.wait(event_id)
    assert done.output == {"ticket_id": "T-2", "status": "escalated", "flags": ["refund"]}
    assert "wait-for-approval" not in done.step_names


def test_rejected_draft_is_not_sent(h: Harness) -> None:
    (event_id,) = post(h, "/tickets", {"ticket_id": "T-3", "text": "Hello"})["event_ids"]  # type: ignore[misc]
    h.wait(event_id, until="idle")
    post(h, "/tickets/T-3/review", {"approved": False})
    done = h.wait(event_id)
    assert done.output == {"ticket_id": "T-3", "status": "not sent"}


def test_unanswered_ticket_times_out(h: Harness) -> None:
    (event_id,) = post(h, "/tickets", {"ticket_id": "T-4", "text": "Hello"})["event_ids"]  # type: ignore[misc]
    done = h.wait(event_id, timeouts=True)  # the clock moves through the approval's timeout
    assert done.step("wait-for-approval").output is None
    assert done.completed and done.output == {"ticket_id": "T-4", "status": "not sent"}


@pytest.mark.parametrize("mode", ["standard", "checkpointing"])
def test_enrich_in_both_modes(h: Harness, mode: str) -> None:
    done = h.run(f"demo/enrich.{mode}", {"id": 7})
    assert done.output == {"record": 7, "stages": 5}
    assert done.step_names == ["fetch", "clean", "embed", "score", "store"]
    assert all(step.checkpointed == (mode == "checkpointing") for step in done.steps)
