"""``manage.py eagerstep_outbox``: send the outbox events a crash (or a failing event API) left unsent."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from eagerstep.integrations.django.conf import get_client
from eagerstep.integrations.django.outbox import DEFAULT_MIN_AGE, resend


class Command(BaseCommand):
    help = (
        "Send the transactional outbox's unsent events (EAGERSTEP['OUTBOX']). Each keeps its event id, "
        "so an event that did reach the event API before a crash does not start a second run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--min-age",
            type=float,
            default=DEFAULT_MIN_AGE,
            help="skip rows younger than this (seconds): their post-commit send is due (default %(default)s)",
        )
        parser.add_argument("--batch", type=int, default=500, help="events per request (default %(default)s)")
        parser.add_argument(
            "--every", type=float, default=None, help="keep running, resending every this many seconds"
        )
        parser.add_argument(
            "--database", default=None, help="the outbox's database (default: OUTBOX_DATABASE)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        client = get_client()
        every = options["every"]
        while True:
            sent, unsent = resend(
                client, min_age=options["min_age"], limit=options["batch"], using=options["database"]
            )
            self.stdout.write(f"sent {sent} outbox event(s)" + (f"; {unsent} still unsent" if unsent else ""))
            if every is None:
                if unsent:
                    raise CommandError(f"{unsent} outbox event(s) could not be sent; see the log for why")
                return
            time.sleep(every)
