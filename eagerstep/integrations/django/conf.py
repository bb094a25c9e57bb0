"""The ``EAGERSTEP`` settings dict, read lazily and reloaded on ``setting_changed``; the process client."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from eagerstep.core.config import KEYS as CLIENT_SETTING_KEYS
from eagerstep.integrations._common import DEFAULT_MAX_BODY_BYTES

if TYPE_CHECKING:
    from eagerstep.core.client import Client
    from eagerstep.core.comm import CommHandler

T = TypeVar("T")
#: The client settings a Django project may set in EAGERSTEP (APP_ID is read separately).
CLIENT_KEYS = tuple(key for key in CLIENT_SETTING_KEYS if key != "APP_ID")
DEFAULTS: dict[str, Any] = {
    "APP_ID": None,
    "CLIENT": None,  # dotted path to your own eagerstep.Client; default: one built from APP_ID
    "FUNCTIONS": None,  # dotted paths (modules or functions); default: discover DURABLE_MODULE per app
    "DURABLE_MODULE": "durable",
    "DEFER_EVENTS": False,
    "DEFER_DATABASE": "default",
    "MAX_BODY_BYTES": DEFAULT_MAX_BODY_BYTES,
    **dict.fromkeys(CLIENT_KEYS),
}


class EagerStepSettings:
    """``eagerstep_settings.DEFER_EVENTS`` etc.: the user value, else the default; read on first use."""

    @cached_property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, "EAGERSTEP", None) or {}
        return dict(value) if isinstance(value, dict) else {}

    def __getattr__(self, key: str) -> Any:
        if key not in DEFAULTS:
            raise AttributeError(f"Invalid eagerstep setting: {key!r}")
        return self.user_settings.get(key, DEFAULTS[key])

    def source(self, key: str) -> object | None:
        """The client's settings source: only what the user set, so INNGEST_* env vars still apply."""
        return self.user_settings.get(key)

    def reload(self) -> None:
        self.__dict__.pop("user_settings", None)


eagerstep_settings = EagerStepSettings()

_lock = threading.RLock()
_client: Client | None = None
_client_origin: str | None = None  # the CLIENT path, or "APP_ID=<id>" for a client built here
_handler: CommHandler | None = None


def get_client() -> Client:
    """The process client: ``EAGERSTEP["CLIENT"]`` if set, else one built from ``EAGERSTEP["APP_ID"]``.

    Its settings (keys, URLs, checkpointing) come from ``EAGERSTEP``, then the ``INNGEST_*`` env vars.
    """
    global _client, _client_origin
    with _lock:
        if _client is None:
            path = eagerstep_settings.CLIENT
            if path:
                client: Client = import_string(path)
            else:
                from eagerstep.core.client import Client

                app_id = eagerstep_settings.APP_ID
                if not app_id:
                    raise ImproperlyConfigured(
                        'EAGERSTEP["APP_ID"] is not set; add EAGERSTEP = {"APP_ID": "your-app"} to settings '
                        '(or point EAGERSTEP["CLIENT"] at your own eagerstep.Client)'
                    )
                client = Client(app_id=app_id)
            client.set_settings_source(eagerstep_settings.source)
            _client, _client_origin = client, _origin()
        return _client


def _origin() -> str:
    return str(eagerstep_settings.CLIENT or f"APP_ID={eagerstep_settings.APP_ID}")


def get_handler() -> CommHandler:
    """The CommHandler serving this process's functions (built on first request)."""
    global _handler
    with _lock:
        if _handler is None:
            from eagerstep.integrations.django.discovery import get_functions

            _handler = _handler_class()(
                get_client(),
                get_functions(),
                framework="django",
                max_body_bytes=int(eagerstep_settings.MAX_BODY_BYTES),
            )
        return _handler


def _handler_class() -> type[CommHandler]:
    from django.db import close_old_connections

    from eagerstep.core.comm import CommHandler

    class DjangoCommHandler(CommHandler):
        """Closes stale database connections around work in eagerstep's pool threads (Django's request
        signals only do it for the request thread)."""

        async def _in_pool(self, loop: Any, fn: Callable[..., T], *args: Any) -> T:
            def run(*inner: Any) -> T:
                close_old_connections()
                try:
                    return fn(*inner)
                finally:
                    close_old_connections()

            return await super()._in_pool(loop, run, *args)

    return DjangoCommHandler


def reset() -> None:
    """Forget settings, the handler and the client's resolved values.

    The client object itself is kept (functions are bound to it) while ``CLIENT`` / ``APP_ID`` name it.
    """
    global _handler, _client
    with _lock:
        eagerstep_settings.reload()
        if _handler is not None:
            _handler.close()  # its thread pool; requests already running finish
            _handler = None
        if _client is not None:
            _client.set_settings_source(eagerstep_settings.source)  # also forgets resolved values
            if _origin() != _client_origin:
                _client = None


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "EAGERSTEP":
        reset()
