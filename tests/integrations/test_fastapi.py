"""The FastAPI router: Depends(get_client), the lifespan, the middleware and deferred sending."""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import pytest

if importlib.util.find_spec("fastapi") is None:
    pytest.skip("needs fastapi", allow_module_level=True)

from fastapi import FastAPI, HTTPException

import eagerstep
from eagerstep.integrations.fastapi import ClientDep, EagerStepMiddleware, lifespan, router
from tests.http import functions
from tests.http.conftest import dev_settings
from tests.support.orchestrator import RecordingOrchestrator

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.fastapi


@pytest.fixture(autouse=True)
def settings(orchestrator: RecordingOrchestrator) -> Any:
    functions.client.set_settings_source(dev_settings(orchestrator).get)
    yield
    functions.client.set_settings_source(None)


def add_routes(app: FastAPI) -> None:
    @app.get("/whoami")
    def whoami(client: ClientDep) -> dict[str, str]:
        return {"app_id": client.app_id}

    @app.post("/orders/{mode}")
    async def order(mode: str, client: ClientDep) -> dict[str, Any]:
        ids = await client.send_async({"name": "shop/order.created", "data": {"mode": mode}})
        if mode == "fail":
            raise HTTPException(409, "conflict")
        return {"ids": ids}


def test_depends_get_client_gives_the_router_client() -> None:
    app = FastAPI()
    app.include_router(router(functions.client, functions.FUNCTIONS), prefix="/api/inngest")
    add_routes(app)
    with TestClient(app) as client:
        assert client.get("/whoami").json() == {"app_id": "conformance"}
        assert client.get("/api/inngest").status_code == 200


def test_explicit_lifespan_for_older_fastapi() -> None:
    app = FastAPI(lifespan=lifespan)
    app.include_router(router(functions.client, functions.FUNCTIONS), prefix="/api/inngest")
    add_routes(app)
    with TestClient(app) as client:
        assert client.get("/whoami").json() == {"app_id": "conformance"}


def test_middleware_picks_the_client_when_there_are_several() -> None:
    other = eagerstep.Client(app_id="other")
    app = FastAPI()
    app.include_router(router(functions.client, functions.FUNCTIONS), prefix="/api/inngest")
    app.include_router(router(other, []), prefix="/api/other")
    app.add_middleware(EagerStepMiddleware, client=other)
    add_routes(app)
    with TestClient(app) as client:
        assert client.get("/whoami").json() == {"app_id": "other"}


def test_deferred_events_follow_the_response(orchestrator: RecordingOrchestrator) -> None:
    app = FastAPI()
    app.include_router(router(functions.client, functions.FUNCTIONS), prefix="/api/inngest")
    app.add_middleware(EagerStepMiddleware, client=functions.client, defer_events=True)
    add_routes(app)
    with TestClient(app) as client:
        assert client.post("/orders/fail").status_code == 409
        assert client.post("/orders/ok").json() == {"ids": []}
    calls = orchestrator.wait_for_calls("/e/", 1)
    assert [event["data"]["mode"] for call in calls for event in call.json] == ["ok"]


def test_without_deferral_events_go_at_once(orchestrator: RecordingOrchestrator) -> None:
    app = FastAPI()
    app.add_middleware(EagerStepMiddleware, client=functions.client)
    add_routes(app)
    with TestClient(app) as client:
        assert len(client.post("/orders/ok").json()["ids"]) == 1
    assert len(orchestrator.calls_to("/e/")) == 1
