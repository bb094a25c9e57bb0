"""Settings resolution: explicit argument, then framework settings, then INNGEST_* env, then defaults."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from eagerstep.core import protocol
from eagerstep.core.checkpoint import Checkpointing
from eagerstep.core.errors import ConfigurationError

logger = logging.getLogger("eagerstep")

SettingsSource = Callable[[str], object | None]

#: Setting key -> the official environment variable that supplies it.
ENV_VARS: Mapping[str, str] = {
    "DEV": "INNGEST_DEV",
    "SIGNING_KEY": "INNGEST_SIGNING_KEY",
    "SIGNING_KEY_FALLBACK": "INNGEST_SIGNING_KEY_FALLBACK",
    "EVENT_KEY": "INNGEST_EVENT_KEY",
    "API_BASE_URL": "INNGEST_API_BASE_URL",
    "EVENT_API_BASE_URL": "INNGEST_EVENT_API_BASE_URL",
    "BASE_URL": "INNGEST_BASE_URL",
    "SERVE_ORIGIN": "INNGEST_SERVE_ORIGIN",
    "SERVE_PATH": "INNGEST_SERVE_PATH",
    "ENV": "INNGEST_ENV",
    "ENCRYPTION_KEY": "INNGEST_ENCRYPTION_KEY",
    "ENCRYPTION_KEY_FALLBACK": "INNGEST_ENCRYPTION_KEY_FALLBACK",
}

KEYS = (
    "APP_ID",
    "DEV",
    "SIGNING_KEY",
    "SIGNING_KEY_FALLBACK",
    "EVENT_KEY",
    "API_BASE_URL",
    "EVENT_API_BASE_URL",
    "BASE_URL",
    "SERVE_ORIGIN",
    "SERVE_PATH",
    "ENV",
    "CHECKPOINTING",
    "ENCRYPTION_KEY",  # read by eagerstep.extras.encryption (Client.setting), not by Settings
    "ENCRYPTION_KEY_FALLBACK",
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    """Resolved settings of a client (see the settings table in the docs)."""

    app_id: str
    dev: bool
    signing_key: str | None
    signing_key_fallback: str | None
    event_key: str | None
    api_base_url: str
    event_api_base_url: str
    serve_origin: str | None
    serve_path: str | None
    env: str | None
    checkpointing: Checkpointing | None

    @property
    def mode(self) -> str:
        return "dev" if self.dev else "cloud"

    def require_signing_key(self) -> str:
        if not self.signing_key:
            raise ConfigurationError(
                "SIGNING_KEY is not set; it is required when INNGEST_DEV is off. Set INNGEST_SIGNING_KEY "
                "(or the framework setting SIGNING_KEY, or Client(signing_key=...)), or set INNGEST_DEV=1 "
                "for local development"
            )
        return self.signing_key

    def signing_keys(self) -> tuple[str | None, str | None]:
        return self.signing_key, self.signing_key_fallback


def parse_dev(value: object) -> tuple[bool, str | None]:
    """Interpret a DEV value: a bool, ``"1"``/``"true"``/``"0"``..., or an origin URL (dev mode)."""
    if isinstance(value, bool):
        return value, None
    text = str(value).strip()
    if text.lower().startswith(("http://", "https://")):
        return True, text.rstrip("/")
    lowered = text.lower()
    if lowered in _TRUE:
        return True, None
    if lowered in _FALSE:
        return False, None
    raise ConfigurationError(
        f"DEV / INNGEST_DEV has the value {text!r}; use 1, true, 0, false or the dev server's origin URL "
        "(e.g. http://127.0.0.1:8288)"
    )


def parse_checkpointing(value: object) -> Checkpointing | None:
    """``True``/``False``, a :class:`Checkpointing`, or a mapping of its fields."""
    if value is None or value is True:
        return Checkpointing()
    if value is False:
        return None
    if isinstance(value, Checkpointing):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return Checkpointing()
        if lowered in _FALSE:
            return None
        raise ConfigurationError(f"CHECKPOINTING has the value {value!r}; use true, false or a mapping")
    if isinstance(value, Mapping):
        durations = {f.name for f in dataclasses.fields(Checkpointing) if "timedelta" in str(f.type)}
        fields: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key).lower()
            if name in durations and isinstance(item, (int, float)) and not isinstance(item, bool):
                item = timedelta(seconds=item)
            fields[name] = item
        try:
            return Checkpointing(**fields)
        except (TypeError, ValueError) as exc:
            valid = ", ".join(f.name for f in dataclasses.fields(Checkpointing))
            raise ConfigurationError(f"CHECKPOINTING: {exc}; valid keys are {valid}") from exc
    raise ConfigurationError(
        f"CHECKPOINTING must be True, False, eagerstep.Checkpointing(...) or a mapping, not {value!r}"
    )


class SettingsResolver:
    """Resolves a client's settings lazily, once, from the first source that has each value."""

    def __init__(self, explicit: Mapping[str, object]) -> None:
        self._explicit = {k: v for k, v in explicit.items() if v is not None}
        self._overrides: dict[str, object] = {}
        self._source: SettingsSource | None = None
        self._cached: Settings | None = None
        self._lock = threading.Lock()
        self._warned_dev = False

    def set_source(self, source: SettingsSource | None) -> None:
        with self._lock:
            self._source = source
            self._cached = None

    def reload(self) -> None:
        with self._lock:
            self._cached = None

    def set_overrides(self, values: Mapping[str, object]) -> None:
        """Values that win over every source (``Client.override_settings``); empty: none."""
        with self._lock:
            self._overrides = {k: v for k, v in values.items() if v is not None}
            self._cached = None

    def lookup(self, key: str) -> object | None:
        """One value from overrides, explicit args, the framework source, then the environment."""
        if key in self._overrides:
            return self._overrides[key]
        if key in self._explicit:
            return self._explicit[key]
        source = self._source
        if source is not None:
            value = source(key)
            if value is not None:
                return value
        env_name = ENV_VARS.get(key)
        if env_name is not None:
            text = os.environ.get(env_name)
            if text is not None and text.strip() != "":
                return text.strip()
        return None

    def get(self) -> Settings:
        cached = self._cached
        if cached is not None:
            return cached
        with self._lock:
            if self._cached is None:
                self._cached = self._resolve()
            return self._cached

    def _text(self, key: str) -> str | None:
        value = self.lookup(key)
        return None if value is None else str(value)

    def _resolve(self) -> Settings:
        app_id = self._text("APP_ID")
        if not app_id:
            raise ConfigurationError("APP_ID is not set; pass Client(app_id=...)")
        dev_value = self.lookup("DEV")
        dev, dev_origin = parse_dev(dev_value) if dev_value is not None else (False, None)
        base = self._text("BASE_URL")
        default_origin = dev_origin or (protocol.DEV_SERVER_ORIGIN if dev else None)
        api = self._text("API_BASE_URL") or base or default_origin or protocol.CLOUD_API_ORIGIN
        event_api = (
            self._text("EVENT_API_BASE_URL") or base or default_origin or protocol.CLOUD_EVENT_API_ORIGIN
        )
        event_key = self._text("EVENT_KEY") or (protocol.DEV_EVENT_KEY if dev else None)
        serve_path = self._text("SERVE_PATH")
        if serve_path is not None and not serve_path.startswith("/"):
            serve_path = "/" + serve_path
        serve_origin = self._text("SERVE_ORIGIN")
        settings = Settings(
            app_id=app_id,
            dev=dev,
            signing_key=self._text("SIGNING_KEY"),
            signing_key_fallback=self._text("SIGNING_KEY_FALLBACK"),
            event_key=event_key,
            api_base_url=api.rstrip("/"),
            event_api_base_url=event_api.rstrip("/"),
            serve_origin=serve_origin.rstrip("/") if serve_origin else None,
            serve_path=serve_path,
            env=self._text("ENV"),
            checkpointing=parse_checkpointing(self.lookup("CHECKPOINTING")),
        )
        if dev and not self._warned_dev:
            self._warned_dev = True
            logger.warning(
                "eagerstep is in dev mode (INNGEST_DEV): request signatures are not verified; "
                "never run it this way in production (app %s, orchestrator %s)",
                app_id,
                settings.api_base_url,
            )
        return settings
