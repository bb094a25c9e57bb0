"""Which functions a Django project serves: ``EAGERSTEP["FUNCTIONS"]`` or each app's durable module."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.utils.module_loading import import_string

from eagerstep.integrations.django.conf import eagerstep_settings

if TYPE_CHECKING:
    from eagerstep.core.function import Function


def durable_modules() -> list[str]:
    """Modules to take functions from: the FUNCTIONS list, or ``<app>.<DURABLE_MODULE>`` that exist."""
    explicit = eagerstep_settings.FUNCTIONS
    if explicit is not None:
        return list(explicit)
    name = eagerstep_settings.DURABLE_MODULE
    found = []
    for config in apps.get_app_configs():
        path = f"{config.name}.{name}"
        try:
            import_module(path)
        except ModuleNotFoundError as error:
            if error.name == path:
                continue  # this app has no durable module
            raise
        found.append(path)
    return found


def _functions_in(target: object) -> list[Function[Any]]:
    from eagerstep.core.function import Function

    if isinstance(target, Function):
        return [target]
    if isinstance(target, ModuleType):
        return [value for value in vars(target).values() if isinstance(value, Function)]
    if isinstance(target, (list, tuple)):
        return [item for item in target if isinstance(item, Function)]
    return []


def load_target(path: str) -> object:
    """Import a dotted path that names a module, a function or a list of functions."""
    try:
        return import_module(path)
    except ModuleNotFoundError as error:
        if error.name != path:
            raise
    return import_string(path)


def get_functions() -> list[Function[Any]]:
    """Every function to serve, in discovery order, each once."""
    seen: dict[int, Function[Any]] = {}
    for path in durable_modules():
        for function in _functions_in(load_target(path)):
            seen.setdefault(id(function), function)
    return list(seen.values())
