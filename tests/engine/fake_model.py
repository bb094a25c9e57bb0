"""A fake OpenAI-compatible model server on 127.0.0.1 (a free port): records each request and
answers chat completions (or a scripted failure). For the AIGateway and ``step.ai`` tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ModelRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any


@dataclass
class FakeModel:
    url: str
    requests: list[ModelRequest] = field(default_factory=list)
    #: Statuses to answer with, in order (then 200): e.g. [500] fails the first request.
    failures: list[int] = field(default_factory=list)


def completion(text: str, model: str = "fake-model") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


@contextmanager
def fake_model_server() -> Iterator[FakeModel]:
    """Serve a fake model; its answer echoes the last user message: ``"echo: <content>"``."""
    state = FakeModel(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode()
            with lock:
                state.requests.append(
                    ModelRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status = state.failures.pop(0) if state.failures else 200
            if status != 200:
                reply = {"error": {"message": "the model is overloaded", "type": "server_error"}}
            else:
                messages = body.get("messages") if isinstance(body, dict) else None
                last = messages[-1]["content"] if messages else ""
                reply = completion(f"echo: {last}", str(body.get("model", "fake-model")))
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
