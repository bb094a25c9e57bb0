"""The dashboard in a real headless Chromium, against the engine running the shop's functions;
each test writes a screenshot of the page it checked (to docs/img/, shown in docs/engine.md, with
EAGERSTEP_SCREENSHOTS=1: ``make screenshots``)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.dashboard.conftest import SCREENSHOTS
from tests.dashboard.showcase import Shop
from tests.engine.helpers import wait_for

pytestmark = [pytest.mark.engine, pytest.mark.browser, pytest.mark.timeout(120)]


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"dashboard-{name}.png"), full_page=True)


def run_of(shop: Shop, name: str, data: dict[str, Any]) -> str:
    """Send an event; wait for its run to end; its id."""
    return str(shop.api.wait_run(shop.api.send(name, data))["run_id"])


def open_run(page: Any, shop: Shop, run_id: str) -> None:
    page.goto(f"{shop.engine.url}/runs/{run_id}")
    page.wait_for_selector(".waterfall")


def test_a_checkpointed_run_and_an_orchestrated_one_on_the_waterfall(page: Any, shop: Shop) -> None:
    run_id = run_of(shop, "shop/order.standard", {"id": 2})
    open_run(page, shop, run_id)
    assert page.locator(".wf-row .tag.reply").count() == 4
    shot(page, "run-orchestrated")
    run_id = run_of(shop, "shop/order.created", {"id": 1})
    open_run(page, shop, run_id)
    assert page.locator(".headline .badge").inner_text() == "Completed"
    labels = page.locator(".wf-row.step .wf-label").all_inner_texts()
    names = [label.split()[0] for label in labels]
    assert names == ["load-order", "reserve-stock", "charge-card", "send-receipt"]
    # steps ran in the worker and came by checkpoint, the last too: the final reply is RunComplete alone
    assert page.locator(".wf-row .tag.checkpoint").count() == 4
    assert page.locator(".wf-row.step .bar:not(.gap)").count() == 4  # every step has a bar on the axis
    assert "event received" in page.locator(".waterfall").inner_text()
    assert '"charge": "charged 30"' in page.locator("pre.json").first.inner_text()
    assert '"name": "shop/order.created"' in page.locator("pre.json").last.inner_text()
    shot(page, "run-checkpointed")


def test_a_parallel_group_run_in_the_worker_shows_its_steps_side_by_side(page: Any, shop: Shop) -> None:
    run_id = run_of(shop, "shop/shipping.quote", {"cart": 3})
    open_run(page, shop, run_id)
    assert page.locator(".headline .badge").inner_text() == "Completed"
    labels = [label.split()[0] for label in page.locator(".wf-row.step .wf-label").all_inner_texts()]
    # the quotes in the order they finished, then the step after the group
    assert sorted(labels[:3]) == ["quote-courier", "quote-freight", "quote-post"]
    assert labels[3] == "pick-cheapest"
    assert page.locator(".wf-row .tag.checkpoint").count() == 4  # all in the worker, by checkpoint
    # the three quotes ran at once: each starts before the others end, on the one time axis
    spans = []
    for i in range(3):
        style = page.locator(".wf-row.step").nth(i).locator(".bar:not(.gap)").get_attribute("style")
        left, width = (float(v) for v in re.findall(r"([\d.]+)%", style or "")[:2])
        spans.append((left, left + width))
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans
    assert '"carrier": "post"' in page.locator("pre.json").first.inner_text()
    shot(page, "run-parallel")


def test_a_retried_step_shows_every_attempt_with_its_error(page: Any, shop: Shop) -> None:
    run_id = run_of(shop, "shop/payment.flaky", {"invoice": 7})
    open_run(page, shop, run_id)
    attempts = page.locator(".wf-row.attempt-row")
    assert attempts.count() == 2
    assert "charge-card attempt 1" in attempts.nth(0).inner_text()
    assert "ConnectionError: the payment gateway timed out" in attempts.nth(1).inner_text()
    assert "(retried)" in attempts.nth(1).inner_text()
    shot(page, "run-retried")


def test_a_sleeping_run_shows_when_it_wakes_and_can_be_cancelled(page: Any, shop: Shop) -> None:
    event_id = shop.api.send("shop/cart.abandoned", {"cart": 3})
    shop.api.wait_step(event_id, lambda s: s.get("name") == "remember-cart" and s["status"] == "Completed")
    run_id = shop.api.runs_of(event_id)[0]["run_id"]
    wait_for(lambda: "wakes at" in shop.api.http.get(f"/runs/{run_id}").text)
    open_run(page, shop, run_id)
    row = page.locator(".wf-row.step.Sleeping")
    assert "wait-a-day" in row.inner_text() and "wakes at" in row.inner_text()
    assert re.search(r"running for", page.locator(".headline").inner_text())
    assert "None" not in page.locator(".headline").inner_text()
    shot(page, "run-sleeping")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_function("document.querySelector('.headline .badge').textContent === 'Cancelled'")
    assert shop.api.run(run_id)["status"] == "Cancelled"


def test_a_waiting_run_shows_what_it_waits_for(page: Any, shop: Shop) -> None:
    event_id = shop.api.send("shop/refund.requested", {"id": 9})
    wait_for(lambda: shop.api.runs_of(event_id))
    run_id = shop.api.runs_of(event_id)[0]["run_id"]
    wait_for(lambda: "waiting for" in shop.api.http.get(f"/runs/{run_id}").text)
    open_run(page, shop, run_id)
    note = page.locator(".wf-row.step.Waiting").inner_text()
    assert "shop/refund.approved" in note and "async.data.id == event.data.id" in note and "times out" in note
    shot(page, "run-waiting")
    shop.api.send("shop/refund.approved", {"id": 9})  # the page follows the run to its end, live
    page.wait_for_function("document.querySelector('.headline .badge').textContent === 'Completed'")


def test_a_failed_run_shows_its_stack_with_the_users_frames_first(page: Any, shop: Shop) -> None:
    run_id = run_of(shop, "shop/report.uploaded", {"csv": "1,2,x"})
    open_run(page, shop, run_id)
    error = page.locator(".error").first
    assert "ValueError" in error.inner_text() and "failed after 2 attempts" in error.inner_text()
    first_user_frame = error.locator("ol.frames.user li").first.inner_text()
    assert "showcase.py" in first_user_frame and "import_report" in first_user_frame
    assert error.locator("details.library").count() == 1
    # the step's own attempts: the innermost user frame is where int() raised
    step = page.locator(".step-detail").first
    step.locator("summary").first.click()
    assert "int(cell)" in step.locator("ol.frames.user li").first.inner_text()
    shot(page, "run-failed")


def test_rerun_starts_a_new_run_of_the_same_event(page: Any, shop: Shop) -> None:
    run_id = run_of(shop, "shop/order.created", {"id": 5})
    open_run(page, shop, run_id)
    page.get_by_role("button", name="Rerun").click()
    page.wait_for_url(re.compile(r"/runs/(?!" + run_id + ")"))
    new_id = page.url.rsplit("/", 1)[1]
    assert new_id != run_id
    page.wait_for_function("document.querySelector('.headline .badge').textContent === 'Completed'")
    assert shop.api.run(new_id)["output"]["order"]["id"] == 5


def test_send_an_event_that_matches_nothing_then_one_that_starts_a_run(page: Any, shop: Shop) -> None:
    page.goto(f"{shop.engine.url}/events")
    page.fill("#send-event input[name=name]", "shop/order.craeted")
    page.fill("#send-event textarea[name=data]", '{"id": 42}')
    page.get_by_role("button", name="Send event").click()
    page.wait_for_url(re.compile(r"/events/[0-9A-Z]+$"))
    assert "matched no function" in page.locator("main").inner_text()
    assert "Did you mean shop/order.created?" in page.locator("main").inner_text()
    assert '"id": 42' in page.locator("pre.json").inner_text()
    shot(page, "event-unmatched")
    page.goto(f"{shop.engine.url}/events")
    page.fill("#send-event input[name=name]", "shop/order.created")
    page.fill("#send-event textarea[name=data]", '{"id": 43}')
    page.get_by_role("button", name="Send event").click()
    page.wait_for_url(re.compile(r"/events/[0-9A-Z]+$"))
    event_id = page.url.rsplit("/", 1)[1]
    shop.api.wait_run(event_id)
    page.get_by_role("button", name="Replay").click()
    page.wait_for_url(re.compile(r"/events/(?!" + event_id + ")"))
    page.goto(f"{shop.engine.url}/events")
    rows = page.locator("table.events tbody tr")
    assert rows.count() >= 3
    assert page.locator("table.events .badge.nomatch").count() >= 1
    shot(page, "events")


def test_the_runs_list_updates_live_and_filters(page: Any, shop: Shop) -> None:
    page.goto(f"{shop.engine.url}/")
    page.wait_for_selector("#runs-body tr")
    event_id = shop.api.send("shop/order.created", {"id": 77})
    run_id = wait_for(lambda: shop.api.runs_of(event_id))[0]["run_id"]
    page.wait_for_selector(f"tr[data-run='{run_id}']")  # no reload: the script polls /dash/api/runs
    page.select_option("select[name=status]", "Failed")
    page.wait_for_function(
        "[...document.querySelectorAll('#runs-body tr')].every(r => r.textContent.includes('Failed'))"
    )
    assert "status=Failed" in page.url
    page.select_option("select[name=status]", "")
    page.fill("input[name=q]", event_id)
    page.press("input[name=q]", "Enter")
    page.wait_for_function("document.querySelectorAll('#runs-body tr').length === 1")
    assert run_id in page.locator("#runs-body").inner_text()
    page.fill("input[name=q]", "")
    page.press("input[name=q]", "Enter")
    page.wait_for_function("document.querySelectorAll('#runs-body tr').length > 3")
    shot(page, "runs")


def test_functions_page_lists_triggers_retries_and_how_steps_ran(page: Any, shop: Shop) -> None:
    run_of(shop, "shop/order.created", {"id": 8})
    page.goto(f"{shop.engine.url}/functions")
    text = page.locator("table.functions").inner_text()
    assert "shop-checkout" in text and "shop/order.created" in text
    assert "by checkpoint" in text and "cron" not in text
    shot(page, "functions")


def test_apps_page_resyncs_and_shows_a_failing_sync(page: Any, shop: Shop) -> None:
    broken = shop.app_url.replace("/api/inngest", "/api/wrong")
    assert shop.api.http.post("/v1/dev/apps", json={"url": broken}).status_code == 502
    page.goto(f"{shop.engine.url}/apps")
    ok_row = page.locator(f"tr[data-app='{shop.app_url}']")
    assert "8 functions" in ok_row.inner_text()
    bad_row = page.locator(f"tr[data-app='{broken}']")
    assert "the app answered 404" in bad_row.inner_text()
    ok_row.get_by_role("button", name="Resync").click()
    page.wait_for_selector(".flash")
    assert "the app answered 200" in page.locator(".flash").inner_text()
    shot(page, "apps")
