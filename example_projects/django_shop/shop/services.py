"""Placing an order: one transaction, and the event that starts process-order sent on commit."""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction

from eagerstep.integrations.django import get_client
from shop.models import Order, OrderLine, Product

ORDER_PLACED = "shop/order.placed"


class OrderError(ValueError):
    """The order cannot be placed (unknown product, bad quantity); nothing was saved or sent."""


def place_order(email: str, quantities: Mapping[str, int]) -> Order:
    if not email or "@" not in email:
        raise OrderError("a valid email is required")
    wanted = {sku: int(qty) for sku, qty in quantities.items() if int(qty) > 0}
    if not wanted:
        raise OrderError("order at least one product")
    with transaction.atomic():
        order = Order.objects.create(email=email)
        # With EAGERSTEP["DEFER_EVENTS"], this event is held until the transaction commits; if
        # anything below raises, the order is rolled back and the event is never sent.
        get_client().send({"name": ORDER_PLACED, "data": {"order_id": order.pk}})
        total = 0
        for sku, quantity in sorted(wanted.items()):
            try:
                product = Product.objects.get(sku=sku)
            except Product.DoesNotExist:
                raise OrderError(f"no product with sku {sku!r}") from None
            OrderLine.objects.create(
                order=order, product=product, quantity=quantity, price_cents=product.price_cents
            )
            total += quantity * product.price_cents
        order.total_cents = total
        order.save(update_fields=["total_cents"])
    return order
