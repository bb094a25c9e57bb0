"""The Inngest server's own SDK conformance suite, replayed against each adapter in standard mode.

``inngest alpha conformance run --transport serve`` (inngest/inngest ``pkg/conformance/runner/serve``
at 253303cd) syncs the SDK in band, registers its functions with the server behind a recording
proxy, sends events, and asserts every call request and every reply: one op per 206, each op's
``data`` compared as raw JSON bytes (``null`` where an op has none), the final 200 body. This module
does the same, case for case, with `eagerstep dev` as the server and the fixtures in
``tests.http.functions`` (``CONFORMANCE_SUITE``) served by every adapter over a real socket.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from json.scanner import make_scanner
from pathlib import Path
from typing import Any

import httpx
import pytest

from eagerstep.core import signing
from eagerstep.core.protocol import hash_step_id as h
from tests.http.conftest import SIGNING_KEY
from tests.integrations.servers import FRAMEWORKS, serve_framework
from tests.support.proxy import Exchange, RecordingProxy

pytestmark = [pytest.mark.timeout(120)]

engine_module = pytest.importorskip("eagerstep.engine")


# ---------------------------------------------------------------------------------------------
# the runner's comparisons

_scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _skip_ws(text: str, i: int) -> int:
    while text[i] in " \t\r\n":
        i += 1
    return i


def raw_ops(body: bytes) -> list[dict[str, Any]]:
    """The ops of a 206, each with ``data_raw``: the exact JSON text of its ``data`` (None when the
    key is absent), as Go's ``json.RawMessage`` keeps it."""
    text = body.decode()
    ops: list[dict[str, Any]] = []
    i = _skip_ws(text, 0)
    assert text[i] == "[", f"a 206 body must be a JSON array: {text[:100]}"
    i = _skip_ws(text, i + 1)
    while text[i] != "]":
        start = i
        op, end = _scan(text, start)
        assert isinstance(op, dict)
        op["data_raw"] = None
        j = _skip_ws(text, start + 1)  # walk the object's members for the raw text of "data"
        while text[j] != "}":
            key, j = _scan(text, j)
            j = _skip_ws(text, _skip_ws(text, j) + 1)  # past ':'
            value_start = j
            _, j = _scan(text, j)
            if key == "data":
                op["data_raw"] = text[value_start:j]
            j = _skip_ws(text, j)
            if text[j] == ",":
                j = _skip_ws(text, j + 1)
        ops.append(op)
        i = _skip_ws(text, end)
        if text[i] == ",":
            i = _skip_ws(text, i + 1)
    return ops


def normalise(op: dict[str, Any]) -> dict[str, Any]:
    """What the runner compares (``normalizeGeneratorOpcodes``): no timing, userland, metadata or
    display name; a sleep's ``opts.duration`` moves to ``name``; an error keeps its message and
    ``noRetry`` only."""
    out = {k: op.get(k) for k in ("op", "id", "name", "opts")}
    out["data"] = op["data_raw"]
    if op.get("op") == "Sleep" and isinstance(op.get("opts"), dict) and op["opts"].get("duration"):
        out["name"], out["opts"] = op["opts"]["duration"], None
    error = op.get("error")
    out["error"] = (
        None if error is None else {"message": error.get("message"), "noRetry": bool(error.get("noRetry"))}
    )
    return out


def expected(op: str, name: str, data: str, *, opts: Any = None, error: str | None = None) -> dict[str, Any]:
    step = "sleep" if op == "Sleep" else name
    return {
        "op": op,
        "id": h(step),
        "name": name,
        "opts": opts,
        "data": data,
        "error": None if error is None else {"message": error, "noRetry": False},
    }


class Case:
    """One case's expectations about the call requests, as ``caseHarness`` keeps them."""

    def __init__(self, proxy: RecordingProxy, event: dict[str, Any]) -> None:
        self.proxy = proxy
        self.event = event
        self.stack: list[str] = []
        self.steps: dict[str, Any] = {}

    def add(self, step: str, memo: Any) -> None:
        self.stack.append(h(step))
        self.steps[h(step)] = memo

    def request(self, *, attempt: int = 0, timeout: float = 30.0) -> Exchange:
        exchange = self.proxy.next(timeout)
        assert exchange.query.get("stepId") == "step"
        body = exchange.json
        event = body["event"]
        assert {k: event.get(k) or {} for k in ("data", "user")} == {
            "data": self.event.get("data") or {},
            "user": self.event.get("user") or {},
        }
        assert event["name"] == self.event["name"]
        ctx = body["ctx"]
        assert ctx["step_id"] == "step" and ctx["env"] == "" and ctx["attempt"] == attempt
        assert ctx["stack"] == {"stack": self.stack, "current": len(self.stack)}
        assert ctx["disable_immediate_execution"] is False and ctx["use_api"] is False
        steps = json.loads(json.dumps(body["steps"]))
        for memo in steps.values():
            if isinstance(memo, dict) and isinstance(memo.get("error"), dict):
                memo["error"].pop("stack", None)
        assert steps == self.steps
        return exchange

    @staticmethod
    def ops(exchange: Exchange) -> list[dict[str, Any]]:
        assert exchange.status == 206, (exchange.status, exchange.reply_body)
        return [normalise(op) for op in raw_ops(exchange.reply_body)]

    @staticmethod
    def json_reply(exchange: Exchange, status: int = 200) -> Any:
        assert exchange.status == status, (exchange.status, exchange.reply_body)
        return json.loads(exchange.reply_body)


# ---------------------------------------------------------------------------------------------
# the environment: engine, app, proxy, in-band sync


class Env:
    def __init__(self, engine: Any, proxy: RecordingProxy, serve_url: str) -> None:
        self.engine = engine
        self.proxy = proxy
        self.serve_url = serve_url
        self.http = httpx.Client(base_url=engine.url, timeout=30)

    def send(self, event: dict[str, Any]) -> None:
        response = self.http.post("/e/conformance", json=event)
        assert response.status_code == 200, response.text

    def await_timer(self, kind: str) -> None:
        """Wait (bounded) until the engine has handled the last reply and armed a ``kind`` timer:
        the proxy hands over a reply as it forwards it, before the engine has read it."""
        deadline = time.monotonic() + 30
        while not any(t["kind"] == kind for t in self.http.get("/v1/dev/timers").json()["data"]):
            assert time.monotonic() < deadline, f"no {kind} timer was armed"
            time.sleep(0.01)

    def fire_timers(self, kind: str) -> int:
        self.await_timer(kind)
        return int(self.http.post("/v1/dev/timers/fire", json={}).json()["fired"])

    def case(self, event: dict[str, Any]) -> Case:
        self.send(event)
        return Case(self.proxy, event)


def in_band_sync(serve_url: str, proxy_url: str) -> dict[str, Any]:
    """``syncSDKFunctions``: a signed in-band PUT, answered with the functions."""
    payload = json.dumps({"url": proxy_url}).encode()
    response = httpx.put(
        serve_url,
        content=payload,
        headers={
            "content-type": "application/json",
            "x-inngest-sync-kind": "in_band",
            "x-inngest-server-kind": "dev",
            "x-inngest-signature": signing.sign(payload, SIGNING_KEY),
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-inngest-sync-kind"] == "in_band"
    body: dict[str, Any] = response.json()
    return body


def register(engine_url: str, proxy_url: str, synced: dict[str, Any]) -> None:
    """``registerServeFunctions``: every step URL rewritten to the proxy, bearer = hashed key."""
    functions = synced["functions"]
    for fn in functions:
        for step in fn["steps"].values():
            query = step["runtime"]["url"].partition("?")[2]
            step["runtime"]["url"] = f"{proxy_url}/?{query}"
    body = {
        "v": "1",
        "url": proxy_url,
        "deployType": "ping",
        "sdk": f"{synced['sdk_language']}:{synced['sdk_version']}",
        "appName": synced["app_id"],
        "functions": functions,
    }
    response = httpx.post(
        f"{engine_url}/fn/register",
        json=body,
        headers={"authorization": f"Bearer {signing.hash_signing_key(SIGNING_KEY)}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


@pytest.fixture(params=FRAMEWORKS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    engine = engine_module.EngineServer(tmp_path / "engine.db", signing_key=SIGNING_KEY, retry_interval=0.05)
    with engine:
        settings = {
            "DEV": False,
            "SIGNING_KEY": SIGNING_KEY,
            "API_BASE_URL": engine.url,
            "EVENT_API_BASE_URL": engine.url,
        }
        with serve_framework(request.param, settings) as serve_url, RecordingProxy(serve_url) as proxy:
            # serve-introspection: the endpoint answers GET, and a signed in-band sync
            assert httpx.get(serve_url, timeout=30).status_code < 300
            synced = in_band_sync(serve_url, proxy.url)
            slugs = [fn["id"] for fn in synced["functions"]]
            for slug in ("simple-fn", "step-test", "retry-test", "cancel-test", "wait-for-event"):
                assert any(s.endswith(f"-test-suite-{slug}") for s in slugs), slugs
            register(engine.url, proxy.url, synced)
            yield Env(engine, proxy, serve_url)


# ---------------------------------------------------------------------------------------------
# the cases (runBasicInvoke, runStepsSerial, runRetryBasic, runCancelBasic, runWaitForEventBasic)


#: The step ids the runner hard-codes (sha1 of the user's step id).
RUNNER_HASHES = {
    "first step": "98bf98df193bcce7c33e6bc50927cf2ac21206cb",
    "sleep": "c3ca5f787365eae0dea86250e27d476406956478",
    "second step": "764e20ec975d4ef820d0f42e6a5833384bd7ee36",
    "wait": "daaad336276d15594d0e765f96c17cd746bf4971",
}


def test_step_ids_are_the_runners() -> None:
    assert {name: h(name) for name in RUNNER_HASHES} == RUNNER_HASHES


def test_conformance_cases(env: Env) -> None:
    basic_invoke(env)
    steps_serial(env)
    retry_basic(env)
    cancel_basic(env)
    wait_for_event_basic(env)


def basic_invoke(env: Env) -> None:
    case = env.case({"name": "tests/function.test", "data": {"test": True}, "user": {}})
    assert case.json_reply(case.request()) == {"name": "tests/function.test", "body": "ok"}


def steps_serial(env: Env) -> None:
    event = {
        "name": "tests/step.test",
        "data": {"steps": {"ok": "yes"}},
        "user": {"email": "test@example.com"},
    }
    case = env.case(event)
    assert case.ops(case.request()) == [expected("StepRun", "first step", '"first step"')]
    case.add("first step", {"data": "first step"})
    assert case.ops(case.request()) == [expected("Sleep", "2s", "null")]
    env.fire_timers("sleep")  # the 2 s sleep, now
    case.add("sleep", None)
    assert case.ops(case.request()) == [
        expected("StepRun", "second step", '{"first":"first step","second":true}')
    ]
    case.add("second step", {"data": {"first": "first step", "second": True}})
    assert case.json_reply(case.request()) == {"body": "ok", "name": "tests/step.test"}


def retry_basic(env: Env) -> None:
    event = {
        "name": "tests/retry.test",
        "data": {"steps": {"ok": "yes"}},
        "user": {"email": "test@example.com"},
    }
    case = env.case(event)
    assert case.ops(case.request()) == [expected("StepError", "first step", "null", error="broken")]
    assert case.ops(case.request(attempt=1)) == [expected("StepRun", "first step", '"yes: 2"')]
    case.add("first step", {"data": "yes: 2"})
    failure = case.json_reply(case.request(attempt=0), status=500)
    assert failure.get("name") in (None, "", "Error") and failure["message"] == "broken func"
    assert case.json_reply(case.request(attempt=1)) == {"body": "ok", "name": "tests/retry.test"}


def cancel_basic(env: Env) -> None:
    event = {"name": "tests/cancel.test", "data": {"request_id": "123", "whatever": "x"}, "user": {}}
    case = env.case(event)
    assert case.ops(case.request()) == [expected("Sleep", "10s", "null")]
    env.await_timer("sleep")
    env.send({"name": "cancel/please", "data": {"request_id": "123"}})
    deadline = time.monotonic() + 30
    while env.http.get("/v1/runs", params={"limit": 1}).json()["data"][0]["status"] != "Cancelled":
        assert time.monotonic() < deadline, "the run was not cancelled"
        time.sleep(0.02)
    # the sleep would have ended now: a cancelled run is not called again
    env.http.post("/v1/dev/timers/fire", json={})
    env.proxy.expect_none(0.5)


def wait_for_event_basic(env: Env) -> None:
    case = env.case({"name": "tests/wait.test", "data": {"id": "123"}, "user": {}})
    assert case.ops(case.request()) == [
        expected(
            "WaitForEvent",
            "wait",
            "null",
            opts={
                "event": "test/resume",
                "if": "async.data.resume == true && async.data.id == event.data.id",
                "timeout": "10s",
            },
        )
    ]
    env.await_timer("wait_timeout")  # the wait is registered
    env.send({"name": "test/resume", "data": {"id": "ignored"}})
    resume = {"id": "resume", "name": "test/resume", "data": {"id": "123", "resume": True}, "user": {}}
    resume["ts"] = int(time.time() * 1000)
    env.send(resume)
    exchange = case.proxy.next(30)
    memo = exchange.json["steps"][h("wait")]
    assert {k: memo[k] for k in ("id", "name", "data", "ts")} == {
        k: resume[k] for k in ("id", "name", "data", "ts")
    }
    case.add("wait", memo)
    case.proxy.exchanges.put(exchange)  # checked again, whole, as the next request
    assert case.json_reply(case.request()) == {"result": {"id": "123", "resume": True}}
