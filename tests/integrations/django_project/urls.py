from django.urls import include, path

from tests.integrations.django_project import views

urlpatterns = [
    path("api/inngest", include("eagerstep.integrations.django.urls")),
    path(
        "api/inngest-async", include("eagerstep.integrations.django.async_urls", namespace="eagerstep-async")
    ),
    path("orders", views.create_order),
    path("orders-async", views.create_order_async),
]
