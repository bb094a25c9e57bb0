"""``path("api/inngest", include("eagerstep.integrations.django.async_urls"))``: the async view, for ASGI."""

from django.urls import path

from eagerstep.integrations.django.views import serve_async

app_name = "eagerstep"
urlpatterns = [path("", serve_async, name="serve")]
