"""The app the engine benchmark drives: eagerstep on FastAPI/uvicorn, 3- and 10-step functions,
each in checkpointing and standard mode. Usage: python benchmarks/engine_bench_app.py PORT ENGINE_URL"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

import eagerstep
from eagerstep.integrations.fastapi import router


def build(engine_url: str) -> FastAPI:
    client = eagerstep.Client(app_id="bench", dev=engine_url)
    functions: list[eagerstep.Function[Any]] = []
    for steps in (3, 10):
        for checkpointing in (True, False):
            mode = "ckpt" if checkpointing else "std"

            def make(n: int) -> Any:
                async def handler(ctx: eagerstep.AsyncContext) -> dict[str, int]:
                    total = 0
                    for i in range(n):
                        total += await ctx.step.run(f"s{i}", lambda i=i: i)
                    return {"total": total}

                return handler

            fn = client.function(
                id=f"steps{steps}-{mode}",
                trigger=eagerstep.Event(f"bench/steps{steps}-{mode}"),
                retries=0,
                checkpointing=checkpointing,
            )(make(steps))
            functions.append(fn)
    app = FastAPI()
    app.include_router(router(client, functions), prefix="/api/inngest")
    return app


if __name__ == "__main__":
    port, engine = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(build(engine), host="127.0.0.1", port=port, log_level="warning", access_log=False)
