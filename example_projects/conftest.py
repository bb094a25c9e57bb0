"""Fixtures for the example projects' tests: `eagerstep dev` and each app as real processes on loopback.

Every example is tested end to end the way a user runs it: the engine (``python -m eagerstep dev``)
and the app's own server in child processes, real HTTP between them, bounded waits, and each child's
whole process group stopped at teardown.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

HOST = "127.0.0.1"
FINAL = ("Completed", "Failed", "Cancelled")
#: How long a wait may take before it fails: generous, so a loaded machine is not a failure; a wait
#: returns as soon as its condition holds, so passing tests do not get slower.
WAIT_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = WAIT_TIMEOUT, server: Server | None = None
) -> Any:
    """Poll ``check`` until it returns something truthy; fail (with the server's log) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if server is not None and server.proc.poll() is not None:
            raise AssertionError(f"{server.name} exited ({server.proc.returncode}):\n{server.log_tail()}")
        if time.monotonic() > deadline:
            detail = f"\n{server.log_tail()}" if server is not None else ""
            raise AssertionError(f"{what}: not within {timeout}s{detail}")
        time.sleep(0.02)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def owns_port(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds the socket listening on ``port`` (None where /proc cannot tell).

    A free port is chosen by binding port 0 and closing it; another process may take it before the
    child binds. Checking ownership keeps us from mistaking that process for ours.
    """
    inodes: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(FileNotFoundError), open(table) as lines:
                next(lines, None)
                for line in lines:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    links = set()
    for fd in fds:
        with contextlib.suppress(OSError):  # an fd closed meanwhile
            links.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return any(f"socket:[{inode}]" in links for inode in inodes)


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without settings meant for other apps, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INNGEST_", "FLASK_")) and k != "DJANGO_SETTINGS_MODULE"
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Server:
    """A child process serving HTTP on a free loopback port, in its own process group.

    With ``announces``, the child is given port 0 and binds a free port itself; the pattern's first
    group, matched in the child's output, is the port it got (no window for another process to take
    it). Otherwise the port is picked here and handed to the child (see :func:`owns_port`).
    """

    def __init__(
        self,
        name: str,
        argv: Callable[[int], Sequence[str]],
        *,
        cwd: Path,
        env: dict[str, str],
        log_dir: Path,
        health_path: str = "/",
        timeout: float = 30.0,
        announces: re.Pattern[str] | None = None,
    ) -> None:
        self.name = name
        for attempt in range(3):  # a lost race for the free port makes the child exit: try another
            self.port = 0 if announces else free_port()
            self.url = f"http://{HOST}:{self.port}"
            self.log = log_dir / f"{name}-{attempt}.log"
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(
                    list(argv(self.port)),
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                if announces is not None:
                    self.port = wait_for(
                        f"{name} announcing its port", lambda: self._port(announces), timeout, self
                    )
                    self.url = f"http://{HOST}:{self.port}"
                wait_for(f"{name} answering", lambda: self._up(health_path), timeout, self)
                return
            except AssertionError:
                self.stop()
                if attempt == 2:
                    raise

    def _port(self, announces: re.Pattern[str]) -> int | None:
        try:
            found = announces.search(self.log.read_text(errors="replace"))
        except OSError:
            return None
        return int(found.group(1)) if found else None

    def _up(self, health_path: str) -> bool:
        return answers(self.url + health_path) and owns_port(self.proc.pid, self.port) is not False

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)


class Engine:
    """`eagerstep dev` in a child process, and the bits of its API the tests use."""

    def __init__(self, tmp: Path) -> None:
        self.server = Server(
            "engine",
            lambda port: [
                sys.executable, "-m", "eagerstep", "dev", "--host", HOST, "--port", str(port),
                "--db", str(tmp / "dev.db"), "--retry-interval", "0.05", "--log-level", "warning",
            ],
            cwd=tmp,
            env=clean_env(),
            log_dir=tmp,
            health_path="/health",
            announces=re.compile(rf"Inngest API on http://{re.escape(HOST)}:(\d+)"),
        )  # fmt: skip
        self.url = self.server.url
        self.http = httpx.Client(base_url=self.url, timeout=WAIT_TIMEOUT)

    def close(self) -> None:
        self.http.close()
        self.server.stop()

    def sync(self, app_url: str) -> list[str]:
        reply = self.http.post("/v1/dev/apps", json={"url": app_url})
        assert reply.status_code == 200, reply.text
        apps = self.http.get("/v1/dev/apps").json()["data"]
        return [fn for app in apps if app["url"] == app_url for fn in app["functions"]]

    def runs(self, event_id: str) -> list[dict[str, Any]]:
        return list(self.http.get(f"/v1/events/{event_id}/runs").json()["data"])

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"/v1/runs/{run_id}").json()["data"])

    def run_of(self, event_id: str, timeout: float = WAIT_TIMEOUT) -> dict[str, Any]:
        """The (first) run an event started, once it exists."""
        runs = wait_for(f"a run for event {event_id}", lambda: self.runs(event_id), timeout, self.server)
        return self.run(runs[0]["run_id"])

    def wait_run(
        self,
        run_id: str,
        until: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = WAIT_TIMEOUT,
    ) -> dict[str, Any]:
        """Poll the run until ``until(run)`` holds (default: it has ended)."""
        condition = until or (lambda run: run["status"] in FINAL)

        def check() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if condition(run) else None

        found: dict[str, Any] = wait_for(f"run {run_id}", check, timeout, self.server)
        return found

    def fire_timers(self, run_id: str) -> int:
        return int(self.http.post("/v1/dev/timers/fire", json={"run_id": run_id}).json()["fired"])

    def wait(self, check: Callable[[], Any], timeout: float = WAIT_TIMEOUT) -> Any:
        """Poll any condition (bounded); a failure shows the engine's log."""
        return wait_for("condition", check, timeout, self.server)

    @staticmethod
    def step_names(run: dict[str, Any]) -> list[str]:
        return [step.get("name") or step["id"] for step in run["steps"]]

    def timers(self, run_id: str) -> list[dict[str, Any]]:
        return [t for t in self.http.get("/v1/dev/timers").json()["data"] if t["run_id"] == run_id]


@pytest.fixture(scope="session")
def child_env() -> Callable[..., dict[str, str]]:
    """``child_env(KEY=value, ...)``: the environment for a child process (see ``clean_env``)."""
    return clean_env


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One `eagerstep dev` for all the example projects' tests (each syncs its own app)."""
    pytest.importorskip("uvicorn")  # the engine extra
    pytest.importorskip("celpy")
    running = Engine(tmp_path_factory.mktemp("engine"))
    try:
        yield running
        # As a real Inngest server would: no example's reply may be a parallel group by accident.
        stats = running.http.get("/v1/dev/stats").json()["data"]
        assert stats["parallel_replies"] == 0, f"replies with several non-lazy ops: {stats}"
    finally:
        running.close()


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """``serve(name, argv_for_port, cwd=..., env={...}, health_path=...)`` starts an app; stopped after
    the test module.

    ``env`` adds to the test process's environment, minus any ``INNGEST_*`` variables.
    """
    started: list[Server] = []

    def start(
        name: str, argv: Callable[[int], Sequence[str]], *, env: dict[str, str] | None = None, **kwargs: Any
    ) -> Server:
        kwargs.setdefault("log_dir", tmp_path_factory.mktemp(name))
        server = Server(name, argv, env=clean_env(**(env or {})), **kwargs)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(started):
            server.stop()
