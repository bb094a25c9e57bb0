"""The transactional outbox table (``EAGERSTEP["OUTBOX"]``): one row per event sent in a transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.utils import timezone


class OutboxEvent(models.Model):
    """An event written in the sender's transaction; ``sent_at`` is set once the event API took it.

    The primary key is the event's ``id``: a resend carries the same id, and the event API (the
    engine, an Inngest server) ignores an id it has seen, so a resend never starts a second run.
    """

    id: models.CharField[Any, str] = models.CharField(primary_key=True, max_length=80)
    name: models.CharField[Any, str] = models.CharField(max_length=255)
    payload = models.JSONField()
    created_at: models.DateTimeField[Any, datetime] = models.DateTimeField(
        default=timezone.now, db_index=True
    )
    sent_at: models.DateTimeField[Any, datetime | None] = models.DateTimeField(
        null=True, blank=True, db_index=True
    )
    attempts: models.PositiveIntegerField[Any, int] = models.PositiveIntegerField(default=0)
    last_error: models.TextField[Any, str] = models.TextField(blank=True, default="")

    class Meta:
        app_label = "eagerstep"
        db_table = "eagerstep_outbox"
        ordering = ["created_at"]
        verbose_name = "outbox event"

    def __str__(self) -> str:
        return f"{self.name} ({self.id}, {'sent' if self.sent_at else 'unsent'})"
