"""Run as a child process: commit one transaction that sends an event through the outbox.

``python -m tests.integrations.outbox_project.place_order <order id> [--hang-after-commit]``: with
``--hang-after-commit``, a callback registered before the send runs first at commit, prints
``COMMITTED`` and hangs, so the outbox's own post-commit send never starts: the test kills the
process there (SIGKILL). Without it, the process exits once the post-commit send is done.
"""

from __future__ import annotations

import sys
import time

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402

from eagerstep.core import deferred  # noqa: E402
from eagerstep.integrations.django import get_client  # noqa: E402


def main(order_id: int, hang: bool) -> None:
    call_command("migrate", verbosity=0)
    with transaction.atomic():
        if hang:
            transaction.on_commit(lambda: (print("COMMITTED", flush=True), time.sleep(120)))
        (event_id,) = get_client().send({"name": "shop/order.placed", "data": {"order_id": order_id}})
        print("EVENT", event_id, flush=True)
    deferred.drain(30)
    print("DONE", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), "--hang-after-commit" in sys.argv[2:])
