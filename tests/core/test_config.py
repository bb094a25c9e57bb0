"""Settings resolution: explicit > framework source > INNGEST_* env > defaults."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

import eagerstep
from eagerstep.core import protocol
from eagerstep.core.config import parse_checkpointing, parse_dev


def test_defaults_are_cloud_mode() -> None:
    settings = eagerstep.Client(app_id="shop").settings
    assert settings.dev is False
    assert settings.mode == "cloud"
    assert settings.api_base_url == protocol.CLOUD_API_ORIGIN
    assert settings.event_api_base_url == protocol.CLOUD_EVENT_API_ORIGIN
    assert settings.signing_key is None
    assert settings.event_key is None
    assert settings.checkpointing == eagerstep.Checkpointing()


def test_missing_signing_key_message_carries_the_fix() -> None:
    settings = eagerstep.Client(app_id="shop").settings
    with pytest.raises(
        eagerstep.ConfigurationError, match="SIGNING_KEY is not set; it is required when INNGEST_DEV is off"
    ):
        settings.require_signing_key()


@pytest.mark.parametrize(
    ("value", "dev", "origin"),
    [
        ("1", True, None),
        ("true", True, None),
        ("0", False, None),
        ("false", False, None),
        ("http://localhost:9999/", True, "http://localhost:9999"),
        (True, True, None),
    ],
)
def test_parse_dev(value: object, dev: bool, origin: str | None) -> None:
    assert parse_dev(value) == (dev, origin)


def test_parse_dev_rejects_garbage() -> None:
    with pytest.raises(eagerstep.ConfigurationError, match="INNGEST_DEV"):
        parse_dev("maybe")


def test_dev_env_uses_local_server_and_placeholder_event_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INNGEST_DEV", "1")
    settings = eagerstep.Client(app_id="shop").settings
    assert settings.dev
    assert settings.api_base_url == protocol.DEV_SERVER_ORIGIN
    assert settings.event_api_base_url == protocol.DEV_SERVER_ORIGIN
    assert settings.event_key == protocol.DEV_EVENT_KEY


def test_dev_origin_url_becomes_both_base_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INNGEST_DEV", "http://127.0.0.1:9000/")
    settings = eagerstep.Client(app_id="shop").settings
    assert settings.api_base_url == settings.event_api_base_url == "http://127.0.0.1:9000"


def test_base_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INNGEST_BASE_URL", "http://base:1")
    monkeypatch.setenv("INNGEST_API_BASE_URL", "http://api:2/")
    settings = eagerstep.Client(app_id="shop").settings
    assert settings.api_base_url == "http://api:2"
    assert settings.event_api_base_url == "http://base:1"


def test_explicit_beats_source_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INNGEST_SIGNING_KEY", "signkey-env-00")
    monkeypatch.setenv("INNGEST_EVENT_KEY", "env-event")
    monkeypatch.setenv("INNGEST_ENV", "env-env")
    client = eagerstep.Client(app_id="shop", event_key="explicit-event")
    source = {"SIGNING_KEY": "signkey-src-00", "EVENT_KEY": "source-event"}
    client.set_settings_source(source.get)
    settings = client.settings
    assert settings.event_key == "explicit-event"
    assert settings.signing_key == "signkey-src-00"
    assert settings.env == "env-env"


def test_resolved_lazily_cached_and_reloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    client = eagerstep.Client(app_id="shop")
    monkeypatch.setenv("INNGEST_EVENT_KEY", "first")  # after construction: still seen (lazy)
    assert client.settings.event_key == "first"
    monkeypatch.setenv("INNGEST_EVENT_KEY", "second")
    assert client.settings.event_key == "first"  # cached
    client.reload_settings()
    assert client.settings.event_key == "second"


def test_serve_origin_and_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INNGEST_SERVE_ORIGIN", "https://app.example.com/")
    monkeypatch.setenv("INNGEST_SERVE_PATH", "hooks/inngest")
    settings = eagerstep.Client(app_id="shop").settings
    assert settings.serve_origin == "https://app.example.com"
    assert settings.serve_path == "/hooks/inngest"


def test_dev_mode_warns_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("INNGEST_DEV", "1")
    client = eagerstep.Client(app_id="shop")
    with caplog.at_level(logging.WARNING, logger="eagerstep"):
        client.settings  # noqa: B018
        client.reload_settings()
        client.settings  # noqa: B018
    assert sum("dev mode" in r.getMessage() for r in caplog.records) == 1


def test_no_warning_in_cloud_mode(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="eagerstep"):
        eagerstep.Client(app_id="shop").settings  # noqa: B018
    assert not caplog.records


def test_checkpointing_forms() -> None:
    assert parse_checkpointing(True) == eagerstep.Checkpointing()
    assert parse_checkpointing(False) is None
    assert parse_checkpointing("false") is None
    custom = parse_checkpointing({"BUFFERED_STEPS": 3, "max_runtime": 2})
    assert custom is not None
    assert custom.buffered_steps == 3
    assert custom.max_runtime == timedelta(seconds=2)
    with pytest.raises(eagerstep.ConfigurationError, match="CHECKPOINTING"):
        parse_checkpointing({"nope": 1})
    with pytest.raises(eagerstep.ConfigurationError, match="CHECKPOINTING"):
        parse_checkpointing(3.5)


def test_client_checkpointing_switch_and_source() -> None:
    assert eagerstep.Client(app_id="a", checkpointing=False).settings.checkpointing is None
    client = eagerstep.Client(app_id="a")
    client.set_settings_source({"CHECKPOINTING": False}.get)
    assert client.settings.checkpointing is None
    explicit = eagerstep.Client(app_id="a", checkpointing=eagerstep.Checkpointing(buffered_steps=4))
    explicit.set_settings_source({"CHECKPOINTING": False}.get)
    assert explicit.settings.checkpointing == eagerstep.Checkpointing(buffered_steps=4)


def test_empty_app_id_is_rejected() -> None:
    with pytest.raises(eagerstep.ConfigurationError, match="app_id"):
        eagerstep.Client(app_id="")
