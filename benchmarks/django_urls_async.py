"""URLs of the benchmark Django project served over ASGI (the async view)."""

from django.urls import include, path

urlpatterns = [path("api/inngest", include("eagerstep.integrations.django.async_urls"))]
