"""The transactional outbox: with ``EAGERSTEP["OUTBOX"]``, events sent inside ``transaction.atomic()``
are written to ``eagerstep_outbox`` in that transaction and sent once it commits.

- In the transaction: ``client.send()`` inserts one row per event (its ``id`` assigned now, if it
  had none) and returns the ids. A rollback removes the rows: nothing is sent.
- After the commit: an ``on_commit`` hook sends the rows from a background thread (retried a few
  times) and marks them sent.
- After a crash between the commit and that send, the rows are still unsent: ``manage.py
  eagerstep_outbox`` (or the sweeper thread, ``sweeper.py``, ``OUTBOX_SWEEP_INTERVAL``) sends them. A resend
  carries the same event id, which the event API deduplicates, so a row sent twice (the process
  died after the send and before marking it) still starts one run.

Outside ``atomic()`` (autocommit) there is no transaction to join: events are sent at once, as
without the outbox.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import close_old_connections, connections, transaction
from django.utils import timezone

from eagerstep.core import deferred
from eagerstep.integrations.django.conf import eagerstep_settings

if TYPE_CHECKING:
    from eagerstep.core.client import Client

logger = logging.getLogger("eagerstep")

#: Attempts of the post-commit send before the rows are left to the sweeper or the command.
SEND_ATTEMPTS = 3
#: Rows younger than this are left to their own post-commit send by the sweeper and the command.
DEFAULT_MIN_AGE = 10.0


def _database() -> str:
    return str(eagerstep_settings.OUTBOX_DATABASE or eagerstep_settings.DEFER_DATABASE)


class OutboxScope:
    """Takes the events of one ``send()`` into the outbox of the transaction open on ``using``."""

    def __init__(self, client: Client, using: str) -> None:
        self.client = client
        self.using = using

    def add(self, events: Any) -> list[str]:
        from eagerstep.integrations.django.models import OutboxEvent

        batch = [_with_id(event) for event in (events if isinstance(events, (list, tuple)) else [events])]
        OutboxEvent.objects.using(self.using).bulk_create(
            [OutboxEvent(id=event["id"], name=str(event.get("name")), payload=event) for event in batch]
        )
        ids = [str(event["id"]) for event in batch]
        client = self.client
        transaction.on_commit(
            lambda: deferred.submit(lambda b: _send_rows(client, self.using, b), batch), using=self.using
        )
        return ids


def route(client: Client) -> deferred.Route:
    """The client's route (``deferred.set_route``): the outbox while a transaction is open."""

    def outbox_scope() -> OutboxScope | None:
        if not eagerstep_settings.OUTBOX:
            return None
        using = _database()
        connection = connections[using]
        if not connection.in_atomic_block:
            return None
        return OutboxScope(client, using)

    return outbox_scope


def _with_id(event: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise TypeError(f"an outbox event is a dict with 'name' and 'data', not {event!r}")
    if event.get("id"):
        return {**event, "id": str(event["id"])}
    return {**event, "id": f"outbox-{uuid.uuid4().hex}"}


def _send_rows(client: Client, using: str, batch: list[dict[str, Any]]) -> list[str]:
    """After the commit: send, then mark sent; on failure leave the rows for a resend."""
    delay = 0.25
    try:
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                ids = client.send_now(batch)
            except Exception as error:
                _record_failure(using, [e["id"] for e in batch], error)
                if attempt == SEND_ATTEMPTS:
                    logger.warning(
                        "eagerstep: %d outbox event(s) not sent after %d attempts (%s); they stay in the"
                        " outbox for manage.py eagerstep_outbox or the sweeper",
                        len(batch),
                        attempt,
                        error,
                    )
                    return []
                time.sleep(delay * (0.5 + random.random()))
                delay *= 2
                continue
            _mark_sent(using, [e["id"] for e in batch])
            return ids
        return []
    finally:
        close_old_connections()  # this thread's connection: not kept open between sends


def _mark_sent(using: str, ids: Sequence[str]) -> None:
    from django.db.models import F

    from eagerstep.integrations.django.models import OutboxEvent

    OutboxEvent.objects.using(using).filter(id__in=list(ids)).update(
        sent_at=timezone.now(), attempts=F("attempts") + 1, last_error=""
    )


def _record_failure(using: str, ids: Sequence[str], error: BaseException) -> None:
    from django.db.models import F

    from eagerstep.integrations.django.models import OutboxEvent

    try:
        OutboxEvent.objects.using(using).filter(id__in=list(ids)).update(
            attempts=F("attempts") + 1, last_error=str(error)[:2000]
        )
    except Exception:  # the database may be what failed; the send error is what matters
        logger.exception("eagerstep: could not record an outbox send failure")


def resend(
    client: Client, *, min_age: float = DEFAULT_MIN_AGE, limit: int = 500, using: str | None = None
) -> tuple[int, int]:
    """Send the outbox's unsent rows older than ``min_age`` seconds, oldest first, in batches of at
    most ``limit``; returns (sent, still unsent after a failure). Each keeps its event id, so an
    event the event API has already taken is not triggered twice."""
    from eagerstep.integrations.django.models import OutboxEvent

    using = using or _database()
    sent = 0
    cutoff = timezone.now() - timedelta(seconds=min_age)
    unsent = OutboxEvent.objects.using(using).filter(sent_at__isnull=True, created_at__lte=cutoff)
    while True:
        batch = list(unsent.order_by("created_at", "id")[:limit])
        if not batch:
            return sent, 0
        ids = [row.id for row in batch]
        try:
            client.send_now([row.payload for row in batch])
        except Exception as error:
            _record_failure(using, ids, error)
            logger.warning("eagerstep: outbox resend of %d event(s) failed: %s", len(batch), error)
            return sent, unsent.count()
        _mark_sent(using, ids)  # marked rows leave ``unsent``: the next batch is the next rows
        sent += len(batch)
        if len(batch) < limit:
            return sent, 0
