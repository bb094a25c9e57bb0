"""Small pieces of the engine: the app client against raw HTTP servers, cron, wildcards, expressions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone

import pytest

from eagerstep.engine import ManualClock
from eagerstep.engine.appclient import AppClient, AppHttpError
from eagerstep.engine.expressions import ExpressionError, check, evaluate_key, matches
from eagerstep.engine.model import _wildcard, next_cron_time

pytestmark = [pytest.mark.engine, pytest.mark.timeout(20)]

Responder = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(respond: Responder) -> AsyncIterator[str]:
    server = await asyncio.start_server(respond, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/api?fnId=x&stepId=step"
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return await reader.readexactly(length)


async def test_app_client_chunked_keepalive_and_close_delimited() -> None:
    connections = 0

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                body = await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            writer.write(b"HTTP/1.1 206 Partial\r\nTransfer-Encoding: chunked\r\nX-Inngest-SDK: t:v1\r\n\r\n")
            writer.write(
                b"3\r\n[1,\r\n" + f"{len(body):x}".encode() + b"\r\n" + body + b"\r\n1\r\n]\r\n0\r\n\r\n"
            )
            await writer.drain()
        writer.close()

    client = AppClient(timeout=5)
    async with raw_server(chunked) as url:
        for _ in range(3):
            response = await client.post(url, b'"x"', {"Content-Type": "application/json"})
            assert response.status == 206 and response.body == b'[1,"x"]'
            assert response.headers["x-inngest-sdk"] == "t:v1"
    assert connections == 1  # one keep-alive connection for all three calls

    async def close_delimited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.0 200 OK\r\n\r\n{"done": true}')
        await writer.drain()
        writer.close()

    async with raw_server(close_delimited) as url:
        for _ in range(2):
            assert (await client.post(url, b"{}", {})).body == b'{"done": true}'
    await client.aclose()


async def test_app_client_errors_are_readable() -> None:
    client = AppClient(timeout=0.3)

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(2)

    async with raw_server(hang) as url:
        with pytest.raises(AppHttpError, match="no reply"):
            await client.post(url, b"{}", {})

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    async with raw_server(drop) as url:
        with pytest.raises(AppHttpError, match="closed the connection"):
            await client.post(url, b"{}", {})
    with pytest.raises(AppHttpError, match="cannot connect"):
        await client.post("http://127.0.0.1:9/api", b"{}", {})
    await client.aclose()


def test_cron_wildcards_expressions_and_manual_clock() -> None:
    base = datetime(2026, 1, 1, 10, 7, tzinfo=timezone.utc).timestamp()
    assert (
        next_cron_time("*/15 * * * *", base) == datetime(2026, 1, 1, 10, 15, tzinfo=timezone.utc).timestamp()
    )
    paris = next_cron_time("TZ=Europe/Paris 0 12 * * *", base)
    assert datetime.fromtimestamp(paris, timezone.utc).hour == 11  # noon in Paris, winter time
    assert _wildcard("app/*").match("app/user.created") and not _wildcard("app/*").match("other/x")
    assert matches(
        "event.data.n > 2 && async.data.ok", event={"data": {"n": 3}}, async_event={"data": {"ok": True}}
    )
    assert not matches("event.data.missing == 1", event={"data": {}})
    assert evaluate_key("event.data.customer", event={"data": {"customer": "c-1"}}) == "c-1"
    with pytest.raises(ExpressionError, match="invalid expression"):
        check("event.data.n >")
    clock = ManualClock(start=1000.0)
    ticks: list[float] = []
    clock.on_change(lambda: ticks.append(clock.now()))
    assert clock.wait_timeout(1001.0) is None and clock.wait_timeout(999.0) == 0.0
    clock.advance(5)
    assert clock.now() == 1005.0 and ticks == [1005.0]


def test_cli_timer_kinds_match_the_engine() -> None:
    from eagerstep import cli
    from eagerstep.engine import model

    kinds = {v for k, v in vars(model).items() if k.isupper() and isinstance(v, str) and v.islower()}
    assert kinds >= cli.TIMER_KINDS
    assert {model.SLEEP, model.CALL, model.RUN_TIMEOUT, model.DEBOUNCE, model.BATCH} <= cli.TIMER_KINDS
