"""The event log as the server keeps it: seeded event ids and one receipt per accepted event.

``x-inngest-event-id-seed: <millis>,<base64 of 10 bytes>`` makes a send's event ids deterministic:
the i-th event (1-based) of the request gets the ULID of ``millis`` and the entropy with ``i``
added to its last four bytes (big-endian), as the Inngest server's ``event.SeededIDFromString``
does. The SDKs send the same seed on every retry of one ``send``, so a retry after a lost response
yields the same ids, and the engine, which never stores an event id twice, starts no duplicate runs.

Every accepted event also gets a receipt row, duplicates included: ``GET /v1/events`` lists
receipts, as the server lists every event it received (``internal_id`` repeats for a retried send).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ulid import ULID

from eagerstep.engine.model import _iso
from eagerstep.engine.store import Store, loads

_INSERT_RECEIPT = "INSERT INTO event_receipts(event_id, name, received_at) VALUES (?,?,?)"


def seeded_id(seed: str | None, index: int) -> str | None:
    """The id the server derives from an ``x-inngest-event-id-seed`` value for the ``index``-th
    (1-based) event of a request; None when the seed is absent or malformed (the server then
    ignores it too)."""
    if not seed:
        return None
    parts = seed.split(",")
    if len(parts) != 2:
        return None
    try:
        millis = int(parts[0])
        entropy = bytearray(base64.b64decode(parts[1], validate=True))
    except (ValueError, binascii.Error):
        return None
    if millis <= 0 or millis >= 1 << 48 or len(entropy) != 10:
        return None
    counter = (int.from_bytes(entropy[6:10], "big") + index) & 0xFFFFFFFF
    entropy[6:10] = counter.to_bytes(4, "big")
    return str(ULID.from_bytes(millis.to_bytes(6, "big") + bytes(entropy)))


def record_receipt(db: Store, event: dict[str, Any], now: float) -> None:
    db.execute_deferred(_INSERT_RECEIPT, (event["id"], event["name"], now))


def list_events(db: Store, name: str | None, limit: int) -> list[dict[str, Any]]:
    """``GET /v1/events``: received events, newest first, in the server's shape."""
    sql = "SELECT r.event_id, r.received_at, e.body FROM event_receipts r JOIN events e ON e.id = r.event_id"
    params: tuple[Any, ...] = ()
    if name:
        sql += " WHERE r.name=?"
        params = (name,)
    rows = db.all(sql + " ORDER BY r.seq DESC LIMIT ?", (*params, limit))
    events = []
    for event_id, received_at, body in rows:
        event = loads(body)
        events.append(
            {
                "internal_id": event_id,
                "received_at": _iso(received_at),
                "id": event_id,
                "name": event.get("name"),
                "data": event.get("data"),
                "user": event.get("user") or {},
                "ts": event.get("ts"),
                **({"v": event["v"]} if event.get("v") else {}),
            }
        )
    return events
