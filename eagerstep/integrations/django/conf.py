"""The ``EAGERSTEP`` settings dict, read lazily and reloaded on ``setting_changed``; the process client."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from eagerstep.core.config import KEYS as CLIENT_SETTING_KEYS
from eagerstep.integrations._common import DEFAULT_MAX_BODY_BYTES

if TYPE_CHECKING:
    from eagerstep.core.client import Client

#: The client settings a Django project may set in EAGERSTEP (APP_ID is read separately).
CLIENT_KEYS = tuple(key for key in CLIENT_SETTING_KEYS if key != "APP_ID")
DEFAULTS: dict[str, Any] = {
    "APP_ID": None,
    "CLIENT": None,  # dotted path to your own eagerstep.Client; default: one built from APP_ID
    "FUNCTIONS": None,  # dotted paths (modules or functions); default: discover DURABLE_MODULE per app
    "DURABLE_MODULE": "durable",
    "DEFER_EVENTS": False,
    "DEFER_DATABASE": "default",
    "OUTBOX": False,  # events sent inside transaction.atomic() go through the eagerstep_outbox table
    "OUTBOX_DATABASE": None,  # default: DEFER_DATABASE
    "OUTBOX_SWEEP_INTERVAL": None,  # seconds: a thread in each serving process resends unsent rows
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
            from eagerstep.core import deferred
            from eagerstep.integrations.django import outbox

            deferred.set_route(client, outbox.route(client))  # idle unless EAGERSTEP["OUTBOX"]
            _client, _client_origin = client, _origin()
        return _client


def _origin() -> str:
    return str(eagerstep_settings.CLIENT or f"APP_ID={eagerstep_settings.APP_ID}")


def reset() -> None:
    """Forget settings and the client's resolved values (``handler.reset`` drops the handler).

    The client object itself is kept (functions are bound to it) while ``CLIENT`` / ``APP_ID`` name it.
    """
    global _client
    with _lock:
        eagerstep_settings.reload()
        if _client is not None:
            _client.set_settings_source(eagerstep_settings.source)  # also forgets resolved values
            if _origin() != _client_origin:
                _client = None


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "EAGERSTEP":
        reset()
