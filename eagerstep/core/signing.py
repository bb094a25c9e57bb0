"""HMAC request/response signatures and hashed bearer keys (Inngest protocol)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Sequence
from typing import Any

from eagerstep.core import safejson

SIGNATURE_MAX_AGE_SECONDS = 5 * 60

_PREFIX = re.compile(r"^signkey-[\w]+-")


class SignatureError(Exception):
    """The request's X-Inngest-Signature is missing, malformed, expired or does not match."""


def split_key(key: str) -> tuple[str, str]:
    """Return (prefix, secret) of a signing key such as ``signkey-prod-abc123``."""
    match = _PREFIX.match(key)
    if match is None:
        return "", key
    return match.group(0), key[match.end() :]


def hash_signing_key(key: str) -> str:
    """The bearer form of a signing key: prefix + hex(sha256(hex_decode(secret)))."""
    prefix, secret = split_key(key)
    try:
        raw = bytes.fromhex(secret)
    except ValueError as exc:
        raise ValueError(
            "the signing key is not in the form signkey-<env>-<hex>; copy it as shown by the orchestrator"
        ) from exc
    return prefix + hashlib.sha256(raw).hexdigest()


def hash_event_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _mac(body: bytes, key: str, timestamp: int) -> str:
    _, secret = split_key(key)
    return hmac.new(secret.encode(), body + str(timestamp).encode(), hashlib.sha256).hexdigest()


def sign(body: bytes, key: str, timestamp: int | None = None) -> str:
    """The X-Inngest-Signature value for ``body``: ``t=<unix seconds>&s=<hex hmac>``."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t}&s={_mac(body, key, t)}"


def parse_signature(header: str) -> tuple[int, str]:
    fields: dict[str, str] = {}
    for part in header.split("&"):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    try:
        return int(fields["t"]), fields["s"]
    except (KeyError, ValueError) as exc:
        raise SignatureError("X-Inngest-Signature is malformed; expected t=<unix seconds>&s=<hex>") from exc


def canonical_json(value: Any) -> bytes:
    """An RFC 8785-style canonical form (sorted keys, no spaces), which servers sign."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def verify(
    header: str | None,
    body: bytes,
    keys: Sequence[str | None],
    *,
    now: float | None = None,
    max_age: int = SIGNATURE_MAX_AGE_SECONDS,
) -> str:
    """Check a request signature against each key in turn; return the key that matched.

    Raises SignatureError when the header is absent or malformed, outside the time window, or
    matches none of the keys. The raw body is tried first, then its canonical JSON form.
    """
    usable = [k for k in keys if k]
    if not usable:
        raise SignatureError("no signing key is configured to verify the request signature")
    if not header:
        raise SignatureError("the request is not signed (no X-Inngest-Signature header)")
    timestamp, given = parse_signature(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > max_age:
        raise SignatureError("the request signature has expired (older than 5 minutes)")
    candidates = [body]
    for key in usable:
        for candidate in candidates:
            if hmac.compare_digest(_mac(candidate, key, timestamp), given):
                return key
        if len(candidates) == 1:
            try:
                canonical = canonical_json(safejson.loads(body)) if body else body
            except ValueError:
                canonical = body
            if canonical != body:
                candidates.append(canonical)
                if hmac.compare_digest(_mac(canonical, key, timestamp), given):
                    return key
    raise SignatureError("the request signature does not match the signing key")
