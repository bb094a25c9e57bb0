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

from eagerstep.integrations.django import discovery
from eagerstep.integrations.django.conf import CLIENT_KEYS, DEFAULTS

TEXT_KEYS = ("APP_ID", "CLIENT", "DURABLE_MODULE", "DEFER_DATABASE", "OUTBOX_DATABASE", *CLIENT_KEYS)
STRING_KEYS = [key for key in TEXT_KEYS if key not in ("DEV", "CHECKPOINTING")]
HINTS = {
    "E001": 'For example EAGERSTEP = {"APP_ID": "shop"}.',
    "E004": 'Add EAGERSTEP = {"APP_ID": "your-app", ...} to settings, or set EAGERSTEP["CLIENT"] to the '
    "dotted path of your own eagerstep.Client.",
    "E005": "Give a dotted path to a module, a function or a list of functions (for CLIENT: "
    '"shop.durable.client"), and fix any import error inside that module.',
    "E006": "Give each function its own id= in @client.function(...): the orchestrator keys runs by it.",
    "E008": "Decorate them with eagerstep.integrations.django.get_client().function(...), or set "
    'EAGERSTEP["CLIENT"] to the dotted path of the client they use.',
    "FUNCTIONS": 'For example ["shop.durable", "billing.tasks.charge"].',
    "MAX_BODY_BYTES": "Leave it unset for the protocol's ~4 MB, or give a byte count.",
}
CheckArgs = Sequence[AppConfig] | None
Databases = Sequence[str] | None


def _error(code: str, message: str, hint: str | None = None) -> Error:
    return Error(message, hint=hint or HINTS.get(code), id=f"eagerstep.{code}")


def _value_errors(user: dict[str, Any]) -> list[CheckMessage]:
    from eagerstep.core.config import parse_checkpointing, parse_dev
    from eagerstep.core.errors import ConfigurationError

    found: list[CheckMessage] = []
    for key in user:
        if key not in DEFAULTS:
            close = difflib.get_close_matches(str(key), list(DEFAULTS), n=1)
            hint = f'Did you mean "{close[0]}"?' if close else f"Valid keys: {', '.join(sorted(DEFAULTS))}."
            found.append(
                Warning(f'EAGERSTEP["{key}"] is not an eagerstep setting.', hint=hint, id="eagerstep.W002")
            )
    for key, parse in (("DEV", parse_dev), ("CHECKPOINTING", parse_checkpointing)):
        if user.get(key) is not None:
            try:
                parse(user[key])
            except ConfigurationError as error:
                found.append(_error("E003", f'EAGERSTEP["{key}"] is invalid: {error}'))
    limit = user.get("MAX_BODY_BYTES", DEFAULTS["MAX_BODY_BYTES"])
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        message = f'EAGERSTEP["MAX_BODY_BYTES"] must be a positive int, not {limit!r}.'
        found.append(_error("E003", message, HINTS["MAX_BODY_BYTES"]))
    paths = user.get("FUNCTIONS")
    if paths is not None and not (
        isinstance(paths, (list, tuple)) and all(isinstance(p, str) for p in paths)
    ):
        message = f'EAGERSTEP["FUNCTIONS"] must be a list of dotted paths, not {paths!r}.'
        found.append(_error("E003", message, HINTS["FUNCTIONS"]))
    for key in STRING_KEYS:
        if user.get(key) is not None and not isinstance(user[key], str):
            found.append(_error("E003", f'EAGERSTEP["{key}"] must be a string, not {user[key]!r}.'))
    if not user.get("APP_ID") and not user.get("CLIENT"):
        found.append(_error("E004", 'EAGERSTEP["APP_ID"] is not set.'))
    return found


def _function_errors(user: dict[str, Any]) -> list[CheckMessage]:
    from eagerstep.integrations.django.conf import get_client

    if user.get("CLIENT"):
        try:
            discovery.load_target(user["CLIENT"])
        except ImportError as error:
            return [_error("E005", f'EAGERSTEP["CLIENT"] = {user["CLIENT"]!r} cannot be imported: {error}')]
    try:
        paths = discovery.durable_modules()
    except ImportError as error:
        return [_error("E005", f"A durable module failed to import: {error}")]
    found: list[CheckMessage] = []
    for path in paths:
        try:
            discovery.load_target(path)
        except ImportError as error:
            found.append(_error("E005", f'EAGERSTEP["FUNCTIONS"] entry {path!r} cannot be imported: {error}'))
    if found:
        return found
    functions = discovery.get_functions()
    ids = Counter(each.fully_qualified_id for function in functions for each in function.all_functions())
    for function_id, count in ids.items():
        if count > 1:
            found.append(_error("E006", f"{count} functions have the id {function_id!r}."))
    client = get_client()
    strangers = sorted({f.id for f in functions if f.client is not client})
    if strangers:
        names = ", ".join(strangers)
        found.append(_error("E008", f"Functions {names} belong to another client than the one served."))
    return found


@register(Tags.compatibility)
def check_settings(
    *, app_configs: CheckArgs = None, databases: Databases = None, **kw: Any
) -> list[CheckMessage]:
    user = getattr(settings, "EAGERSTEP", {})
    if not isinstance(user, dict):
        return [_error("E001", f"EAGERSTEP must be a dict, not {type(user).__name__}.")]
    found = _value_errors(user)
    if not any(message.id in ("eagerstep.E003", "eagerstep.E004") for message in found):
        found += _function_errors(user)
    return found


def _signing_key_missing() -> bool:
    from eagerstep.core.config import parse_dev

    user = getattr(settings, "EAGERSTEP", {})
    user = user if isinstance(user, dict) else {}
    dev = user.get("DEV") if user.get("DEV") is not None else os.environ.get("INNGEST_DEV")
    try:
        is_dev = parse_dev(dev)[0] if dev is not None else False
    except Exception:
        return False  # reported as a bad value
    return not is_dev and not (user.get("SIGNING_KEY") or os.environ.get("INNGEST_SIGNING_KEY"))


SIGNING_MESSAGE = "No signing key in cloud mode: every call to the eagerstep endpoint will be refused."
SIGNING_HINT = (
    'Set EAGERSTEP["SIGNING_KEY"] (or the INNGEST_SIGNING_KEY environment variable) to your signing key, '
    'or set EAGERSTEP["DEV"] = True (INNGEST_DEV=1) for local development with `eagerstep dev`.'
)


@register(Tags.security)
def check_signing_key(
    *, app_configs: CheckArgs = None, databases: Databases = None, **kw: Any
) -> list[CheckMessage]:
    # A warning here and an error under --deploy: an error would also stop `migrate` in build steps
    # that have no secrets.
    missing = _signing_key_missing()
    return [Warning(SIGNING_MESSAGE, hint=SIGNING_HINT, id="eagerstep.W001")] if missing else []


@register(Tags.security, deploy=True)
def check_signing_key_deploy(
    *, app_configs: CheckArgs = None, databases: Databases = None, **kw: Any
) -> list[CheckMessage]:
    return [_error("E007", SIGNING_MESSAGE, SIGNING_HINT)] if _signing_key_missing() else []
