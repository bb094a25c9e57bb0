"""The outbox sweeper: a thread in each serving process that resends unsent outbox rows
(``EAGERSTEP["OUTBOX_SWEEP_INTERVAL"]``, seconds), for deployments without a cron for
``manage.py eagerstep_outbox``."""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from django.db import close_old_connections

from eagerstep.integrations.django.conf import eagerstep_settings
from eagerstep.integrations.django.outbox import DEFAULT_MIN_AGE, resend

if TYPE_CHECKING:
    from eagerstep.core.client import Client

logger = logging.getLogger("eagerstep")


class Sweeper:
    """A daemon thread that calls ``outbox.resend`` every ``interval`` seconds."""

    def __init__(self, client: Client, interval: float, min_age: float = DEFAULT_MIN_AGE) -> None:
        self.client = client
        self.interval = interval
        self.min_age = min_age
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="eagerstep-outbox", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def sweep(self) -> tuple[int, int]:
        try:
            return resend(self.client, min_age=self.min_age)
        finally:
            close_old_connections()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                sent, _ = self.sweep()
                if sent:
                    logger.info("eagerstep: the outbox sweeper resent %d event(s)", sent)
            except Exception:
                logger.exception(
                    "eagerstep: the outbox sweeper failed; it tries again in %.0fs", self.interval
                )


_sweeper: tuple[int, Sweeper] | None = None
_sweeper_lock = threading.Lock()


def start_sweeper(client: Client) -> Sweeper | None:
    """Start the process's sweeper if ``OUTBOX`` and ``OUTBOX_SWEEP_INTERVAL`` are set (once per
    process: a forked worker starts its own)."""
    global _sweeper
    interval = eagerstep_settings.OUTBOX_SWEEP_INTERVAL
    if not eagerstep_settings.OUTBOX or not interval:
        return None
    with _sweeper_lock:
        if _sweeper is None or _sweeper[0] != os.getpid():
            _sweeper = (os.getpid(), Sweeper(client, float(interval)).start())
        return _sweeper[1]
