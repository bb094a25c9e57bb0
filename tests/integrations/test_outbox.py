"""The Django transactional outbox, in process: rows in the sender's transaction, the post-commit
send, rollbacks, the resend of what a failed send left (the crash itself: test_outbox_crash.py)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

if importlib.util.find_spec("django") is None:
    pytest.skip("needs django", allow_module_level=True)

from django.core.management import call_command
from django.db import transaction
from django.test.utils import override_settings

from eagerstep.core import deferred
from tests.http.clients.django import setup_django
from tests.support.orchestrator import RecordingOrchestrator

pytestmark = pytest.mark.django
setup_django()

from eagerstep.integrations.django import get_client  # noqa: E402
from eagerstep.integrations.django.models import OutboxEvent  # noqa: E402
from eagerstep.integrations.django.outbox import resend  # noqa: E402


@pytest.fixture
def outbox(orchestrator: RecordingOrchestrator) -> Iterator[RecordingOrchestrator]:
    call_command("migrate", "eagerstep", verbosity=0)
    OutboxEvent.objects.all().delete()
    settings = {
        "CLIENT": "tests.http.functions.client",
        "FUNCTIONS": ["tests.http.functions"],
        "DEV": True,
        "API_BASE_URL": orchestrator.url,
        "EVENT_API_BASE_URL": orchestrator.url,
        "OUTBOX": True,
    }
    with override_settings(EAGERSTEP=settings):
        yield orchestrator
    deferred.drain(10)


def sent_ids(orchestrator: RecordingOrchestrator) -> list[str]:
    return [event["id"] for call in orchestrator.calls_to("/e/") for event in call.json]


def test_an_event_sent_in_a_transaction_is_written_there_and_sent_after_commit(outbox: Any) -> None:
    with transaction.atomic():
        ids = get_client().send({"name": "shop/order.placed", "data": {"order_id": 1}})
        (row,) = OutboxEvent.objects.all()
        assert [row.id] == ids and row.sent_at is None and row.name == "shop/order.placed"
        assert row.payload["data"] == {"order_id": 1}
        assert outbox.received("/e/") == 0  # nothing leaves before the commit
    deferred.drain(10)
    assert sent_ids(outbox) == ids
    row.refresh_from_db()
    assert row.sent_at is not None and row.attempts == 1
    assert resend(get_client(), min_age=0) == (0, 0)  # nothing left to resend


def test_a_rolled_back_transaction_writes_and_sends_nothing(outbox: Any) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        get_client().send([{"name": "a", "data": {}}, {"name": "b", "data": {}, "id": "mine"}])
        raise RuntimeError("rollback")
    deferred.drain(10)
    assert not OutboxEvent.objects.exists()
    assert outbox.received("/e/") == 0


def test_outside_a_transaction_events_are_sent_at_once(outbox: Any) -> None:
    get_client().send({"name": "now", "data": {}})
    assert [event["name"] for call in outbox.calls_to("/e/") for event in call.json] == ["now"]
    assert not OutboxEvent.objects.exists()


def test_a_send_that_fails_is_left_for_the_resend_with_its_id(outbox: Any) -> None:
    fault = outbox.fail("/e/", status=503)
    with transaction.atomic():
        (event_id,) = get_client().send({"name": "later", "data": {"n": 1}, "id": "order-1-placed"})
    deferred.drain(30)
    row = OutboxEvent.objects.get()
    assert event_id == row.id == "order-1-placed"
    assert row.sent_at is None and row.attempts == 3 and "503" in row.last_error
    assert resend(get_client(), min_age=0) == (0, 1)  # the event API still fails
    outbox.faults.remove(fault)
    assert resend(get_client(), min_age=3600) == (0, 0)  # too young: its own send may be due
    assert resend(get_client(), min_age=0) == (1, 0)
    assert sent_ids(outbox)[-1] == "order-1-placed"
    row.refresh_from_db()
    assert row.sent_at is not None and row.last_error == ""


def test_the_command_resends_and_reports(outbox: Any, capsys: pytest.CaptureFixture[str]) -> None:
    OutboxEvent.objects.create(
        id="left-behind", name="x", payload={"name": "x", "data": {}, "id": "left-behind"}
    )
    call_command("eagerstep_outbox", "--min-age", "0")
    assert "sent 1 outbox event(s)" in capsys.readouterr().out
    assert sent_ids(outbox) == ["left-behind"]
    assert OutboxEvent.objects.get().sent_at is not None


def test_the_sweeper_resends_in_the_background(outbox: Any) -> None:
    from eagerstep.integrations.django.sweeper import Sweeper, start_sweeper

    assert start_sweeper(get_client()) is None  # OUTBOX_SWEEP_INTERVAL is not set
    OutboxEvent.objects.create(id="swept", name="x", payload={"name": "x", "data": {}, "id": "swept"})
    sweeper = Sweeper(get_client(), interval=0.05, min_age=0).start()
    try:
        assert outbox.wait_received("/e/", 1)
    finally:
        sweeper.stop()
    assert sent_ids(outbox) == ["swept"]
    assert OutboxEvent.objects.get().sent_at is not None
