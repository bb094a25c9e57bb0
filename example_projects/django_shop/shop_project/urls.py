from django.urls import include, path

urlpatterns = [
    # The serve endpoint the orchestrator calls (the sync view; under ASGI include
    # "eagerstep.integrations.django.async_urls" instead).
    path("api/inngest", include("eagerstep.integrations.django.urls")),
    path("", include("shop.urls")),
]
