"""The Django project of the durable-endpoint benchmark (settings come from
``durable_endpoint_app.py``): the same five steps as a plain view, as a durable endpoint, and as an
event-triggered function, served by Django's sync view."""

from __future__ import annotations

import os
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import include, path

import eagerstep
from benchmarks.durable_endpoint_app import BATCHED, STEPS, make_client, work
from eagerstep.integrations.django.endpoints import durable_endpoint

client = make_client(os.environ["EAGERSTEP_BENCH_ENGINE_URL"])


@client.function(id="five-steps", trigger=eagerstep.Event("bench/five"))
def five_steps(ctx: eagerstep.Context) -> int:
    return sum(ctx.step.run(f"s{i}", work, i)["value"] for i in range(STEPS))


FUNCTIONS = [five_steps]


def plain(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"total": sum(work(i)["value"] for i in range(STEPS))})


@durable_endpoint(client, id="five-steps-endpoint")
def durable(request: HttpRequest, ctx: eagerstep.Context) -> Any:
    return JsonResponse({"total": sum(ctx.step.run(f"s{i}", work, i)["value"] for i in range(STEPS))})


@durable_endpoint(client, id="five-steps-batched", checkpointing=BATCHED)
def durable_batched(request: HttpRequest, ctx: eagerstep.Context) -> Any:
    return JsonResponse({"total": sum(ctx.step.run(f"s{i}", work, i)["value"] for i in range(STEPS))})


urlpatterns = [
    path("api/inngest", include("eagerstep.integrations.django.urls")),
    path("plain", plain),
    path("durable", durable),
    path("durable-batched", durable_batched),
]
