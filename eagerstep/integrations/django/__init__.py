"""eagerstep for Django: ``INSTALLED_APPS += ["eagerstep.integrations.django"]`` and ``include(...urls)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eagerstep.core.client import Client
    from eagerstep.core.function import Function


def get_client() -> Client:
    """The process client, configured from ``settings.EAGERSTEP`` (see ``conf.get_client``)."""
    from eagerstep.integrations.django.conf import get_client

    return get_client()


def get_functions() -> list[Function[Any]]:
    """The functions served: ``EAGERSTEP["FUNCTIONS"]`` or each installed app's ``durable.py``."""
    from eagerstep.integrations.django.discovery import get_functions

    return get_functions()


__all__ = ["get_client", "get_functions"]
