"""A few products to order."""

from django.db import migrations

PRODUCTS = [
    ("MUG-01", "Enamel mug", 1200, 50),
    ("TEE-01", "T-shirt", 2500, 30),
    ("SOCK-01", "Socks (pair)", 900, 100),
    ("POSTER-01", "Limited poster", 4000, 2),
]


def seed(apps, schema_editor):  # type: ignore[no-untyped-def]
    Product = apps.get_model("shop", "Product")
    for sku, name, price, stock in PRODUCTS:
        Product.objects.update_or_create(
            sku=sku, defaults={"name": name, "price_cents": price, "stock": stock}
        )


def unseed(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("shop", "Product").objects.filter(sku__in=[p[0] for p in PRODUCTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
