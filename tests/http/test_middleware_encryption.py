"""The encryption extra: the official SDKs' wire format, and through every framework: step outputs,
the result and sent events' encrypted field leave encrypted, the code sees them plain, a rotated
key still opens what the old one sealed."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("nacl")

import nacl.encoding
import nacl.hash
import nacl.secret

from eagerstep.core.function import Function
from eagerstep.core.protocol import hash_step_id as h
from eagerstep.extras.encryption import (
    DecryptionError,
    EncryptionMiddleware,
    decrypt,
    encrypt,
    is_encrypted,
)
from tests.http import functions
from tests.http.clients.base import HttpClient
from tests.support.driver import RunDriver, drive
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import wire_event


def official_box(key: str) -> nacl.secret.SecretBox:
    """The key derivation of inngest-py's inngest_encryption (and inngest-js's libsodium strategy):
    BLAKE2b-256 of the key text, hex-encoded, read back by a hex SecretBox."""
    hashed = nacl.hash.generichash(key.encode(), digest_size=nacl.secret.SecretBox.KEY_SIZE)
    return nacl.secret.SecretBox(hashed, encoder=nacl.encoding.HexEncoder)


def official_encrypt(value: Any, key: str) -> dict[str, Any]:
    sealed = official_box(key).encrypt(json.dumps(value).encode(), encoder=nacl.encoding.Base64Encoder)
    return {"__ENCRYPTED__": True, "__STRATEGY__": "inngest/libsodium", "data": sealed.decode()}


def official_decrypt(value: dict[str, Any], key: str) -> Any:
    return json.loads(official_box(key).decrypt(value["data"].encode(), encoder=nacl.encoding.Base64Encoder))


def test_the_wire_format_is_the_official_sdks() -> None:
    value = {"card": "4242 4242 4242 4242", "n": [1, 2.5, None]}
    ours = encrypt(value, "s3cret")
    assert set(ours) == {"__ENCRYPTED__", "__STRATEGY__", "data"} and is_encrypted(ours)
    assert ours["__ENCRYPTED__"] is True and ours["__STRATEGY__"] == "inngest/libsodium"
    assert len(base64.b64decode(ours["data"])) == 24 + 16 + len(json.dumps(value, separators=(",", ":")))
    assert official_decrypt(ours, "s3cret") == value  # theirs opens ours...
    assert decrypt(official_encrypt(value, "s3cret"), ["s3cret"]) == value  # ...and ours theirs
    raw = nacl.hash.generichash(b"s3cret", digest_size=32, encoder=nacl.encoding.RawEncoder)
    assert decrypt(ours, [raw]) == decrypt(ours, [raw.hex().encode()]) == value  # bytes keys
    with pytest.raises(DecryptionError, match="no encryption key opens this value"):
        decrypt(ours, ["another key"])
    assert decrypt(ours, ["another key", "s3cret"]) == value  # a fallback key


@pytest.fixture
def encrypted() -> Iterator[list[Function[Any]]]:
    attached = [functions.mw_flow, functions.mw_flow_async, functions.mw_flow_standard]
    middleware = EncryptionMiddleware("k1")
    for fn in attached:
        fn.middleware.append(middleware)
    yield attached
    for fn in attached:
        fn.middleware[:] = [m for m in fn.middleware if not isinstance(m, EncryptionMiddleware)]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["checkpointing", "async", "standard"])
def test_what_leaves_is_encrypted_and_the_code_sees_it_plain(
    http_client: HttpClient, orchestrator: RecordingOrchestrator, encrypted: list[Function[Any]], index: int
) -> None:
    fn = encrypted[index]
    event = wire_event("test/mw", {"encrypted": official_encrypt({"pin": 42}, "k1"), "user": 7})
    result = drive(http_client.handle, fn.fully_qualified_id, event, orchestrator=orchestrator)
    assert result.completed, result.error
    # step outputs as the orchestrator stored them (by checkpoint or from replies)
    for name in ("a", "b"):
        stored = result.memos[h(name)]["data"]
        assert is_encrypted(stored) and f"{name}-secret" not in json.dumps(stored)
        assert official_decrypt(stored, "k1") == {"step": name, "secret": f"{name}-secret"}
    assert result.memos[h("emit")]["data"]["ids"]  # send_event's ids are not a step.run output
    # the result: encrypted whole; inside, what the code saw: steps and the event's field plain
    assert is_encrypted(result.output)
    assert official_decrypt(result.output, "k1") == {
        "a": {"step": "a", "secret": "a-secret"},
        "b": {"step": "b", "secret": "b-secret"},
        "event": {"encrypted": {"pin": 42}, "user": 7},
    }
    # the event sent: its "encrypted" field sealed, the rest readable
    sent = orchestrator.events[-1]
    assert sent["data"]["k"] == 1 and official_decrypt(sent["data"]["encrypted"], "k1") == {"pin": 1234}


def test_a_rotated_key_opens_what_the_old_one_sealed(
    http_client: HttpClient, orchestrator: RecordingOrchestrator
) -> None:
    fn = functions.mw_flow
    fn.middleware.append(EncryptionMiddleware("old"))
    try:
        driver = RunDriver(fn.fully_qualified_id, wire_event("test/mw"), orchestrator=orchestrator)
        driver.accept(http_client.handle(driver.next_request()))  # "a", then the sleep
        driver.merge_checkpoints()
        assert official_decrypt(driver.result.memos[h("a")]["data"], "old")["step"] == "a"

        fn.middleware[:] = [EncryptionMiddleware("new", fallback_keys=["old"])]
        while not driver.done:
            driver.accept(http_client.handle(driver.next_request()))
        driver.merge_checkpoints()
        assert driver.result.completed, driver.result.error
        assert official_decrypt(driver.result.memos[h("b")]["data"], "new")["step"] == "b"
        assert official_decrypt(driver.result.output, "new")["a"]["secret"] == "a-secret"

        # without the old key, the recorded step cannot be read: the attempt fails and says why
        fn.middleware[:] = [EncryptionMiddleware("new")]
        again = drive(
            http_client.handle,
            fn.fully_qualified_id,
            wire_event("test/mw"),
            orchestrator=orchestrator,
            steps=driver.result.memos,
            max_attempts=1,
        )
        assert again.status == "failed" and "no encryption key opens this value" in str(again.error)
    finally:
        fn.middleware.clear()


def test_a_waited_for_events_encrypted_field_is_decrypted(
    http_client: HttpClient, orchestrator: RecordingOrchestrator
) -> None:
    functions.mw_wait.middleware.append(EncryptionMiddleware("k1"))
    try:
        reply = {"name": "test/mw-reply", "data": {"encrypted": official_encrypt({"ok": True}, "k1"), "n": 1}}
        result = drive(
            http_client.handle,
            functions.mw_wait.fully_qualified_id,
            orchestrator=orchestrator,
            wait_for_event={"reply": reply},
        )
    finally:
        functions.mw_wait.middleware.clear()
    assert result.completed, result.error
    assert official_decrypt(result.output, "k1") == {"encrypted": {"ok": True}, "n": 1}


def test_invoke_data_has_its_encrypted_field_sealed(
    http_client: HttpClient, orchestrator: RecordingOrchestrator
) -> None:
    functions.mw_invoke.middleware.append(EncryptionMiddleware("k1"))
    try:
        result = drive(
            http_client.handle,
            functions.mw_invoke.fully_qualified_id,
            orchestrator=orchestrator,
            invoke={"call": {"data": {"done": True}}},
        )
    finally:
        functions.mw_invoke.middleware.clear()
    assert result.completed, result.error
    [op] = [op for op in result.ops if op["op"] == "InvokeFunction"]
    data = op["opts"]["payload"]["data"]
    assert data["plain"] == 2 and "4111" not in json.dumps(data)
    assert official_decrypt(data["encrypted"], "k1") == {"card": "4111"}
