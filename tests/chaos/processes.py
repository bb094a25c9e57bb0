"""The processes the chaos suite breaks: the engine (``eagerstep dev``) and the app servers (gunicorn,
uvicorn), each a real subprocess on 127.0.0.1 that can be SIGKILLed; and their memory (RSS)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]

#: app name -> how it is served (the command gets ``{port}`` and ``{factory}``)
APPS: dict[str, list[str]] = {
    "django-gunicorn": [
        "-m", "gunicorn", "--workers", "3", "--worker-class", "sync", "--preload",
        "--bind", "127.0.0.1:{port}", "--timeout", "60", "--graceful-timeout", "3",
        "--log-level", "warning", "tests.chaos.app:django_app()",
    ],
    "flask-gunicorn": [
        "-m", "gunicorn", "--workers", "3", "--worker-class", "sync", "--preload",
        "--bind", "127.0.0.1:{port}", "--timeout", "60", "--graceful-timeout", "3",
        "--log-level", "warning", "tests.chaos.app:flask_app()",
    ],
    "fastapi-uvicorn": [
        "-m", "uvicorn", "--factory", "tests.chaos.app:fastapi_app", "--workers", "2",
        "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning", "--no-access-log",
    ],
}  # fmt: skip


def _gunicorn_flags() -> list[str]:
    """gunicorn 25+ opens a control socket at one fixed path per user: several servers would share it."""
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return []
    return ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _is_tracker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"resource_tracker" in cmdline.read()
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout)


class EngineProcess:
    """``eagerstep dev`` on a free port over one SQLite file; ``kill()`` is a SIGKILL, ``start()``
    again reopens the same file (on a new port: the proxies are retargeted)."""

    def __init__(
        self, db: Path, log: Path, *, retry_interval: float = 0.2, call_timeout: float = 30.0
    ) -> None:
        self.db, self.log = db, log
        self.retry_interval, self.call_timeout = retry_interval, call_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def start(self, timeout: float = 20.0) -> str:
        command = [
            sys.executable, "-m", "eagerstep", "dev", "--port", "0", "--db", str(self.db),
            "--retry-interval", str(self.retry_interval), "--call-timeout", str(self.call_timeout),
            "--log-level", "warning",
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while b"\n" not in line:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.kill()
                raise RuntimeError(f"the engine did not start (see {self.log})")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                line += os.read(self.proc.stdout.fileno(), 4096)
        origin = line.split(b"Inngest API on ", 1)[1].split()[0].decode()
        self.url = origin
        return origin

    def kill(self) -> None:
        if self.proc is not None:
            _stop(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def rss_kib(self) -> int:
        return rss_kib(self.pid) if self.proc and self.proc.poll() is None else 0


class AppProcess:
    """One app under its production server (gunicorn or uvicorn with several worker processes)."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        if name not in APPS:
            raise ValueError(f"unknown app {name!r}; one of {sorted(APPS)}")
        self.name, self.env, self.log = name, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        for _ in range(3):  # a free port may be taken between the probe and the bind: try another
            self.port = free_port()
            command = [sys.executable, *(part.format(port=self.port) for part in APPS[self.name])]
            if "gunicorn" in command:
                command[3:3] = _gunicorn_flags()
            env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
            if self._wait_ready(timeout):
                return self.url
            self.stop()
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise RuntimeError(f"{self.name} did not start; its log ends:\n{tail}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                if (
                    httpx.get(self.url + "/api/inngest", timeout=2).status_code == 200
                    and self.workers_ready()
                ):
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return False

    def workers_ready(self) -> bool:
        want = 3 if "gunicorn" in self.name else 2
        return len(self.workers()) >= want

    def workers(self) -> list[int]:
        """The live worker processes (not multiprocessing's resource tracker, which uvicorn has)."""
        if self.proc is None:
            return []
        return [pid for pid in children(self.proc.pid) if alive(pid) and not _is_tracker(pid)]

    def pids(self) -> list[int]:
        return [self.proc.pid, *self.workers()] if self.proc else []

    def rss_kib(self) -> int:
        return sum(rss_kib(pid) for pid in self.pids())

    def stop(self) -> None:
        if self.proc is not None:
            workers = self.workers()
            _stop(self.proc)
            for pid in workers:  # a worker its server no longer waits for
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def read_log(path: Path) -> list[dict[str, object]]:
    """The execution log's lines (a torn last line, from a killed writer, is skipped)."""
    if not path.exists():
        return []
    lines = []
    for raw in path.read_bytes().splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(raw))
    return lines
