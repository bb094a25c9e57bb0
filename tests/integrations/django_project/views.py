"""Views that send events, for the deferred-sending tests."""

from __future__ import annotations

import json

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse

from eagerstep.integrations.django import get_client


def _ensure_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, note TEXT)")


def create_order(request: HttpRequest) -> HttpResponse:
    """?mode=ok | fail (500 after sending) | rollback (atomic block rolled back) | atomic (committed)."""
    _ensure_table()
    mode = request.GET.get("mode", "ok")
    client = request.eagerstep  # type: ignore[attr-defined]
    assert client is get_client()
    event = {"name": "shop/order.created", "data": {"mode": mode}}
    if mode in ("atomic", "rollback"):
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("INSERT INTO orders (note) VALUES (%s)", [mode])
                ids = client.send(event)
                if mode == "rollback":
                    raise RuntimeError("roll back")
        except RuntimeError:
            ids = []
    else:
        ids = client.send(event)
    if mode == "fail":
        return HttpResponse("failed", status=500)
    return JsonResponse({"ids": ids})


async def create_order_async(request: HttpRequest) -> HttpResponse:
    client = request.eagerstep  # type: ignore[attr-defined]
    ids = await client.send_async({"name": "shop/order.created", "data": {"mode": "async"}})
    status = 500 if request.GET.get("mode") == "fail" else 200
    return HttpResponse(json.dumps({"ids": ids}), status=status, content_type="application/json")
