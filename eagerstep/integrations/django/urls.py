"""``path("api/inngest", include("eagerstep.integrations.django.urls"))``: the sync view, for WSGI."""

from django.urls import path

from eagerstep.integrations.django.views import serve

app_name = "eagerstep"
urlpatterns = [path("", serve, name="serve")]
