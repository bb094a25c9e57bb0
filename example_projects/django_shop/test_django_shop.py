"""The Django shop end to end: `manage.py migrate`, `manage.py runserver` and `eagerstep dev` as
processes (Django settings belong to those processes, not to the test run), real HTTP throughout."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("django")

HERE = Path(__file__).resolve().parent
PROCESS_ORDER = "django-shop-process-order"
ALL_STEPS = [
    "reserve-stock",
    "charge",
    "send-receipt",
    "mark-receipt-sent",
    "wait-before-follow-up",
    "follow-up",
    "complete",
]

pytestmark = [pytest.mark.django, pytest.mark.engine, pytest.mark.timeout(90)]


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=HERE, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def settings(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        # Explicit: the test process may carry another project's DJANGO_SETTINGS_MODULE.
        "DJANGO_SETTINGS_MODULE": "shop_project.settings",
        "INNGEST_DEV": engine.url,
        "SHOP_DATABASE": str(tmp_path_factory.mktemp("shop") / "shop.sqlite3"),
        "SHOP_FOLLOW_UP_DELAY": "1h",  # the tests fire the timer instead of waiting
    }


@pytest.fixture(scope="module")
def shop(engine: Any, serve: Any, settings: dict[str, str], child_env: Any) -> Any:
    migrated = manage(child_env(**settings), "migrate", "--no-input")
    assert "Applying shop.0002_seed_products... OK" in migrated
    server = serve(
        "django-shop",
        lambda port: [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=HERE,
        env=settings,
        health_path="/api/products",
    )
    functions = engine.sync(server.url + "/api/inngest")
    assert set(functions) == {PROCESS_ORDER, PROCESS_ORDER + "-failure"}
    return server


def order(shop: Any, order_id: int) -> dict[str, Any]:
    reply = httpx.get(f"{shop.url}/api/orders/{order_id}", timeout=10)
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


def runs_for_order(engine: Any, order_id: int, function_id: str = PROCESS_ORDER) -> list[dict[str, Any]]:
    found = []
    for run in engine.http.get("/v1/runs", params={"limit": 1000}).json()["data"]:
        if run["function_id"] != function_id:
            continue
        event = engine.http.get(f"/v1/events/{run['event_id']}").json()["data"]
        data = event["data"]
        if function_id.endswith("-failure"):
            data = data["event"]["data"]
        if data.get("order_id") == order_id:
            found.append(run)
    return found


def run_of_order(engine: Any, order_id: int, function_id: str = PROCESS_ORDER) -> dict[str, Any]:
    (run,) = engine.wait(lambda: runs_for_order(engine, order_id, function_id))
    return dict(engine.run(run["run_id"]))


def sleeping(engine: Any, run_id: str) -> bool:
    return any(timer["kind"] == "sleep" for timer in engine.timers(run_id))


def test_system_checks_are_clean(shop: Any) -> None:
    # runserver runs `manage.py check` first, eagerstep's checks included (settings, functions, keys).
    assert "System check identified no issues" in shop.log.read_text()


def test_order_from_the_async_api_runs_every_step(engine: Any, shop: Any) -> None:
    reply = httpx.post(
        shop.url + "/api/orders", json={"email": "ada@example.com", "items": {"MUG-01": 2}}, timeout=10
    )
    assert reply.status_code == 201, reply.text
    order_id = reply.json()["order_id"]
    run = run_of_order(engine, order_id)

    # Up to the sleep: stock reserved, the charge failed once and was retried, the receipt sent.
    engine.wait_run(run["run_id"], lambda r: sleeping(engine, r["run_id"]))
    placed = order(shop, order_id)
    assert placed["status"] == "receipt_sent"
    assert [(p["attempt"], p["captured"]) for p in placed["payments"]] == [(1, False), (2, True)]
    assert placed["payments"][0]["error"] == "gateway timeout"
    assert placed["messages"] == ["receipt"]

    # Skip the hour: fire the sleep's timer now.
    assert engine.fire_timers(run["run_id"]) == 1
    done = engine.wait_run(run["run_id"])
    assert done["status"] == "Completed", done
    assert engine.step_names(done) == ALL_STEPS
    assert done["output"]["payment"]["attempt"] == 2
    assert done["output"]["reserved"] == {"MUG-01": 2}
    finished = order(shop, order_id)
    assert finished["status"] == "completed"
    assert finished["messages"] == ["receipt", "follow_up"]


def test_order_from_the_html_form(engine: Any, shop: Any) -> None:
    with httpx.Client(base_url=shop.url, timeout=10) as browser:
        page = browser.get("/")
        assert page.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token is not None
        posted = browser.post(
            "/orders/",
            data={"csrfmiddlewaretoken": token.group(1), "email": "bo@example.com", "qty-SOCK-01": "3"},
            headers={"Referer": shop.url + "/"},
        )
    assert posted.status_code == 302, posted.text
    order_id = int(posted.headers["location"].rstrip("/").rsplit("/", 1)[1])
    run = run_of_order(engine, order_id)
    engine.wait_run(run["run_id"], lambda r: sleeping(engine, r["run_id"]))
    engine.fire_timers(run["run_id"])
    assert engine.wait_run(run["run_id"])["status"] == "Completed"
    assert order(shop, order_id)["status"] == "completed"
    assert "completed" in httpx.get(f"{shop.url}/orders/{order_id}/", timeout=10).text


def test_out_of_stock_fails_the_run_and_cancels_the_order(engine: Any, shop: Any) -> None:
    reply = httpx.post(
        shop.url + "/api/orders", json={"email": "di@example.com", "items": {"POSTER-01": 3}}, timeout=10
    )
    order_id = reply.json()["order_id"]
    run = engine.wait_run(run_of_order(engine, order_id)["run_id"])
    assert run["status"] == "Failed"
    assert "out of stock" in run["error"]["message"]
    failure = engine.wait_run(run_of_order(engine, order_id, PROCESS_ORDER + "-failure")["run_id"])
    assert failure["status"] == "Completed"
    cancelled = order(shop, order_id)
    assert cancelled["status"] == "cancelled"
    assert cancelled["payments"] == []
    assert cancelled["messages"] == ["cancelled"]
    stock = httpx.get(shop.url + "/api/products", timeout=10).json()
    assert stock["POSTER-01"]["stock"] == 2


def test_durable_endpoint_answers_through_the_redirect_after_a_failing_step(engine: Any, shop: Any) -> None:
    body = {"email": "ann@example.com", "budget_cents": 100_000}
    first = httpx.post(f"{shop.url}/api/recommendations", json=body, timeout=30)
    assert first.status_code == 302, first.text  # the stock lookup failed once: handed to the engine
    final = httpx.get(first.headers["location"], timeout=30)
    assert final.status_code == 201, final.text
    assert final.json()["email"] == "ann@example.com" and final.json()["skus"]
    stats = httpx.get(f"{shop.url}/api/recommendations/stats", timeout=10).json()
    assert stats == {"model": 1, "lookup": 2, "write": 1}  # the model step ran once


def test_the_shops_own_unit_tests_pass(child_env: Any, tmp_path: Path) -> None:
    """shop/tests.py: Django TestCases driving process-order with eagerstep.testing (no engine process)."""
    env = child_env(
        DJANGO_SETTINGS_MODULE="shop_project.settings", SHOP_DATABASE=str(tmp_path / "unit.sqlite3")
    )
    out = manage(env, "test", "shop", "--no-input")
    assert re.search(r"Ran 4 tests in [\d.]+s\s+OK", out), out
