"""`make demo`: the same five-step function under standard orchestration and under checkpointing.

Starts the embedded engine (``eagerstep dev``) and the FastAPI example app
(``example_projects/fastapi_app``) as child processes on free loopback ports, syncs the app, sends
events to two functions that differ only in ``checkpointing=``, waits for each run through the
engine's inspection API, and prints the runs side by side: when each step finished, how long the run
took from event to completion, how many requests the engine made to the app and how many checkpoint
calls the app made to the engine.

Ctrl-C (or SIGTERM) at any point stops both children (their whole process groups: SIGTERM, then
SIGKILL after a timeout) and exits with status 130; nothing is left running or listening.

    python scripts/demo.py [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = ROOT / "example_projects" / "fastapi_app"
HOST = "127.0.0.1"
MODES = ("standard", "checkpointing")
STEPS = ("fetch", "clean", "embed", "score", "store")
OVERALL_TIMEOUT = 120.0  # seconds: the demo never runs longer than this
START_TIMEOUT = 30.0
RUN_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class DemoError(Exception):
    """Something the demo needs did not happen in time; the message says what."""


# ------------------------------------------------------------------------------------------------
# Child processes: each in its own process group, stopped group-wide.


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the demo dies without cleaning up (e.g. SIGKILL)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    def __init__(self, name: str, argv: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Ctrl-C reaches only us, we stop it
            preexec_fn=_die_with_parent,  # only sets the parent-death signal
        )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM to the group, wait, then SIGKILL; always reaps the child."""
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(STOP_TIMEOUT)
            # Anything left in the group (the leader or a grandchild) is killed outright.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT)
        finally:
            self._log_file.close()

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


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


def child_env(**extra: str) -> dict[str, str]:
    """The demo's environment without INNGEST_* values that would point the children elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def wait_until(what: str, check: Callable[[], Any], timeout: float, child: Child | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if child is not None and not child.alive():
            raise DemoError(f"{child.name} exited with status {child.proc.returncode}:\n{child.tail()}")
        if time.monotonic() > deadline:
            detail = f"\n{child.tail()}" if child is not None else ""
            raise DemoError(f"{what} did not happen within {timeout:.0f}s{detail}")
        time.sleep(0.02)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


def start_listening_child(
    name: str, make_argv: Callable[[int], list[str]], health_path: str, *, env: dict[str, str], workdir: Path
) -> tuple[Child, str]:
    """Start a server on a free port; a lost race for the port (it exits at once) is retried."""
    last: DemoError | None = None
    for attempt in range(3):
        port = free_port()
        child = Child(name, make_argv(port), env=env, cwd=ROOT, log=workdir / f"{name}.{attempt}.log")
        origin = f"http://{HOST}:{port}"
        try:
            health = origin + health_path

            def up() -> bool:
                return answers(health) and owns_port(child.pid, port) is not False  # noqa: B023

            wait_until(f"{name} answering on {origin}", up, START_TIMEOUT, child)
            return child, origin
        except DemoError as error:
            child.stop()
            last = error
        except BaseException:
            child.stop()
            raise
    assert last is not None
    raise last


# ------------------------------------------------------------------------------------------------
# Talking to the engine.


class Engine:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10.0)

    def close(self) -> None:
        self.http.close()

    def sync(self, app_url: str) -> list[str]:
        reply = self.http.post("/v1/dev/apps", json={"url": app_url})
        if reply.status_code != 200:
            raise DemoError(f"syncing {app_url} failed: HTTP {reply.status_code} {reply.text}")
        apps = self.http.get("/v1/dev/apps").json()["data"]
        return [fn for app in apps if app["url"] == app_url for fn in app["functions"]]

    def send(self, name: str, data: dict[str, Any]) -> str:
        reply = self.http.post("/e/dev", json={"name": name, "data": data})
        reply.raise_for_status()
        return str(reply.json()["ids"][0])

    def stats(self) -> dict[str, int] | None:
        """The engine's counters (calls to apps, checkpoint calls), when it offers them."""
        reply = self.http.get("/v1/dev/stats")
        if reply.status_code != 200:
            return None
        data = reply.json().get("data")
        return data if isinstance(data, dict) else None

    def finished_run(self, event_id: str, timeout: float) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            runs = self.http.get(f"/v1/events/{event_id}/runs").json()["data"]
            if runs and runs[0]["status"] in ("Completed", "Failed", "Cancelled"):
                return dict(self.http.get(f"/v1/runs/{runs[0]['run_id']}").json()["data"])
            return None

        run: dict[str, Any] = wait_until(f"the run of event {event_id} finishing", done, timeout)
        return run


# ------------------------------------------------------------------------------------------------
# Measuring and printing.


def parse_ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Measured:
    def __init__(self, mode: str, run: dict[str, Any], calls: int | None, checkpoints: int | None) -> None:
        self.mode = mode
        self.run = run
        self.calls = calls
        self.checkpoints = checkpoints
        self.latency_ms = float(run["duration_ms"])
        start = parse_ts(run["run_started_at"])
        self.steps: dict[str, tuple[float, float]] = {}  # name -> (ms after the event, own ms)
        for step in run["steps"]:
            if step.get("ended_at") and step.get("duration_ms") is not None:
                name = step.get("name") or step["id"]
                self.steps[name] = ((parse_ts(step["ended_at"]) - start) * 1000, float(step["duration_ms"]))
        self.work_ms = sum(own for _, own in self.steps.values())
        self.overhead_ms = max(0.0, self.latency_ms - self.work_ms)


def measure(engine: Engine, mode: str, index: int) -> Measured:
    before = engine.stats()
    event_id = engine.send(f"demo/enrich.{mode}", {"id": index})
    run = engine.finished_run(event_id, RUN_TIMEOUT)
    if run["status"] != "Completed":
        raise DemoError(f"the {mode} run ended {run['status']}: {run.get('error')}")
    after = engine.stats()
    if before is None or after is None:
        return Measured(mode, run, None, None)
    return Measured(mode, run, after["calls"] - before["calls"], after["checkpoints"] - before["checkpoints"])


def _count(values: list[int | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "n/a"
    low, high = min(known), max(known)
    return str(low) if low == high else f"{low}-{high}"


def report(results: dict[str, list[Measured]], out: Callable[[str], None]) -> None:
    std, ckp = results["standard"], results["checkpointing"]

    def typical(runs: list[Measured]) -> Measured:
        middle = statistics.median(m.latency_ms for m in runs)
        return min(runs, key=lambda m: abs(m.latency_ms - middle))

    pair = (typical(std), typical(ckp))

    def cell(value: float | None) -> str:
        return f"{value:8.1f} ms" if value is not None else " " * 11

    def counts(m: Measured) -> str:
        return "n/a" if m.calls is None else f"{m.calls} / {m.checkpoints}"

    out("")
    out("Every run: event -> completed, and SDK requests / checkpoint calls")
    out(f"  {'':<6}{'standard':^24}  {'checkpointing':^24}".rstrip())
    for index, (a, b) in enumerate(zip(std, ckp, strict=True), start=1):
        out(f"  #{index:<5}{cell(a.latency_ms)}{counts(a):>13}  {cell(b.latency_ms)}{counts(b):>13}")

    out("")
    out("A typical run of each mode (the median's), step by step: when each step finished (ms after")
    out("the event) and the step's own time")
    out(f"  {'':<11}{'standard':^24}  {'checkpointing':^24}".rstrip())
    out(f"  {'step':<11}{'finished':>11}{'own':>13}  {'finished':>11}{'own':>13}")
    for name in STEPS:
        row = f"  {name:<11}"
        for measured in pair:
            at, own = measured.steps.get(name, (float("nan"), float("nan")))
            row += f"{cell(at)}{cell(own):>13}  "
        out(row.rstrip())
    out(f"  {'completed':<11}{cell(pair[0].latency_ms)}{'':>13}  {cell(pair[1].latency_ms)}")

    med_std = statistics.median(m.latency_ms for m in std)
    med_ckp = statistics.median(m.latency_ms for m in ckp)
    ratio = med_std / med_ckp if med_ckp > 0 else float("nan")
    out("")
    out(f"All runs ({len(std)} per mode, alternating)")
    out(f"  {'':<38}{'standard':>14}{'checkpointing':>16}")
    out(f"  {'event -> completed, median (ms)':<38}{med_std:>14.1f}{med_ckp:>16.1f}")
    best_std, best_ckp = min(m.latency_ms for m in std), min(m.latency_ms for m in ckp)
    out(f"  {'event -> completed, best (ms)':<38}{best_std:>14.1f}{best_ckp:>16.1f}")
    over_std = statistics.median(m.overhead_ms for m in std)
    over_ckp = statistics.median(m.overhead_ms for m in ckp)
    out(f"  {'time not spent in steps, median (ms)':<38}{over_std:>14.1f}{over_ckp:>16.1f}")
    calls = _count([m.calls for m in std]), _count([m.calls for m in ckp])
    out(f"  {'SDK requests per run':<38}{calls[0]:>14}{calls[1]:>16}")
    out(
        f"  {'checkpoint calls per run':<38}{_count([m.checkpoints for m in std]):>14}"
        f"{_count([m.checkpoints for m in ckp]):>16}"
    )
    out("")
    work = statistics.median(m.work_ms for m in std + ckp)
    out(f"Checkpointing completed the same five steps {ratio:.2f}x as fast (median latency); the steps' own")
    out(f"work (simulated model calls, ~{work:.0f} ms) is the same in both modes, so the difference is")
    out(
        f"orchestration: {over_std:.1f} ms vs {over_ckp:.1f} ms per run outside the steps, one round trip"
        " per step vs one request."
    )


# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted in the main thread, so `finally` blocks clean up."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def ignoring_signals() -> contextlib.AbstractContextManager[None]:
    """While children are being stopped, a second Ctrl-C must not cut the clean-up short."""

    @contextlib.contextmanager
    def manager() -> Iterator[None]:
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    return manager()


def demo(runs: int, out: Callable[[str], None]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="eagerstep-demo-"))
    children: list[Child] = []
    engine: Engine | None = None
    try:
        out("eagerstep demo: one five-step async function, standard orchestration vs checkpointing")
        engine_child, engine_url = start_listening_child(
            "engine",
            lambda port: [
                *(sys.executable, "-m", "eagerstep", "dev", "--host", HOST, "--port", str(port)),
                *("--db", str(workdir / "dev.db"), "--log-level", "warning"),
            ],
            "/health",
            env=child_env(),
            workdir=workdir,
        )
        children.append(engine_child)
        out(f"  engine  {engine_url}  (eagerstep dev, pid {engine_child.pid})")
        app_child, app_url = start_listening_child(
            "app",
            lambda port: [
                *(sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(APP_DIR)),
                *("--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log"),
            ],
            "/api/inngest",
            env=child_env(INNGEST_DEV=engine_url),
            workdir=workdir,
        )
        children.append(app_child)
        out(f"  app     {app_url}  (example_projects/fastapi_app, pid {app_child.pid})")

        engine = Engine(engine_url)
        functions = engine.sync(app_url + "/api/inngest")
        wanted = {"ai-pipeline-enrich-standard", "ai-pipeline-enrich-checkpointing"}
        if not wanted <= set(functions):
            raise DemoError(f"the app registered {functions}, not {sorted(wanted)}")
        out(f"  synced  {len(functions)} functions; sending {runs} events per mode (after one warm-up each)")

        for mode in MODES:  # warm-up: imports, connection pools, first-call costs
            measure(engine, mode, 0)
        results: dict[str, list[Measured]] = {mode: [] for mode in MODES}
        for index in range(1, runs + 1):
            for mode in MODES if index % 2 else reversed(MODES):
                results[mode].append(measure(engine, mode, index))
        report(results, out)
    finally:
        signal.alarm(0)
        with ignoring_signals():
            if engine is not None:
                engine.close()
            for child in reversed(children):
                child.stop()
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs per mode after the warm-up (default 5)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    def out(line: str) -> None:
        print(line, flush=True)

    def overall_timeout(signum: int, frame: FrameType | None) -> None:
        raise DemoError(f"the demo took longer than {OVERALL_TIMEOUT:.0f}s")

    signal.signal(signal.SIGALRM, overall_timeout)
    signal.alarm(int(OVERALL_TIMEOUT))
    try:
        with signals_raise():
            demo(args.runs, out)
    except Interrupted as stop:
        print(f"\ndemo: stopped by {stop}; the engine and the app were shut down", file=sys.stderr)
        return 130
    except DemoError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    except httpx.HTTPError as error:
        print(f"demo: the engine stopped answering: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `python scripts/demo.py | head`: the children are stopped already
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        signal.alarm(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
