"""The shop's pages and its small JSON API."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from eagerstep import Context
from eagerstep.integrations.django.endpoints import durable_endpoint
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


# A durable endpoint: the caller waits for recommendations in the same request while a (simulated)
# model call, a stock lookup and a write run as steps. The lookup fails the first time; the caller is
# then redirected to the run's output, which answers once the engine has retried the lookup. The
# model call is not repeated. (The counters are per process: fine for runserver and the tests.)
STEP_RUNS: Counter[str] = Counter()
SAVED: dict[str, list[str]] = {}


def rank_products(budget_cents: int) -> list[str]:
    """Stands in for a model call: slow and costly in real life, so it must run once."""
    STEP_RUNS["model"] += 1
    return [p.sku for p in Product.objects.filter(price_cents__lte=budget_cents).order_by("-price_cents")]


def in_stock(skus: list[str]) -> list[str]:
    STEP_RUNS["lookup"] += 1
    if STEP_RUNS["lookup"] == 1:
        raise ConnectionError("the warehouse service timed out")
    stocked = set(Product.objects.filter(sku__in=skus, stock__gt=0).values_list("sku", flat=True))
    return [sku for sku in skus if sku in stocked]


def save_recommendation(email: str, skus: list[str]) -> int:
    STEP_RUNS["write"] += 1
    SAVED[email] = skus
    return len(skus)


@durable_endpoint(id="recommend")
@csrf_exempt  # an API for scripts; the orchestrator's calls back are signed instead
def api_recommend(request: HttpRequest, ctx: Context) -> JsonResponse:
    """``POST /api/recommendations`` with ``{"email": ..., "budget_cents": ...}``."""
    payload = json.loads(request.body or b"{}")
    email, budget = str(payload.get("email", "")), int(payload.get("budget_cents", 0))
    ranked = ctx.step.run("model", rank_products, budget)
    available = ctx.step.run("lookup", in_stock, ranked)
    ctx.step.run("write", save_recommendation, email, available)
    return JsonResponse({"email": email, "skus": available}, status=201)


@require_GET
def api_recommend_stats(request: HttpRequest) -> JsonResponse:
    return JsonResponse(dict(STEP_RUNS))
