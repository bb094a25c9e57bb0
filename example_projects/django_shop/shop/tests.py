"""The shop's own unit tests: process-order against an in-process engine, in a Django ``TestCase``.

    python manage.py test shop

eagerstep.testing runs the engine on a manual clock and calls the shop's /api/inngest view on
the test's thread: the steps see this test's data, every write rolls back with the test, the
follow-up sleep and the charge's retry backoff take no time.
"""

from __future__ import annotations

from django.test import TestCase

from eagerstep.integrations.django import get_client
from eagerstep.testing import Harness, django
from shop.models import Message, Order, Payment, Product
from shop.services import ORDER_PLACED, place_order


class ProcessOrderTests(TestCase):
    def setUp(self) -> None:
        self.h = Harness(django("/api/inngest"), get_client()).start()
        self.addCleanup(self.h.close)

    def test_an_order_is_charged_on_the_second_attempt_and_completed(self) -> None:
        order = place_order("ada@example.com", {"MUG-01": 2})
        (event_id,) = self.h.events(ORDER_PLACED)  # place_order sent it

        run = self.h.wait(event_id, function="process-order")

        self.assertEqual(run.status, "Completed", run.error)
        self.assertEqual(
            run.step_names,
            ["reserve-stock", "charge", "send-receipt", "mark-receipt-sent", "wait-before-follow-up",
             "follow-up", "complete"],
        )  # fmt: skip
        self.assertEqual(run.step("reserve-stock").output, {"MUG-01": 2})
        self.assertEqual(run.step("charge").attempts, 2)  # the simulated gateway fails the first one
        self.assertEqual(run.output["payment"]["attempt"], 2)
        self.assertTrue(run.step("send-receipt").checkpointed)
        order.refresh_from_db()
        self.assertEqual(order.status, Order.Status.COMPLETED)
        self.assertEqual(
            list(Payment.objects.filter(order=order).values_list("attempt", "captured")),
            [(1, False), (2, True)],
        )
        self.assertEqual(
            list(Message.objects.filter(order=order).order_by("pk").values_list("kind", flat=True)),
            [Message.Kind.RECEIPT, Message.Kind.FOLLOW_UP],
        )

    def test_a_rolled_back_order_sends_no_event(self) -> None:
        with self.captureOnCommitCallbacks(execute=True):
            reply = self.client.post(
                "/api/orders",
                {"email": "cy@example.com", "items": {"MUG-01": 1, "NO-SUCH-SKU": 1}},
                content_type="application/json",
            )
        self.assertEqual(reply.status_code, 400)
        self.assertIn("NO-SUCH-SKU", reply.json()["error"])
        self.assertEqual(self.h.events(ORDER_PLACED), [])  # after any deferred send has finished
        self.assertFalse(Order.objects.exists())

    def test_out_of_stock_fails_the_run_and_cancels_the_order(self) -> None:
        order = place_order("di@example.com", {"POSTER-01": 3})
        (event_id,) = self.h.events(ORDER_PLACED)

        run = self.h.wait(event_id, function="process-order")

        self.assertTrue(run.failed)
        self.assertIn("out of stock", run.error["message"])
        self.assertEqual(run.step("reserve-stock").attempts, 1)  # NonRetriableError: no retry
        failure = self.h.wait(self.h.events("inngest/function.failed")[0], function="process-order-failure")
        self.assertTrue(failure.completed)
        order.refresh_from_db()
        self.assertEqual(order.status, Order.Status.CANCELLED)
        self.assertEqual(Product.objects.get(sku="POSTER-01").stock, 2)

    def test_a_charge_that_keeps_failing_fails_the_order(self) -> None:
        self.h.fail_step("charge", times=10)
        order = place_order("bo@example.com", {"SOCK-01": 1})

        run = self.h.wait(self.h.events(ORDER_PLACED)[0], function="process-order")

        self.assertTrue(run.failed)
        self.assertEqual(run.step("charge").attempts, 4)  # retries=3
        self.h.settle()  # the on_failure handler's run
        order.refresh_from_db()
        self.assertEqual(order.status, Order.Status.CANCELLED)
