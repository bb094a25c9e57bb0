from __future__ import annotations

from django.db import models


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    price_cents = models.PositiveIntegerField()
    stock = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


class Order(models.Model):
    class Status(models.TextChoices):
        PLACED = "placed"
        RESERVED = "reserved"
        PAID = "paid"
        RECEIPT_SENT = "receipt_sent"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    email = models.EmailField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PLACED)
    total_cents = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"order #{self.pk} ({self.status})"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, related_name="lines", on_delete=models.CASCADE)
    product = models.ForeignKey(Product, related_name="+", on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField()
    price_cents = models.PositiveIntegerField()


class Payment(models.Model):
    """One attempt to charge an order (a declined attempt stays on record)."""

    order = models.ForeignKey(Order, related_name="payments", on_delete=models.CASCADE)
    attempt = models.PositiveIntegerField()
    amount_cents = models.PositiveIntegerField()
    captured = models.BooleanField(default=False)
    error = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


class Message(models.Model):
    """Mail sent to a customer (stands in for a mail provider)."""

    class Kind(models.TextChoices):
        RECEIPT = "receipt"
        FOLLOW_UP = "follow_up"
        CANCELLED = "cancelled"

    order = models.ForeignKey(Order, related_name="messages", on_delete=models.CASCADE)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    subject = models.CharField(max_length=200)
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["order", "kind"], name="one_message_per_kind")]
