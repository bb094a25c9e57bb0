"""An async pipeline in the shape of an AI workflow, served by FastAPI.

A support ticket arrives; the pipeline classifies it, retrieves context, drafts a reply, invokes a
policy-check sub-function, waits for a human to approve the draft, then sends it. Each step is an
``async def``; every step's latency is visible through ``GET /runs/{run_id}`` (or the dashboard).

Run it (with ``eagerstep dev -u http://127.0.0.1:8000/api/inngest`` in another terminal)::

    INNGEST_DEV=1 uvicorn main:app --port 8000
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import eagerstep
from eagerstep.integrations.fastapi import ClientDep, router
from eagerstep.integrations.fastapi.endpoints import durable_endpoint

client = eagerstep.Client(app_id="ai-pipeline")

#: How long the simulated model calls take (seconds); the tests set it to 0 for speed.
MODEL_LATENCY = float(os.environ.get("PIPELINE_MODEL_LATENCY", "0.02"))


async def fake_model(prompt: str, *, scale: float = 1.0) -> str:
    """Stands in for a call to a language model: some latency, a deterministic answer."""
    await asyncio.sleep(MODEL_LATENCY * scale)
    return prompt


def timed(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


# ---------------------------------------------------------------------------------------------
# The sub-function: a policy check, invoked by the pipeline (and usable on its own).


@client.function(id="check-policy", trigger=eagerstep.Event("support/policy.check"), retries=2)
async def check_policy(ctx: eagerstep.AsyncContext) -> dict[str, Any]:
    text = str(ctx.event.data.get("text", ""))

    async def scan() -> dict[str, Any]:
        started = time.perf_counter()
        await fake_model(text, scale=0.5)
        flags = [word for word in ("refund", "lawyer", "password") if word in text.lower()]
        return {"flags": flags, "ms": timed(started)}

    result = await ctx.step.run("scan", scan)
    return {"ok": not result["flags"], "flags": result["flags"]}


# ---------------------------------------------------------------------------------------------
# The pipeline.


@client.function(
    id="answer-ticket",
    trigger=eagerstep.Event("support/ticket.received"),
    retries=3,
)
async def answer_ticket(ctx: eagerstep.AsyncContext) -> dict[str, Any]:
    ticket_id = str(ctx.event.data["ticket_id"])
    text = str(ctx.event.data.get("text", ""))

    async def classify() -> dict[str, Any]:
        started = time.perf_counter()
        await fake_model(text)
        topic = "billing" if any(w in text.lower() for w in ("invoice", "charge", "refund")) else "general"
        return {"topic": topic, "ms": timed(started)}

    async def retrieve(topic: str) -> dict[str, Any]:
        started = time.perf_counter()
        await fake_model(topic, scale=0.5)
        return {"documents": [f"kb/{topic}/faq.md", f"kb/{topic}/policies.md"], "ms": timed(started)}

    async def draft(topic: str, documents: list[str]) -> dict[str, Any]:
        started = time.perf_counter()
        await fake_model(text, scale=2.0)
        body = f"Hello! About your {topic} question: see {', '.join(documents)}."
        if "refund" in text.lower():
            body += " We have passed your refund request on."
        return {"text": body, "ms": timed(started)}

    classified = await ctx.step.run("classify", classify)
    context = await ctx.step.run("retrieve-context", retrieve, classified["topic"])
    reply = await ctx.step.run("draft-reply", draft, classified["topic"], context["documents"])

    # A sub-function, run by the orchestrator as its own run; its result comes back here.
    policy = await ctx.step.invoke("check-policy", function=check_policy, data={"text": reply["text"]})
    if not policy["ok"]:
        return {"ticket_id": ticket_id, "status": "escalated", "flags": policy["flags"]}

    # A human approves (or rejects) the draft: POST /tickets/{ticket_id}/review.
    decision = await ctx.step.wait_for_event(
        "wait-for-approval",
        event="support/reply.reviewed",
        timeout=timedelta(hours=1),
        if_="async.data.ticket_id == event.data.ticket_id",
    )
    if decision is None or not decision.data.get("approved"):
        return {"ticket_id": ticket_id, "status": "not sent"}

    async def send_reply() -> dict[str, Any]:
        started = time.perf_counter()
        await asyncio.sleep(MODEL_LATENCY / 2)  # the mail provider
        return {"sent_to": f"customer-of-{ticket_id}", "ms": timed(started)}

    sent = await ctx.step.run("send-reply", send_reply)
    return {"ticket_id": ticket_id, "status": "sent", "reply": reply["text"], "sent_to": sent["sent_to"]}


# ---------------------------------------------------------------------------------------------
# The same five-step function twice: standard orchestration and checkpointing (used by `make demo`).


async def enrich(ctx: eagerstep.AsyncContext) -> dict[str, Any]:
    record = dict(ctx.event.data)

    async def stage(name: str, scale: float) -> dict[str, Any]:
        await fake_model(name, scale=scale)
        return {"stage": name}

    for name, scale in (("fetch", 0.5), ("clean", 0.25), ("embed", 1.0), ("score", 0.5), ("store", 0.25)):
        await ctx.step.run(name, stage, name, scale)
    return {"record": record.get("id"), "stages": 5}


enrich_standard = client.function(
    id="enrich-standard", trigger=eagerstep.Event("demo/enrich.standard"), checkpointing=False
)(enrich)
enrich_checkpointing = client.function(
    id="enrich-checkpointing", trigger=eagerstep.Event("demo/enrich.checkpointing"), checkpointing=True
)(enrich)

FUNCTIONS = [check_policy, answer_ticket, enrich_standard, enrich_checkpointing]

# ---------------------------------------------------------------------------------------------
# The web app.

app = FastAPI(title="AI pipeline (eagerstep example)")
app.include_router(router(client, FUNCTIONS), prefix="/api/inngest")


class Ticket(BaseModel):
    ticket_id: str
    text: str


class Review(BaseModel):
    approved: bool = True


@app.post("/tickets")
async def create_ticket(ticket: Ticket, client: ClientDep) -> dict[str, Any]:
    ids = await client.send_async({"name": "support/ticket.received", "data": ticket.model_dump()})
    return {"event_ids": ids}


@app.post("/tickets/{ticket_id}/review")
async def review_ticket(ticket_id: str, review: Review, client: ClientDep) -> dict[str, Any]:
    ids = await client.send_async(
        {"name": "support/reply.reviewed", "data": {"ticket_id": ticket_id, "approved": review.approved}}
    )
    return {"event_ids": ids}


# A durable endpoint: the caller waits for the suggestion in the same request. The lookup fails the
# first time; the caller is then redirected to the run's output, which answers once the engine has
# retried it. The model call before it is not repeated.
STEP_RUNS: Counter[str] = Counter()
SUGGESTIONS: dict[str, str] = {}


class Suggestion(BaseModel):
    ticket_id: str
    category: str
    suggestion: str


async def lookup_customer(ticket_id: str) -> dict[str, Any]:
    STEP_RUNS["lookup"] += 1
    if STEP_RUNS["lookup"] == 1:
        raise ConnectionError("the CRM timed out")
    return {"ticket_id": ticket_id, "tier": "gold"}


async def save_suggestion(ticket_id: str, text: str) -> bool:
    STEP_RUNS["write"] += 1
    SUGGESTIONS[ticket_id] = text
    return True


async def classify_once(text: str) -> str:
    STEP_RUNS["model"] += 1
    return "billing" if "invoice" in text.lower() else "general"


@app.post("/tickets/{ticket_id}/suggest", status_code=201, response_model=Suggestion)
@durable_endpoint(client, id="suggest-reply")
async def suggest_reply(ticket_id: str, ticket: Ticket, ctx: eagerstep.AsyncContext) -> dict[str, Any]:
    category = await ctx.step.run("model", classify_once, ticket.text)
    customer = await ctx.step.run("lookup", lookup_customer, ticket_id)
    text = f"[{customer['tier']}/{category}] Thanks, we are on it."
    await ctx.step.run("write", save_suggestion, ticket_id, text)
    return {"ticket_id": ticket_id, "category": category, "suggestion": text}


@app.get("/suggestions/stats")
async def suggestion_stats() -> dict[str, int]:
    return dict(STEP_RUNS)


@app.get("/events/{event_id}/runs")
async def event_runs(event_id: str, client: ClientDep) -> list[dict[str, Any]]:
    """The runs an event started, with each step's latency (read from the orchestrator)."""
    async with httpx.AsyncClient(base_url=client.settings.api_base_url, timeout=10) as http:
        response = await http.get(f"/v1/events/{event_id}/runs")
        if response.status_code != 200:
            raise HTTPException(response.status_code, response.text)
        runs = []
        for run in response.json()["data"]:
            detail = await http.get(f"/v1/runs/{run['run_id']}")
            runs.append(latency_view(detail.json()["data"]))
    return runs


def latency_view(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run["run_id"],
        "function": run["function_id"],
        "status": run["status"],
        "output": run.get("output"),
        "total_ms": run.get("duration_ms"),
        "steps": [
            {"step": s.get("name") or s["id"], "status": s["status"], "ms": s.get("duration_ms")}
            for s in run.get("steps", [])
        ],
    }
