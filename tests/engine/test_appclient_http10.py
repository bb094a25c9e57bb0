"""An HTTP/1.0 reply that carries ``Transfer-Encoding: chunked`` over an unchunked body is read as
Go's net/http (the Inngest server) reads it: the header is ignored on HTTP/1.0."""

from __future__ import annotations

import asyncio

import pytest

from eagerstep.engine.appclient import AppClient
from tests.engine.test_units import raw_server, read_request

pytestmark = [pytest.mark.engine, pytest.mark.timeout(20)]


async def test_http10_reply_ignores_transfer_encoding() -> None:
    body = b'[{"op":"StepRun","id":"x","data":"a\\r\\n0\\r\\n"}]'

    async def http10(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        # What a WSGI server speaking HTTP/1.0 sends for a streamed reply: the app's chunked
        # header, the body unchunked, the end of the body marked by closing the connection.
        writer.write(
            b"HTTP/1.0 201 Created\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        )
        writer.write(body)
        await writer.drain()
        writer.close()

    async def http10_with_length(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\ntrue")
        await writer.drain()
        writer.close()

    client = AppClient(timeout=5)
    try:
        async with raw_server(http10) as url:
            response = await client.post(url, b"{}", {})
            assert response.status == 201 and response.body == body
        async with raw_server(http10_with_length) as url:
            assert (await client.post(url, b"{}", {})).body == b"true"
    finally:
        await client.aclose()
