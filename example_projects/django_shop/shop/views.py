"""The shop's pages and its small JSON API."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from shop.models import Order, Product
from shop.services import OrderError, place_order


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    products = Product.objects.order_by("sku")
    orders = Order.objects.order_by("-pk")[:10]
    return render(request, "shop/index.html", {"products": products, "orders": orders})


@require_POST
def order_form(request: HttpRequest) -> HttpResponse:
    """The HTML form: one quantity field per product (``qty-<sku>``)."""
    quantities = {
        key.removeprefix("qty-"): int(value or 0)
        for key, value in request.POST.items()
        if key.startswith("qty-") and (value or "0").isdigit()
    }
    try:
        order = place_order(request.POST.get("email", ""), quantities)
    except OrderError as error:
        products = Product.objects.order_by("sku")
        context = {"products": products, "orders": Order.objects.order_by("-pk")[:10], "error": str(error)}
        return render(request, "shop/index.html", context, status=400)
    return redirect("order-detail", order_id=order.pk)


@require_GET
def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    order = get_object_or_404(Order, pk=order_id)
    return render(request, "shop/order.html", {"order": order})


def order_json(order: Order) -> dict[str, Any]:
    return {
        "id": order.pk,
        "email": order.email,
        "status": order.status,
        "total_cents": order.total_cents,
        "lines": [{"sku": line.product.sku, "quantity": line.quantity} for line in order.lines.all()],
        "payments": [
            {"attempt": p.attempt, "captured": p.captured, "error": p.error}
            for p in order.payments.order_by("pk")
        ],
        "messages": [m.kind for m in order.messages.order_by("pk")],
    }


@csrf_exempt
@require_http_methods(["POST"])
async def api_place_order(request: HttpRequest) -> JsonResponse:
    """An async view: ``POST /api/orders`` with ``{"email": ..., "items": {"<sku>": <quantity>}}``.

    The order is written in a transaction (in a thread, as Django's ORM is sync) and its event goes
    out once that transaction has committed and this response is a success.
    """
    try:
        body = json.loads(request.body or b"{}")
        order = await sync_to_async(place_order)(str(body.get("email", "")), dict(body.get("items") or {}))
    except (ValueError, TypeError, AttributeError) as error:  # OrderError is a ValueError
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse({"order_id": order.pk, "status": order.status}, status=201)


@require_GET
def api_order(request: HttpRequest, order_id: int) -> JsonResponse:
    order = get_object_or_404(Order.objects.prefetch_related("lines__product"), pk=order_id)
    return JsonResponse(order_json(order))


@require_GET
def api_products(request: HttpRequest) -> JsonResponse:
    return JsonResponse({p.sku: {"name": p.name, "stock": p.stock} for p in Product.objects.order_by("sku")})
