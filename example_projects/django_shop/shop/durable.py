"""The shop's durable functions, found by eagerstep's discovery (each installed app's ``durable.py``).

process-order: reserve stock, charge (the simulated gateway fails the first attempt, so the step is
retried), send the receipt, sleep, send a follow-up. If the run fails for good (e.g. out of stock),
``cancel_order`` runs: the order is cancelled and the customer told.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

import eagerstep
from eagerstep.integrations.django import get_client
from shop.models import Message, Order, Payment, Product

log = logging.getLogger("shop")
client = get_client()  # the project's client, configured from settings.EAGERSTEP


class PaymentGatewayError(Exception):
    """The (simulated) payment provider did not answer; a retry usually works."""


def reserve_stock(order_id: int) -> dict[str, int]:
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        reserved: dict[str, int] = {}
        for line in order.lines.select_related("product"):
            taken = Product.objects.filter(pk=line.product_id, stock__gte=line.quantity).update(
                stock=F("stock") - line.quantity
            )
            if not taken:
                # Retrying will not create stock: fail the run now (cancel_order takes over).
                raise eagerstep.NonRetriableError(f"{line.product.sku} is out of stock")
            reserved[line.product.sku] = line.quantity
        order.status = Order.Status.RESERVED
        order.save(update_fields=["status"])
    return reserved


def charge(order_id: int) -> dict[str, Any]:
    order = Order.objects.get(pk=order_id)
    attempt = order.payments.count() + 1
    if attempt == 1 and settings.SHOP_GATEWAY_FAILS_FIRST_CHARGE:
        Payment.objects.create(
            order=order, attempt=attempt, amount_cents=order.total_cents, error="gateway timeout"
        )
        log.info("order %s: the payment gateway timed out (attempt %d)", order_id, attempt)
        raise PaymentGatewayError("the payment gateway timed out")
    with transaction.atomic():
        payment = Payment.objects.create(
            order=order, attempt=attempt, amount_cents=order.total_cents, captured=True
        )
        Order.objects.filter(pk=order_id).update(status=Order.Status.PAID)
    return {"payment_id": payment.pk, "attempt": attempt, "amount_cents": payment.amount_cents}


def send_message(order_id: int, kind: str, subject: str) -> int:
    try:
        message = Message.objects.create(order_id=order_id, kind=kind, subject=subject)
    except IntegrityError:  # already sent (e.g. a retried step after the row was written)
        message = Message.objects.get(order_id=order_id, kind=kind)
    return message.pk


def set_status(order_id: int, status: str) -> str:
    Order.objects.filter(pk=order_id).update(status=status)
    return status


def cancel_order(ctx: eagerstep.Context) -> None:
    """on_failure of process-order: give the stock back (if it was taken) and tell the customer."""
    original = ctx.event.data["event"]["data"]
    order_id = int(original["order_id"])

    def release() -> str:
        with transaction.atomic():
            order = Order.objects.select_for_update().get(pk=order_id)
            if order.status in (Order.Status.RESERVED, Order.Status.PAID):
                for line in order.lines.all():
                    Product.objects.filter(pk=line.product_id).update(stock=F("stock") + line.quantity)
            order.status = Order.Status.CANCELLED
            order.save(update_fields=["status"])
        return str(order.status)

    ctx.step.run("release-stock", release)
    ctx.step.run("tell-customer", send_message, order_id, Message.Kind.CANCELLED, "Your order was cancelled")


@client.function(
    id="process-order",
    trigger=eagerstep.Event("shop/order.placed"),
    retries=3,
    on_failure=cancel_order,
)
def process_order(ctx: eagerstep.Context) -> dict[str, Any]:
    order_id = int(ctx.event.data["order_id"])
    reserved = ctx.step.run("reserve-stock", reserve_stock, order_id)
    payment = ctx.step.run("charge", charge, order_id)  # fails once, then succeeds on the retry
    ctx.step.run("send-receipt", send_message, order_id, Message.Kind.RECEIPT, "Your receipt")
    ctx.step.run("mark-receipt-sent", set_status, order_id, Order.Status.RECEIPT_SENT)
    ctx.step.sleep("wait-before-follow-up", settings.SHOP_FOLLOW_UP_DELAY)
    ctx.step.run("follow-up", send_message, order_id, Message.Kind.FOLLOW_UP, "How was your order?")
    ctx.step.run("complete", set_status, order_id, Order.Status.COMPLETED)
    return {"order_id": order_id, "reserved": reserved, "payment": payment}
