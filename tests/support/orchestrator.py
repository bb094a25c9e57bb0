"""A recording orchestrator: a real HTTP server on 127.0.0.1 serving the Inngest server API that
SDKs call (register, events, checkpoints, run state), recording every call and failing on demand.

Usage::

    with RecordingOrchestrator() as orch:
        orch.fail("/v1/checkpoint", status=500, times=2)
        ...  # point the SDK's api_base_url at orch.url
        assert orch.stored_steps(run_id) == {...}
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ulid import ULID

from eagerstep.core.protocol import ASYNC_CHECKPOINT_OPCODES, SYNC_OPCODES, parse_register_request
from eagerstep.core.signing import hash_signing_key

CHECKPOINT_PREFIX = "/v1/checkpoint/"
#: How long the wait helpers wait before giving up: generous, so a loaded machine is not a failure;
#: a wait returns as soon as its condition holds, so passing tests do not get slower.
WAIT_TIMEOUT = 30.0


@dataclass
class RecordedCall:
    """One HTTP call the orchestrator received, and what it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any
    time: float  # time.monotonic() when the request was read
    status: int = 0  # 0: the connection was dropped without an answer
    fault: bool = False  # answered by a programmed fault

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class Fault:
    """A programmed failure for requests whose path starts with ``prefix``.

    ``status``: answer with this status (None: after ``delay``, answer normally). ``delay``: wait
    this long first (seconds). ``drop``: close the connection without answering. ``times``: how many
    requests it applies to (None: all). ``method``: only for this method. ``gate``: hold matching
    requests until it is set (see :meth:`RecordingOrchestrator.hold`; at most ``gate_timeout`` s).
    """

    prefix: str
    status: int | None = None
    delay: float = 0.0
    times: int | None = None
    drop: bool = False
    body: bytes | None = None
    method: str | None = None
    gate: threading.Event | None = None
    gate_timeout: float = 10.0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return path.startswith(self.prefix)


class StoredSteps(dict[str, Any]):
    """Checkpointed step outputs of one run: hashed id -> data, in the order they were stored.

    ``duplicates`` counts, per hashed id, how many extra times the step arrived (the server keeps
    the first and ignores the rest, as the real one does).
    """

    def __init__(self, items: Iterable[tuple[str, Any]] = (), duplicates: dict[str, int] | None = None):
        super().__init__(items)
        self.duplicates: dict[str, int] = dict(duplicates or {})


@dataclass
class _RunState:
    events: list[dict[str, Any]] = field(default_factory=list)
    memos: dict[str, Any] = field(default_factory=dict)  # hashed id -> memo ({"data": ...} etc.)
    checkpointed: dict[str, Any] = field(default_factory=dict)  # hashed id -> data
    duplicates: dict[str, int] = field(default_factory=dict)
    seeded: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    orchestrator: RecordingOrchestrator

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_connections(self) -> None:
        """Close kept-alive connections too, so a stopped server really is down for clients."""
        with self.connections_lock:
            connections, self.connections = self.connections, set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.orchestrator._serve(self)

    def do_POST(self) -> None:
        self.server.orchestrator._serve(self)

    def do_PUT(self) -> None:
        self.server.orchestrator._serve(self)

    def do_DELETE(self) -> None:
        self.server.orchestrator._serve(self)


class RecordingOrchestrator:
    """A threaded HTTP server on a free loopback port that plays the orchestrator's API.

    ``signing_keys``: if given, every API call must carry ``Authorization: Bearer`` with one of
    them, hashed or raw (as the dev server accepts), or it gets 401. ``strict_runs``: answer 400 to
    checkpoints for runs that were not seeded (as the real server does for an unknown run).
    """

    def __init__(
        self,
        *,
        signing_keys: Iterable[str] = (),
        strict_runs: bool = False,
        server_kind: str = "dev",
    ) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self.calls: list[RecordedCall] = []
        self.faults: list[Fault] = []
        self.registrations: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self._runs: dict[str, _RunState] = {}
        self.strict_runs = strict_runs
        self.server_kind = server_kind
        self._bearers: set[str] = set()
        for key in signing_keys:
            self._bearers.add(key)
            self._bearers.add(hash_signing_key(key))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """The API base URL (``http://127.0.0.1:<port>``): use it as api and event base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RecordingOrchestrator:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", self.port))
        server.orchestrator = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="orchestrator"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (the port is then refused: an orchestrator that is down). ``start()``
        again serves on the same port."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> RecordingOrchestrator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- programming it

    def fail(
        self,
        prefix: str,
        *,
        status: int | None = 500,
        times: int | None = None,
        delay: float = 0.0,
        drop: bool = False,
        body: bytes | None = None,
        method: str | None = None,
    ) -> Fault:
        """Make requests under ``prefix`` fail (see :class:`Fault`). Faults are tried in order."""
        fault = Fault(prefix, status, delay, times, drop, body, method)
        with self._lock:
            self.faults.append(fault)
        return fault

    def delay(self, prefix: str, seconds: float, *, times: int | None = None) -> Fault:
        """Answer requests under ``prefix`` normally, but only after ``seconds``."""
        return self.fail(prefix, status=None, delay=seconds, times=times)

    def hold(self, prefix: str, *, times: int | None = None, timeout: float = 10.0) -> threading.Event:
        """Hold requests under ``prefix`` (then answer normally) until the returned event is set.

        Lets a test act while a request is in flight without guessing at timing.
        """
        gate = threading.Event()
        fault = Fault(prefix, status=None, times=times, gate=gate, gate_timeout=timeout)
        with self._lock:
            self.faults.append(fault)
        return gate

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def seed_run(
        self,
        run_id: str,
        *,
        events: list[dict[str, Any]] | None = None,
        steps: dict[str, Any] | None = None,
    ) -> None:
        """Give a run state for ``/v0/runs/{id}/batch`` (events) and ``/actions`` (memos)."""
        with self._lock:
            state = self._runs.setdefault(run_id, _RunState())
            state.seeded = True
            if events is not None:
                state.events = list(events)
            if steps is not None:
                state.memos = dict(steps)

    # ---------------------------------------------------------------- reading what happened

    def calls_to(self, prefix: str, method: str | None = None) -> list[RecordedCall]:
        with self._lock:
            return [
                c
                for c in self.calls
                if c.path.startswith(prefix) and (method is None or c.method == method.upper())
            ]

    def checkpoint_calls(self, run_id: str) -> list[RecordedCall]:
        """Every ``POST /v1/checkpoint/{run_id}/async`` received, answered or not."""
        return self.calls_to(f"{CHECKPOINT_PREFIX}{run_id}/async", "POST")

    def stored_steps(self, run_id: str) -> StoredSteps:
        """Steps the run's checkpoints stored: hashed id -> data, with ``.duplicates``."""
        with self._lock:
            state = self._runs.get(run_id)
            if state is None:
                return StoredSteps()
            return StoredSteps(state.checkpointed.items(), state.duplicates)

    def wait_for(self, predicate: Any, timeout: float = WAIT_TIMEOUT) -> bool:
        """Wait (bounded) until ``predicate()`` is true; re-checked after every call."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.05))
        return True

    def wait_for_calls(self, prefix: str, count: int, timeout: float = WAIT_TIMEOUT) -> list[RecordedCall]:
        """Wait until at least ``count`` calls under ``prefix`` were answered; return them.

        Fails (AssertionError) when they were not within ``timeout``."""

        def done() -> bool:
            return sum(1 for c in self.calls if c.path.startswith(prefix) and c.status) >= count

        if not self.wait_for(done, timeout):
            answered = sum(1 for c in self.calls_to(prefix) if c.status)
            raise AssertionError(f"{answered} of {count} calls under {prefix} answered within {timeout}s")
        return self.calls_to(prefix)

    def received(self, prefix: str) -> int:
        """How many requests under ``prefix`` arrived (answered or still being handled)."""
        with self._lock:
            return sum(1 for c in self.calls if c.path.startswith(prefix))

    def wait_received(self, prefix: str, count: int, timeout: float = WAIT_TIMEOUT) -> bool:
        """Wait until ``count`` requests under ``prefix`` arrived (answered or not)."""

        def arrived() -> bool:
            return sum(1 for c in self.calls if c.path.startswith(prefix)) >= count

        return self.wait_for(arrived, timeout)

    def reset(self) -> None:
        """Forget calls, faults and state (the server keeps running)."""
        with self._lock:
            self.calls.clear()
            self.faults.clear()
            self.registrations.clear()
            self.events.clear()
            self._runs.clear()

    # ---------------------------------------------------------------- serving

    def _serve(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        path = split.path
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        call = RecordedCall(
            method=handler.command,
            path=path,
            query=dict(parse_qsl(split.query)),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            json=parsed,
            time=time.monotonic(),
        )
        with self._lock:
            self.calls.append(call)
            self._changed.notify_all()
            fault = next((f for f in self.faults if f.matches(call.method, path)), None)
            if fault is not None:
                fault.hits += 1
        try:
            if fault is not None:
                if fault.gate is not None:
                    deadline = time.monotonic() + fault.gate_timeout
                    while not fault.gate.wait(0.02):
                        if self._stopping.is_set() or time.monotonic() > deadline:
                            self._drop(handler, call)
                            return
                if fault.delay and self._stopping.wait(fault.delay):
                    self._drop(handler, call)
                    return
                if fault.drop:
                    self._drop(handler, call)
                    return
                if fault.status is not None:
                    call.fault = True
                    self._reply(
                        handler,
                        call,
                        fault.status,
                        fault.body if fault.body is not None else _fault_body(fault),
                    )
                    return
            status, payload = self._route(call)
            out = b"" if payload is None else json.dumps(payload).encode()
            self._reply(handler, call, status, out)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _drop(self, handler: _Handler, call: RecordedCall) -> None:
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)
        self._notify(call, 0)

    def _reply(self, handler: _Handler, call: RecordedCall, status: int, body: bytes) -> None:
        self._notify(call, status)  # before the client can see the answer
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("X-Inngest-Server-Kind", self.server_kind)
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()

    def _notify(self, call: RecordedCall, status: int) -> None:
        with self._changed:
            call.status = status
            self._changed.notify_all()

    def _authorised(self, call: RecordedCall) -> bool:
        if not self._bearers:
            return True
        value = call.header("authorization") or ""
        scheme, _, token = value.partition(" ")
        return scheme.lower() == "bearer" and token.strip() in self._bearers

    def _route(self, call: RecordedCall) -> tuple[int, Any]:
        method, path = call.method, call.path
        parts = [p for p in path.split("/") if p]
        if method == "POST" and len(parts) == 2 and parts[0] == "e":
            return self._accept_events(call)
        if not self._authorised(call):
            return 401, {"error": "Unauthorized", "status": 401}
        if method == "POST" and path == "/fn/register":
            return self._register(call)
        if method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "checkpoint"] and parts[3] == "async":
            return self._checkpoint(parts[2], call)
        if method == "GET" and len(parts) == 4 and parts[:2] == ["v0", "runs"]:
            return self._run_state(parts[2], parts[3])
        return 404, {"error": f"no route for {method} {path}", "status": 404}

    def _accept_events(self, call: RecordedCall) -> tuple[int, Any]:
        raw = call.json
        events = raw if isinstance(raw, list) else [raw]
        if not events or not all(isinstance(e, dict) and e.get("name") for e in events):
            return 400, {"ids": [], "status": 400, "error": "each event needs a name"}
        ids: list[str] = []
        with self._lock:
            for event in events:
                stored = dict(event)
                stored.setdefault("id", str(ULID()))
                stored.setdefault("ts", int(time.time() * 1000))
                stored.setdefault("data", {})
                self.events.append(stored)
                ids.append(str(stored["id"]))
        return 200, {"ids": ids, "status": 200}

    def _register(self, call: RecordedCall) -> tuple[int, Any]:
        expected = call.header("x-inngest-expected-server-kind")
        if expected and expected != self.server_kind:
            return 400, {"error": f"expected server kind {expected}, this is {self.server_kind}"}
        try:
            parsed = parse_register_request(call.json)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        with self._lock:
            modified = not self.registrations or self.registrations[-1] != call.json
            self.registrations.append(call.json)
        return 200, {"ok": True, "modified": modified, "sync_id": str(ULID()), "app_id": parsed.appName}

    def _checkpoint(self, run_id: str, call: RecordedCall) -> tuple[int, Any]:
        body = call.json
        if not isinstance(body, dict) or not isinstance(body.get("steps"), list):
            return 400, {"error": "invalid checkpoint body", "status": 400}
        if body.get("run_id") not in (None, run_id):
            return 400, {"error": "run_id does not match the path", "status": 400}
        ops = body["steps"]
        if not all(isinstance(op, dict) for op in ops):
            return 400, {"error": "invalid op", "status": 400}
        if any(op.get("op") not in SYNC_OPCODES for op in ops):
            return 400, {"error": "cannot checkpoint async steps", "status": 400}
        refused = next((op["op"] for op in ops if op.get("op") not in ASYNC_CHECKPOINT_OPCODES), None)
        if refused is not None:  # as the server: RunComplete goes in the reply, never here
            return 400, {"error": f"cannot checkpoint opcode: {refused}", "status": 400}
        with self._lock:
            state = self._runs.get(run_id)
            if state is None:
                if self.strict_runs:
                    return 400, {"error": "run not found", "status": 400}
                state = self._runs[run_id] = _RunState()
            for op in ops:
                if op.get("op") not in ("StepRun", "Step"):
                    continue
                step_id = str(op.get("id", ""))
                if step_id in state.checkpointed:
                    state.duplicates[step_id] = state.duplicates.get(step_id, 0) + 1
                    continue
                state.checkpointed[step_id] = op.get("data")
                state.memos.setdefault(step_id, {"data": op.get("data")})
        return 200, None

    def _run_state(self, run_id: str, what: str) -> tuple[int, Any]:
        with self._lock:
            state = self._runs.get(run_id)
            if state is None or not state.seeded:
                return 404, {"error": "run not found", "status": 404}
            if what == "actions":
                return 200, dict(state.memos)
            if what == "batch":
                return 200, list(state.events)
        return 404, {"error": f"unknown run resource {what}", "status": 404}


def _fault_body(fault: Fault) -> bytes:
    return json.dumps({"error": f"programmed fault ({fault.status})", "status": fault.status}).encode()


_reserved: list[socket.socket] = []


def unused_url() -> str:
    """The URL of a loopback port nothing listens on (connections are refused).

    The port stays bound (never listening) until the process exits, so no server started later
    (on port 0) can get it and answer where a test expects a refusal.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    _reserved.append(sock)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"
