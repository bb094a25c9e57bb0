"""``manage.py check``: eagerstep misconfiguration, each message with the fix."""

from __future__ import annotations

import difflib
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from eagerstep.integrations.django.conf import CLIENT_KEYS, DEFAULTS, load_target

ID = "eagerstep.{}"


def _user_settings() -> Any:
    return getattr(settings, "EAGERSTEP", {})


def _value_errors(user: dict[str, Any]) -> list[CheckMessage]:
    from eagerstep.core.config import parse_checkpointing, parse_dev
    from eagerstep.core.errors import ConfigurationError

    found: list[CheckMessage] = []
    for key in user:
        if key not in DEFAULTS:
            close = difflib.get_close_matches(str(key), list(DEFAULTS), n=1)
            hint = f'Did you mean "{close[0]}"?' if close else f"Valid keys: {', '.join(sorted(DEFAULTS))}."
            found.append(
                Warning(f'EAGERSTEP["{key}"] is not an eagerstep setting.', hint=hint, id=ID.format("W002"))
            )
    for key, parse in (("DEV", parse_dev), ("CHECKPOINTING", parse_checkpointing)):
        if user.get(key) is not None:
            try:
                parse(user[key])
            except ConfigurationError as error:
                found.append(Error(f'EAGERSTEP["{key}"] is invalid: {error}', id=ID.format("E003")))
    limit = user.get("MAX_BODY_BYTES", DEFAULTS["MAX_BODY_BYTES"])
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        found.append(
            Error(
                f'EAGERSTEP["MAX_BODY_BYTES"] must be a positive int, not {limit!r}.',
                hint="Leave it unset for the protocol's ~4 MB, or give a byte count.",
                id=ID.format("E003"),
            )
        )
    for key in ("FUNCTIONS",):
        value = user.get(key)
        if value is not None and (
            not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value)
        ):
            found.append(
                Error(
                    f'EAGERSTEP["{key}"] must be a list of dotted paths, not {value!r}.',
                    hint='For example ["shop.durable", "billing.tasks.charge"].',
                    id=ID.format("E003"),
                )
            )
    for key in ("APP_ID", "CLIENT", "DURABLE_MODULE", "DEFER_DATABASE", *CLIENT_KEYS):
        value = user.get(key)
        if value is not None and key not in ("DEV", "CHECKPOINTING") and not isinstance(value, str):
            found.append(Error(f'EAGERSTEP["{key}"] must be a string, not {value!r}.', id=ID.format("E003")))
    if not user.get("APP_ID") and not user.get("CLIENT"):
        found.append(
            Error(
                'EAGERSTEP["APP_ID"] is not set.',
                hint='Add EAGERSTEP = {"APP_ID": "your-app", ...} to settings, or set EAGERSTEP["CLIENT"] '
                "to the dotted path of your own eagerstep.Client.",
                id=ID.format("E004"),
            )
        )
    return found


@register(Tags.compatibility)
def check_settings(
    *, app_configs: Sequence[AppConfig] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    user = _user_settings()
    if not isinstance(user, dict):
        return [
            Error(
                f"EAGERSTEP must be a dict, not {type(user).__name__}.",
                hint='For example EAGERSTEP = {"APP_ID": "shop"}.',
                id=ID.format("E001"),
            )
        ]
    found = _value_errors(user)
    if not any(message.id == ID.format("E003") for message in found):
        found += _function_errors(user)
    return found


def _function_errors(user: dict[str, Any]) -> list[CheckMessage]:
    from eagerstep.integrations.django.conf import durable_modules, get_functions

    found: list[CheckMessage] = []
    for key in ("CLIENT",):
        if user.get(key):
            try:
                load_target(user[key])
            except ImportError as error:
                found.append(
                    Error(
                        f'EAGERSTEP["{key}"] = {user[key]!r} cannot be imported: {error}',
                        hint='Give the dotted path of a module attribute, e.g. "shop.durable.client".',
                        id=ID.format("E005"),
                    )
                )
    try:
        paths = durable_modules()
    except ImportError as error:
        module = user.get("DURABLE_MODULE", DEFAULTS["DURABLE_MODULE"])
        return [
            *found,
            Error(
                f"A {module}.py module failed to import: {error}",
                hint="Fix the import error in that module.",
                id=ID.format("E005"),
            ),
        ]
    for path in paths:
        try:
            load_target(path)
        except ImportError as error:
            found.append(
                Error(
                    f'EAGERSTEP["FUNCTIONS"] entry {path!r} cannot be imported: {error}',
                    hint="Give a dotted path to a module, a function or a list of functions.",
                    id=ID.format("E005"),
                )
            )
    if found:
        return found
    functions = get_functions()
    ids = Counter(each.fully_qualified_id for function in functions for each in function.all_functions())
    for function_id, count in ids.items():
        if count > 1:
            found.append(
                Error(
                    f"{count} functions have the id {function_id!r}.",
                    hint="Give each function its own id= in @client.function(...): "
                    "the orchestrator keys runs and retries by it.",
                    id=ID.format("E006"),
                )
            )
    found += _client_warnings(functions)
    return found


def _client_warnings(functions: list[Any]) -> list[CheckMessage]:
    from eagerstep.integrations.django.conf import get_client

    try:
        client = get_client()
    except Exception:
        return []  # APP_ID / CLIENT problems are reported above
    strangers = sorted({f.id for f in functions if f.client is not client})
    if not strangers:
        return []
    return [
        Error(
            f"Functions {', '.join(strangers)} belong to another client than the one served, so the "
            "endpoint cannot serve them.",
            hint="Decorate them with eagerstep.integrations.django.get_client().function(...), or set "
            'EAGERSTEP["CLIENT"] to the dotted path of the client they use.',
            id=ID.format("E008"),
        )
    ]


def _signing_key_missing() -> bool:
    from eagerstep.core.config import parse_dev

    user = _user_settings() if isinstance(_user_settings(), dict) else {}
    dev = user.get("DEV") if user.get("DEV") is not None else os.environ.get("INNGEST_DEV")
    try:
        is_dev = parse_dev(dev)[0] if dev is not None else False
    except Exception:
        return False  # reported as a bad value
    return not is_dev and not (user.get("SIGNING_KEY") or os.environ.get("INNGEST_SIGNING_KEY"))


_SIGNING_HINT = (
    'Set EAGERSTEP["SIGNING_KEY"] (or the INNGEST_SIGNING_KEY environment variable) to your signing key, '
    'or set EAGERSTEP["DEV"] = True (INNGEST_DEV=1) for local development with `eagerstep dev`.'
)
_SIGNING_MESSAGE = "No signing key in cloud mode: every call to the eagerstep endpoint will be refused."


@register(Tags.security)
def check_signing_key(
    *, app_configs: Sequence[AppConfig] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    # A warning, not an error: an error would also stop `migrate` in build steps that have no secrets.
    if _signing_key_missing():
        return [Warning(_SIGNING_MESSAGE, hint=_SIGNING_HINT, id=ID.format("W001"))]
    return []


@register(Tags.security, deploy=True)
def check_signing_key_deploy(
    *, app_configs: Sequence[AppConfig] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    if _signing_key_missing():
        return [Error(_SIGNING_MESSAGE, hint=_SIGNING_HINT, id=ID.format("E007"))]
    return []
