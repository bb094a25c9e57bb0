"""The Django views: function views (``def`` for WSGI, ``async def`` for ASGI) and class-based ones."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views import View

from eagerstep.core.client import Client
from eagerstep.integrations.django.endpoints import DurableEndpointMixin, durable_endpoint
from tests.endpoints.apps import Work


def urlconf(client: Client, work: Work, *, is_async: bool) -> Any:
    """A URLconf object (Django accepts any object with ``urlpatterns`` as ROOT_URLCONF)."""

    def receipt(request: HttpRequest, n: int, charged: int) -> HttpResponse:
        body = work.order(n, request.GET.get("q", ""), request.body, charged)
        response = JsonResponse(body, status=201)
        response["X-Order"] = str(n)
        return response

    @durable_endpoint(client, id="order", retries=2)
    def order(request: HttpRequest, n: int, ctx: Any) -> HttpResponse:
        price = ctx.step.run("price", work.step, "price", n * 10)
        charged = ctx.step.run("charge", work.step, "charge", price + 1)
        ctx.step.run("mail", work.step, "mail", True)
        return receipt(request, n, charged)

    @durable_endpoint(client, id="order", retries=2)
    async def order_async(request: HttpRequest, n: int, ctx: Any) -> HttpResponse:
        price = await ctx.step.run("price", work.step, "price", n * 10)
        charged = await ctx.step.run("charge", work.step, "charge", price + 1)
        await ctx.step.run("mail", work.step, "mail", True)
        return receipt(request, n, charged)

    class Fatal(DurableEndpointMixin, View):
        durable_endpoint_options = {"client": client, "id": "fatal"}

        def post(self, request: HttpRequest, ctx: Any) -> HttpResponse:
            ctx.step.run("price", work.step, "price", 1)
            ctx.step.run("fatal", work.fatal)
            return JsonResponse({})

    class FatalAsync(DurableEndpointMixin, View):
        durable_endpoint_options = {"client": client, "id": "fatal"}

        async def post(self, request: HttpRequest, ctx: Any) -> HttpResponse:
            await ctx.step.run("price", work.step, "price", 1)
            await ctx.step.run("fatal", work.fatal)
            return HttpResponse(json.dumps({}))

    class URLConf:  # hashable, as Django's resolver cache needs
        urlpatterns = [
            path("shop/orders/<int:n>", order_async if is_async else order),
            path("shop/fatal", (FatalAsync if is_async else Fatal).as_view()),
        ]

    return URLConf
