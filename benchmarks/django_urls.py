"""URLs of the benchmark Django project served over WSGI (the sync view)."""

from django.urls import include, path

urlpatterns = [path("api/inngest", include("eagerstep.integrations.django.urls"))]
