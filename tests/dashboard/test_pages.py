"""The dashboard over HTTP (no browser): pages, fragments, JSON, static files, bad input, and the
traceback reader."""

from __future__ import annotations

import sysconfig
from typing import Any

import httpx
import pytest

from eagerstep.engine.dashboard import stacks
from tests.dashboard.showcase import Shop
from tests.engine.helpers import wait_for

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]


def test_a_sleeping_run_reads_running_for_not_none_ms(shop: Shop) -> None:
    event_id = shop.api.send("shop/cart.abandoned", {"cart": 1})
    run_id = wait_for(lambda: shop.api.runs_of(event_id))[0]["run_id"]
    wait_for(lambda: "wakes at" in shop.api.http.get(f"/runs/{run_id}").text)
    page = shop.api.http.get(f"/runs/{run_id}").text
    assert "running for" in page and "None" not in page
    fragment = shop.api.http.get(f"/runs/{run_id}?fragment=1").text
    assert fragment.startswith("<div class=headline>") and "<html" not in fragment
    detail: dict[str, Any] = shop.api.http.get(f"/dash/api/runs/{run_id}").json()["data"]
    sleep = next(s for s in detail["steps"] if s["name"] == "wait-a-day")
    assert sleep["status"] == "Sleeping" and sleep["op"] == "Sleep" and sleep["wakes_at"]
    assert shop.api.http.post(f"/v1/runs/{run_id}/cancel").status_code == 200


def test_counts_are_pluralised_and_the_static_files_are_served(shop: Shop) -> None:
    apps = shop.api.http.get("/apps").text
    assert "8 functions" in apps and "1 functions" not in apps
    css = shop.api.http.get("/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    script = shop.api.http.get("/static/dashboard.js")
    assert script.status_code == 200 and "text/javascript" in script.headers["content-type"]
    assert shop.api.http.get("/static/nope.js").status_code == 404


def test_unknown_ids_and_bad_filters_get_clear_errors(shop: Shop) -> None:
    missing = shop.api.http.get("/runs/NOPE")
    assert missing.status_code == 404 and "run NOPE not found" in missing.text
    assert shop.api.http.get("/events/NOPE").status_code == 404
    bad = shop.api.http.get("/dash/api/runs", params={"status": "Sleepy"})
    assert bad.status_code == 400 and "status must be one of" in bad.json()["error"]
    assert shop.api.http.get("/", params={"since": "1y"}).status_code == 400
    rerun = shop.api.http.post("/dash/api/runs/NOPE/rerun")
    assert rerun.status_code == 404 and rerun.json()["error"] == "run NOPE not found"
    assert shop.api.http.post("/dash/api/events/NOPE/replay").status_code == 404


def test_runs_filter_by_function_status_time_and_id(shop: Shop) -> None:
    event_id = shop.api.send("shop/order.created", {"id": 11})
    run = shop.api.wait_run(event_id)

    def ids(**query: str) -> list[str]:
        return [r["run_id"] for r in shop.api.http.get("/dash/api/runs", params=query).json()["data"]]

    assert run["run_id"] in ids(function="shop-checkout", status="Completed", since="5m")
    assert run["run_id"] not in ids(function="shop-reminder")
    assert run["run_id"] not in ids(status="Failed")
    assert ids(q=event_id) == [run["run_id"]]
    assert ids(q=run["run_id"][:20]) == [run["run_id"]]


def test_replay_sends_the_event_again_under_a_new_id(shop: Shop) -> None:
    event_id = shop.api.send("shop/order.created", {"id": 12})
    shop.api.wait_run(event_id)
    reply = shop.api.http.post(f"/dash/api/events/{event_id}/replay").json()
    assert reply["event_id"] != event_id and reply["location"] == f"/events/{reply['event_id']}"
    again = shop.api.wait_run(reply["event_id"])
    assert again["output"]["order"]["id"] == 12


def test_the_stack_reader_puts_the_users_frames_apart() -> None:
    text = (
        "Traceback (most recent call last):\n"
        f'  File "{stacks._EAGERSTEP_DIR}/core/execution.py", line 10, in run_sync\n'
        "    value = handler(ctx)\n"
        "            ^^^^^^^^^^^^\n"
        '  File "/srv/shop/orders.py", line 4, in checkout\n'
        "    total = parse(data)\n"
        f'  File "{sysconfig.get_path("stdlib")}/json/__init__.py", line 346, in loads\n'
        "    return _default_decoder.decode(s)\n"
        "ValueError: bad total\n"
    )
    stack = stacks.parse(text)
    assert [(f.function, f.user) for f in stack.frames] == [
        ("run_sync", False),
        ("checkout", True),
        ("loads", False),
    ]
    assert stack.user_frames[0].code == "total = parse(data)"
    assert stack.summary == "ValueError: bad total"
    assert stacks.parse("not a traceback").frames == []


def test_pages_work_without_the_script(shop: Shop) -> None:
    """The pages work without the script (plain links, a GET filter form)."""
    page = httpx.get(shop.engine.url + "/?status=Completed", timeout=30).text
    assert "<form id=run-filters" in page and "method=get" in page


def test_ids_chosen_by_senders_are_escaped_and_quoted(shop: Shop) -> None:
    event_id = shop.api.send("shop/<b>odd</b>", {"x": "<script>"}, id="order/1?x='y'")
    assert event_id == "order/1?x='y'"
    page = shop.api.http.get("/events").text
    assert "href='/events/order%2F1%3Fx%3D%27y%27'" in page
    assert "<b>odd</b>" not in page and "&lt;b&gt;odd&lt;/b&gt;" in page
    assert "<script>" not in page.replace("<script defer src='/static/dashboard.js'>", "")


def test_a_function_failing_outside_any_step_shows_each_attempt_and_its_stack(shop: Shop) -> None:
    run = shop.api.wait_run(shop.api.send("shop/coupon.applied", {"code": "10%OFF"}))
    assert run["status"] == "Failed" and run["error"]["attempts"] == 2
    detail = shop.api.http.get(f"/dash/api/runs/{run['run_id']}").json()["data"]
    assert detail["steps"] == []
    assert [(a["attempt"], a["retried"]) for a in detail["function_attempts"]] == [(0, True), (1, False)]
    page = shop.api.http.get(f"/runs/{run['run_id']}").text
    assert "function attempt 1" in page and "function attempt 2" in page
    assert "failed after 2 attempts" in page and "apply_coupon" in page
    assert "invalid coupon code &#x27;10%OFF&#x27;" in page
