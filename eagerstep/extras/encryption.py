"""End-to-end encryption of step outputs, function results and event data (``pip install
eagerstep[encryption]``): the orchestrator stores and forwards only ciphertext.

    from eagerstep.extras.encryption import EncryptionMiddleware

    client = eagerstep.Client(app_id="shop")
    client.middleware.append(EncryptionMiddleware(client=client))  # ENCRYPTION_KEY from settings

The wire format is the official SDKs' (inngest-py's ``inngest_encryption``, inngest-js's
``@inngest/middleware-encryption``, strategy ``inngest/libsodium``): an encrypted value is
``{"__ENCRYPTED__": true, "__STRATEGY__": "inngest/libsodium", "data": "<base64>"}`` where the base64
(standard alphabet, padded) is a 24-byte nonce followed by libsodium ``crypto_secretbox`` (XSalsa20-
Poly1305) of the value's JSON; a text key becomes the 32-byte secretbox key through BLAKE2b-256
(libsodium ``crypto_generichash``), a ``bytes`` key is 32 raw bytes or 64 hex digits (as
inngest-py reads a ``bytes`` key). So a run can move
between services using either SDK with the same key.

What is encrypted: every ``step.run`` output but ``null`` and the function's result (whole), and
in events sent (``client.send``, ``ctx.step.send_event``) and ``ctx.step.invoke`` data only the
``data["encrypted"]`` field (the rest stays readable so that the orchestrator can match, filter and
key on it). What is decrypted: recorded steps (including a ``wait_for_event`` event's encrypted
field), the triggering event(s)' encrypted field (or data encrypted whole). Not encrypted: errors.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from eagerstep.core.errors import ConfigurationError
from eagerstep.core.middleware import FunctionInput, Middleware, RunInfo, StepInfo

try:
    import nacl.exceptions
    import nacl.hash
    import nacl.secret
    import nacl.utils
    from nacl.encoding import RawEncoder
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "eagerstep.extras.encryption needs PyNaCl (libsodium): pip install 'eagerstep[encryption]'"
    ) from exc

__all__ = ["DecryptionError", "EncryptionMiddleware", "decrypt", "encrypt", "is_encrypted"]

ENCRYPTION_MARKER = "__ENCRYPTED__"
STRATEGY_MARKER = "__STRATEGY__"
STRATEGY = "inngest/libsodium"
DEFAULT_EVENT_FIELD = "encrypted"

Key = str | bytes


class DecryptionError(Exception):
    """An encrypted value that no configured key opens."""


def _box(key: Key) -> nacl.secret.SecretBox:
    size = nacl.secret.SecretBox.KEY_SIZE
    if isinstance(key, str):
        text = key.strip()
        if not text:
            raise ConfigurationError("an encryption key is empty")
        raw = nacl.hash.generichash(text.encode("utf-8"), digest_size=size, encoder=RawEncoder)
    elif len(key) == 2 * size:  # hex, as inngest-py takes a bytes key
        try:
            raw = bytes.fromhex(bytes(key).decode("ascii"))
        except ValueError as exc:
            raise ConfigurationError(f"a {2 * size}-byte encryption key must be hex: {exc}") from exc
    else:
        raw = bytes(key)
    if len(raw) != size:
        raise ConfigurationError(
            f"a bytes encryption key must be {size} bytes long (or {2 * size} hex digits), not {len(key)}"
        )
    return nacl.secret.SecretBox(raw)


def is_encrypted(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get(ENCRYPTION_MARKER) is True
        and value.get(STRATEGY_MARKER) == STRATEGY
        and isinstance(value.get("data"), str)
    )


def encrypt(value: Any, key: Key) -> dict[str, Any]:
    """``value`` (JSON data) as an encrypted value, sealed with ``key``."""
    sealed = _box(key).encrypt(json.dumps(value, separators=(",", ":")).encode("utf-8"))
    return _envelope(bytes(sealed))


def _envelope(sealed: bytes) -> dict[str, Any]:
    return {ENCRYPTION_MARKER: True, STRATEGY_MARKER: STRATEGY, "data": base64.b64encode(sealed).decode()}


def decrypt(value: dict[str, Any], keys: Sequence[Key]) -> Any:
    """The JSON data inside an encrypted value, opened with the first of ``keys`` that fits."""
    return _open(value, [_box(k) for k in keys])


def _open(value: dict[str, Any], boxes: Sequence[nacl.secret.SecretBox]) -> Any:
    try:
        sealed = base64.b64decode(value["data"], validate=True)
    except (ValueError, TypeError) as exc:
        raise DecryptionError(f"an encrypted value's data is not base64: {exc}") from exc
    for box in boxes:
        try:
            return json.loads(box.decrypt(sealed))
        except nacl.exceptions.CryptoError:
            continue
    raise DecryptionError(
        f"no encryption key opens this value ({len(boxes)} tried): set ENCRYPTION_KEY_FALLBACK (or "
        "EncryptionMiddleware(fallback_keys=[...])) to the key it was encrypted with"
    )


class EncryptionMiddleware(Middleware):
    """Encrypt what leaves for the orchestrator, decrypt what comes back.

    ``key`` encrypts (and decrypts); ``fallback_keys`` only decrypt (key rotation: the new key
    first, the old one as a fallback until no run holds data sealed with it). Without ``key``,
    the keys come from ``client``'s settings (the function's client inside a run):
    ``ENCRYPTION_KEY`` and ``ENCRYPTION_KEY_FALLBACK`` (Django ``EAGERSTEP``, Flask
    ``EAGERSTEP_*`` config, or ``INNGEST_ENCRYPTION_KEY``/``INNGEST_ENCRYPTION_KEY_FALLBACK``).
    ``decrypt_only``: decrypt, never encrypt (to roll encryption out, or out again).
    """

    def __init__(
        self,
        key: Key | None = None,
        *,
        fallback_keys: Sequence[Key] | None = None,
        client: Any = None,
        event_field: str = DEFAULT_EVENT_FIELD,
        decrypt_only: bool = False,
    ) -> None:
        self.client = client
        self.event_field = event_field
        self.decrypt_only = decrypt_only
        self._boxes: list[nacl.secret.SecretBox] | None = None
        if key is not None:
            self._boxes = [_box(k) for k in (key, *(fallback_keys or ()))]
        elif fallback_keys:
            raise ConfigurationError("EncryptionMiddleware(fallback_keys=...) needs key=... too")

    def _keys(self, client: Any) -> list[nacl.secret.SecretBox]:
        boxes = self._boxes
        if boxes is not None:
            return boxes
        source = self.client or client
        if source is None:
            raise ConfigurationError(
                "EncryptionMiddleware has no key: pass key=... or client=... (whose ENCRYPTION_KEY "
                "setting holds it) to encrypt events sent outside a run"
            )
        key = source.setting("ENCRYPTION_KEY")
        if not key:
            raise ConfigurationError(
                "ENCRYPTION_KEY is not set; it is required by EncryptionMiddleware. Set "
                "INNGEST_ENCRYPTION_KEY (or the framework setting ENCRYPTION_KEY), or pass "
                "EncryptionMiddleware(key=...)"
            )
        fallback = source.setting("ENCRYPTION_KEY_FALLBACK")
        boxes = self._boxes = [_box(str(key)), *([_box(str(fallback))] if fallback else [])]
        return boxes

    def _seal(self, value: Any, boxes: Sequence[nacl.secret.SecretBox]) -> dict[str, Any]:
        return _envelope(bytes(boxes[0].encrypt(json.dumps(value, separators=(",", ":")).encode("utf-8"))))

    def _open_event_data(self, data: Any, boxes: Sequence[nacl.secret.SecretBox]) -> Any:
        if not isinstance(data, dict):
            return data
        if is_encrypted(data):  # data encrypted whole (other SDKs' invoke events keep "_inngest" beside)
            opened = _open(data, boxes)
            rest = {k: v for k, v in data.items() if k not in (ENCRYPTION_MARKER, STRATEGY_MARKER, "data")}
            return {**rest, **opened} if isinstance(opened, dict) else opened
        if any(is_encrypted(v) for v in data.values()):
            return {k: _open(v, boxes) if is_encrypted(v) else v for k, v in data.items()}
        return data

    # -- hooks ---------------------------------------------------------------------------------

    def transform_input(self, run: RunInfo, input: FunctionInput) -> None:
        boxes: list[nacl.secret.SecretBox] | None = None

        def keys() -> list[nacl.secret.SecretBox]:
            nonlocal boxes
            if boxes is None:
                boxes = self._keys(run.function.client)
            return boxes

        def open_event(event: Any) -> None:
            if (
                isinstance(event, dict)
                and isinstance(event.get("data"), dict)
                and _has_encrypted(event["data"])
            ):
                event["data"] = self._open_event_data(event["data"], keys())

        open_event(input.event)
        for event in input.events:
            open_event(event)
        for hashed, memo in input.steps.items():
            if not isinstance(memo, dict):
                continue
            if len(memo) == 1 and is_encrypted(memo.get("data")):
                input.steps[hashed] = {"data": _open(memo["data"], keys())}
            elif len(memo) == 1 and isinstance(memo.get("data"), dict) and "name" in memo["data"]:
                open_event(memo["data"])  # a wait_for_event's event, as {"data": event}
            elif "name" in memo:
                open_event(memo)  # a wait_for_event's event, bare

    def transform_step_output(self, step: StepInfo, output: Any) -> Any:
        if self.decrypt_only or output is None:
            return output
        return self._seal(output, self._keys(step.run.function.client))

    def transform_output(self, run: RunInfo, output: Any) -> Any:
        if self.decrypt_only or output is None:
            return output
        return self._seal(output, self._keys(run.function.client))

    def transform_invoke_data(self, step: StepInfo, data: Any) -> Any:
        if self.decrypt_only or not isinstance(data, dict) or self.event_field not in data:
            return data
        if is_encrypted(data[self.event_field]):
            return data
        boxes = self._keys(step.run.function.client)
        return {**data, self.event_field: self._seal(data[self.event_field], boxes)}

    def before_send_events(self, events: list[dict[str, Any]]) -> None:
        if self.decrypt_only:
            return
        for event in events:
            data = event.get("data")
            if (
                isinstance(data, dict)
                and self.event_field in data
                and not is_encrypted(data[self.event_field])
            ):
                event["data"] = {
                    **data,
                    self.event_field: self._seal(data[self.event_field], self._keys(None)),
                }


def _has_encrypted(data: dict[str, Any]) -> bool:
    return data.get(ENCRYPTION_MARKER) is True or any(
        isinstance(v, dict) and v.get(ENCRYPTION_MARKER) is True for v in data.values()
    )
