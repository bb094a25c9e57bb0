"""Client.override_settings: what eagerstep.testing uses to point a client at its engine."""

from __future__ import annotations

import pytest

import eagerstep
from eagerstep.core.errors import ConfigurationError


def test_overrides_win_over_explicit_arguments_and_end_with_the_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INNGEST_DEV", "0")
    client = eagerstep.Client(app_id="o", api_base_url="http://explicit:1", signing_key="signkey-test-ab")
    with client.override_settings(
        DEV="http://127.0.0.1:9", API_BASE_URL="http://127.0.0.1:9", SIGNING_KEY=None
    ):
        assert client.settings.dev is True
        assert client.settings.api_base_url == "http://127.0.0.1:9"
        assert client.settings.signing_key == "signkey-test-ab"  # None: not overridden
    assert client.settings.dev is False
    assert client.settings.api_base_url == "http://explicit:1"


def test_unknown_keys_are_refused() -> None:
    with (
        pytest.raises(ConfigurationError, match="unknown settings"),
        eagerstep.Client(app_id="o").override_settings(DEV_MODE=True),
    ):
        pass
