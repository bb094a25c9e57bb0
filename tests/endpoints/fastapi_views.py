"""The FastAPI views (a module without postponed annotations: FastAPI reads real ones)."""

from typing import Any, Optional

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel

from eagerstep.core.client import Client
from eagerstep.core.steps import AsyncContext, Context
from eagerstep.integrations.fastapi.endpoints import durable_endpoint
from tests.endpoints.apps import Work


class Note(BaseModel):
    note: Optional[str] = None  # noqa: UP045 - evaluated at runtime on Python 3.9 too


class Receipt(BaseModel):
    order: int
    total: int
    q: str
    note: Optional[str]  # noqa: UP045


def build(client: Client, work: Work) -> FastAPI:
    app = FastAPI()
    shop = APIRouter(prefix="/shop")

    @shop.post("/orders/{n}", status_code=201, response_model=Receipt)
    @durable_endpoint(client, id="order", retries=2)
    async def order(
        n: int, payload: Note, request: Request, response: Response, ctx: AsyncContext, q: str = ""
    ) -> Any:
        assert request.url.path == f"/shop/orders/{n}"
        response.headers["X-Order"] = str(n)
        price = await ctx.step.run("price", work.step, "price", n * 10)
        charged = await ctx.step.run("charge", work.step, "charge", price + 1)
        await ctx.step.run("mail", work.step, "mail", True)
        receipt = work.order(n, q, payload.model_dump_json().encode(), charged)
        return {**receipt, "extra": "dropped by the response model"}

    @shop.post("/fatal")
    @durable_endpoint(client, id="fatal")
    def fatal(ctx: Context) -> Any:
        ctx.step.run("price", work.step, "price", 1)
        ctx.step.run("fatal", work.fatal)
        return {}

    app.include_router(shop)
    return app
