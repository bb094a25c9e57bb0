"""The CommHandler serving this Django project's functions: built on first request, dropped when
``EAGERSTEP`` changes. Data flows one way: views → handler → discovery / conf."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.signals import setting_changed
from django.db import close_old_connections
from django.dispatch import receiver

from eagerstep.core.comm import CommHandler
from eagerstep.integrations.django.conf import eagerstep_settings, get_client
from eagerstep.integrations.django.discovery import get_functions

T = TypeVar("T")

_lock = threading.Lock()
_handler: CommHandler | None = None


class DjangoCommHandler(CommHandler):
    """Closes stale database connections around work on eagerstep's threads (a function's request in
    the handler's pool, a branch of an eager parallel group): Django's request signals only do it for
    the request thread, and a pool thread's connection would otherwise outlive ``CONN_MAX_AGE``."""

    def around_thread_work(self, work: Callable[[], T]) -> T:
        close_old_connections()
        try:
            return work()
        finally:
            close_old_connections()


def get_handler() -> CommHandler:
    """The CommHandler serving this process's functions (built on first request)."""
    global _handler
    with _lock:
        if _handler is None:
            _handler = DjangoCommHandler(
                get_client(),
                get_functions(),
                framework="django",
                max_body_bytes=int(eagerstep_settings.MAX_BODY_BYTES),
            )
        return _handler


def reset() -> None:
    """Drop the handler (its thread pool; requests already running finish); the next request builds
    a new one from the current settings."""
    global _handler
    with _lock:
        if _handler is not None:
            _handler.close()
            _handler = None


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "EAGERSTEP":
        reset()
