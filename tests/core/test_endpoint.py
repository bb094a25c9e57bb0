"""The durable-endpoint runner's pure parts: run ids, the request event, options."""

from __future__ import annotations

import re
import time

import pytest

import eagerstep
from eagerstep.core.comm import Request
from eagerstep.core.endpoint import DurableEndpoint, http_request_event, new_ulid


def test_run_ids_are_ulids_in_time_order() -> None:
    first = new_ulid()
    time.sleep(0.002)
    second = new_ulid()
    assert re.fullmatch(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", first)
    assert first[:10] < second[:10]  # the 48-bit millisecond prefix sorts by time
    assert len({new_ulid() for _ in range(1000)}) == 1000


def test_the_request_event_carries_what_re_entry_needs() -> None:
    request = Request(
        method="post",
        url="https://shop.example:8443/api/pay?a=1&b=2",
        headers={"Content-Type": "text/csv", "X-Forwarded-For": "10.0.0.1, 10.0.0.2"},
        body="x,y\n€".encode(),
    )
    event = http_request_event(request, "pay")
    assert event["name"] == "inngest/http.request"
    assert event["data"] == {
        "domain": "https://shop.example:8443",
        "method": "POST",
        "path": "/api/pay",
        "fn": "pay",
        "ip": "10.0.0.1",
        "content_type": "text/csv",
        "query_params": "a=1&b=2",
        "body": "x,y\n€",
    }


def test_options_are_checked() -> None:
    client = eagerstep.Client(app_id="shop", dev=True)
    with pytest.raises(ValueError, match="async_response"):
        DurableEndpoint(client, async_response="stream")  # type: ignore[arg-type]
    endpoint = DurableEndpoint(client, id="pay", retries=0)
    assert endpoint.retries == 0 and endpoint.checkpointing().max_runtime is not None
