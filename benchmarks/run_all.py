"""All benchmarks in one command (``make bench``): eagerstep standard vs checkpointing, per framework.

For a function of N trivial ``step.run`` calls (N = 1, 10, 100), served by each adapter behind a
real server on loopback (Django WSGI and Flask on werkzeug's threaded server, Django ASGI and
FastAPI on uvicorn), against the embedded engine, and the same function written with the official
``inngest`` SDK on Flask, this measures in one run:

- end-to-end latency, event accepted -> run completed (engine clock), standard vs checkpointing;
- SDK requests and checkpoint calls per run (counted by the engine host);
- in-worker overhead per checkpointed step, ``def`` and ``async def`` (timed inside the function,
  step body subtracted), plus the in-process microbenchmark when ``checkpoint_overhead.py`` exists;
- engine throughput: completed runs/s of a 3-step function at bounded concurrency, both modes;
- peak memory (VmHWM) of the engine process and of the app process.

Every number is a median (with min-max) of runs made in this invocation, and every ratio is
computed from them; nothing is asserted. Results go to ``results.json``, ``RESULTS.md`` and
``e2e_latency.png`` next to this file (or ``--out-dir``). ``--quick`` makes a smaller run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks import durable_endpoints, middleware_overhead, report  # noqa: E402

#: The apps of durable_endpoints.py, by the framework of this script they stand for.
_ENDPOINT_APPS = {"django-wsgi": "django", "flask": "flask", "fastapi": "fastapi"}

HERE = Path(__file__).resolve().parent
TS_APP = ROOT / "tests" / "compat" / "ts_app"
FRAMEWORKS = ("django-wsgi", "django-asgi", "flask", "fastapi", "inngest-flask")
OFFICIAL = "inngest-flask"
# checkpointing (def), standard (def), checkpointing (async def); and the I/O-step function, both modes
MODES = ("cp", "std", "cp-async", "io-cp", "io-std", "par-eager", "par-orch")
IO_STEPS = 10
SERVERS = {
    "django-wsgi": "werkzeug threaded (WSGI)",
    "django-asgi": "uvicorn (ASGI)",
    "flask": "werkzeug threaded (WSGI)",
    "fastapi": "uvicorn (ASGI)",
    "inngest-flask": "werkzeug threaded (WSGI)",
    "typescript": "express (node)",
}
WAIT_TIMEOUT = 20.0  # per run; the slowest (standard, N = 100) takes well under a second


@dataclass
class Config:
    frameworks: list[str]
    steps: list[int]
    runs: int  # measured runs per (N, mode) for N <= 10
    runs_100: int  # measured checkpointing runs at N = 100
    runs_std_100: int  # measured standard runs at N = 100 (each makes 101 requests)
    warmup: int
    throughput_runs: int
    concurrency: int
    typescript: bool
    microbench: bool
    endpoints: bool
    quick: bool
    engine_nodelay: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Config:
        quick = bool(args.quick)
        return cls(
            frameworks=list(args.frameworks or FRAMEWORKS),
            steps=sorted(set(args.steps or [1, 10, 100])),
            runs=args.runs or (5 if quick else 50),
            runs_100=args.runs or (3 if quick else 25),
            runs_std_100=max(1, args.runs // 3) if args.runs else (2 if quick else 10),
            warmup=1 if quick else 3,
            throughput_runs=args.throughput_runs
            if args.throughput_runs is not None
            else (40 if quick else 400),
            concurrency=args.concurrency,
            typescript=not args.no_typescript,
            microbench=not args.no_microbench,
            endpoints=not args.no_endpoints,
            quick=quick,
            engine_nodelay=bool(args.engine_nodelay),
        )


# ------------------------------------------------------------------------------------------------
# Child processes


def read_json_line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The first JSON line a child prints on stdout (bounded wait)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before it was ready")
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            if line.strip().startswith("{"):
                value: dict[str, Any] = json.loads(line)
                return value
    raise RuntimeError(f"{proc.args!r} did not report ready within {timeout}s")


def memory_kib(pid: int) -> dict[str, int]:
    """VmHWM (peak resident set) and VmRSS of a process, in KiB."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


class Child:
    """A subprocess whose stderr goes to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self, argv: Sequence[str], log: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None
    ):
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc: subprocess.Popen[str] = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=cwd or ROOT,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""


def child_env(engine_url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("INNGEST_DEV", None)
    if engine_url:
        env["BENCH_ENGINE_URL"] = engine_url
    return env


class RunTimeout(RuntimeError):
    """A run did not finish in time (recorded, and the benchmark goes on)."""


@dataclass
class Stack:
    """An engine host and one app (or none), synced; ``http`` talks to the engine."""

    engine: Child
    engine_url: str
    engine_nodelay: bool | None
    app: Child | None
    app_url: str | None
    http: httpx.Client
    figures: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def send(self, name: str) -> str:
        reply = self.http.post("/e/bench", json={"name": name, "data": {}})
        reply.raise_for_status()
        return str(reply.json()["ids"][0])

    def run(self, name: str) -> dict[str, Any]:
        """Send one event and wait for its run; the engine host's figures plus the client's wall time."""
        t0 = time.perf_counter()
        event_id = self.send(name)
        reply = self.http.get(
            f"/bench/wait/{event_id}", params={"timeout": WAIT_TIMEOUT}, timeout=WAIT_TIMEOUT + 5
        )
        wall = time.perf_counter() - t0
        if reply.status_code != 200:
            raise RunTimeout(f"{name}: no run finished within {WAIT_TIMEOUT:g}s; {self.describe(event_id)}")
        figures: dict[str, Any] = reply.json()
        figures["client_ms"] = wall * 1000
        if figures["status"] != "Completed":
            raise RuntimeError(
                f"{name}: run {figures['run_id']} ended {figures['status']}: {figures.get('error')}"
            )
        return figures

    def describe(self, event_id: str) -> str:
        """What the engine says about the runs of an event (for error messages)."""
        try:
            runs = self.http.get(f"/v1/events/{event_id}/runs").json().get("data") or []
            if not runs:
                return f"event {event_id} has no run"
            run = self.http.get(f"/v1/runs/{runs[0]['run_id']}").json().get("data") or {}
            steps = [(s.get("name"), s.get("status")) for s in run.get("steps", [])]
            return f"run {run.get('run_id')} is {run.get('status')}; steps {steps[:12]}"
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            return f"(the engine could not be asked: {exc})"

    def throughput(self, name: str, runs: int, concurrency: int) -> dict[str, Any]:
        reply = self.http.post(
            "/bench/throughput",
            params={"name": name, "runs": runs, "concurrency": concurrency},
            timeout=600,
        )
        reply.raise_for_status()
        value: dict[str, Any] = reply.json()
        return value


@contextmanager
def stack(framework: str, tmp: Path, *, engine_nodelay: bool = False) -> Iterator[Stack]:
    """Start an engine host and the framework's app (subprocesses), sync the app, yield; stop both."""
    engine = Child(
        [
            sys.executable,
            str(HERE / "engine_host.py"),
            "--db",
            str(tmp / f"{framework}-engine.db"),
            *(["--nodelay"] if engine_nodelay else []),
        ],
        tmp / f"{framework}-engine.log",
        env=child_env(),
    )
    app: Child | None = None
    http: httpx.Client | None = None
    try:
        ready = read_json_line(engine.proc, 30)
        engine_url = str(ready["url"])
        http = httpx.Client(base_url=engine_url, timeout=30)
        if framework == "typescript":
            port = _free_port()
            app = Child(["node", "app.js", str(port), engine_url], tmp / "typescript-app.log", cwd=TS_APP)
            app_url = f"http://127.0.0.1:{port}/api/inngest"
            _wait_up(app_url, app)
        else:
            app = Child(
                [sys.executable, str(HERE / "app_host.py"), framework, "--engine", engine_url],
                tmp / f"{framework}-app.log",
                env=child_env(engine_url),
            )
            app_url = str(read_json_line(app.proc, 60)["url"])
        synced = http.post("/v1/dev/apps", json={"url": app_url})
        if synced.status_code != 200:
            raise RuntimeError(f"{framework}: sync failed: {synced.text}")
        yield Stack(engine, engine_url, ready.get("nodelay"), app, app_url, http)
    except Exception:
        for child in (engine, app):
            if child is not None:
                print(f"--- {child.log_path.name}:\n{child.log_tail()}", file=sys.stderr)
        raise
    finally:
        if http is not None:
            http.close()
        if app is not None:
            app.stop()
        engine.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_up(url: str, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.proc.args!r} exited before it served")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


# ------------------------------------------------------------------------------------------------
# Measurements


def function_ids(framework: str, n: int) -> dict[str, str]:
    """Mode -> function id served by this framework at N steps."""
    io = {"io-cp": f"io-{n}-cp", "io-std": f"io-{n}-std"} if n == IO_STEPS else {}
    if framework == OFFICIAL:
        return {"std": f"steps-{n}-std", **({"io-std": io["io-std"]} if io else {})}
    # the parallel group rides along with N = 10 (it has 3 steps whatever N is)
    group = {"par-eager": "par-eager", "par-orch": "par-orch"} if n == IO_STEPS else {}
    return {"cp": f"steps-{n}-cp", "std": f"steps-{n}-std", "cp-async": f"asteps-{n}-cp", **io, **group}


def planned_runs(config: Config, n: int, mode: str) -> int:
    if n >= 100:
        return config.runs_std_100 if mode == "std" else config.runs_100
    if mode.startswith("io-"):
        return max(1, config.runs // 2)
    if mode.startswith("par-"):
        return max(1, config.runs // 5)
    return config.runs


def measure_framework(framework: str, config: Config, tmp: Path, log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"server": SERVERS[framework], "latency": {}, "first_run": {}, "timeouts": []}
    started = time.monotonic()

    def run(st: Stack, name: str, n: int) -> dict[str, Any] | None:
        try:
            return summarise_run(st.run(name), n)
        except RunTimeout as exc:
            out["timeouts"].append(str(exc))
            log(f"  TIMEOUT: {exc}")
            if len(out["timeouts"]) >= 3:
                raise
            return None

    with stack(framework, tmp, engine_nodelay=config.engine_nodelay) as st:
        # Warm-up: the first run of each function per process pays one-off costs (imports, pools,
        # the checkpoint sender and its HTTP client); recorded apart, not in the medians.
        for n in config.steps:
            for mode, fn_id in function_ids(framework, n).items():
                for i in range(config.warmup if n < 100 or mode != "std" else 1):
                    figures = run(st, f"bench/{fn_id}", n)
                    if i == 0 and figures is not None:
                        out["first_run"][f"{mode}/{n}"] = figures
        # Measured runs, interleaved so that drift (other load, thermal) hits every cell alike.
        cells = [(n, mode, fn_id) for n in config.steps for mode, fn_id in function_ids(framework, n).items()]
        samples: dict[str, list[dict[str, Any]]] = {f"{mode}/{n}": [] for n, mode, _ in cells}
        for rep in range(max(planned_runs(config, n, mode) for n, mode, _ in cells)):
            for n, mode, fn_id in cells:
                if rep < planned_runs(config, n, mode):
                    figures = run(st, f"bench/{fn_id}", n)
                    if figures is not None:
                        samples[f"{mode}/{n}"].append(figures)
        for key, runs in samples.items():
            if runs:
                out["latency"][key] = aggregate(runs)
        log(f"  latency done in {time.monotonic() - started:.1f}s")
        out["throughput"] = {}
        if config.throughput_runs:
            modes = ["std"] if framework in (OFFICIAL, "typescript") else ["cp", "std"]
            for mode in modes:
                result = st.throughput(f"bench/three-{mode}", config.throughput_runs, config.concurrency)
                out["throughput"][mode] = result
            log(f"  throughput done in {time.monotonic() - started:.1f}s")
        assert st.app is not None
        out["memory_kib"] = {"engine": memory_kib(st.engine.pid), "app": memory_kib(st.app.pid)}
        out["engine_nodelay"] = st.engine_nodelay
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def measure_typescript(config: Config, tmp: Path, log: Any) -> dict[str, Any]:
    """The official TypeScript SDK (checkpointing on, its default) serving its 10-step function."""
    out: dict[str, Any] = {"server": SERVERS["typescript"], "latency": {}, "first_run": {}}
    started = time.monotonic()
    with stack("typescript", tmp, engine_nodelay=config.engine_nodelay) as st:
        first = st.run("ts/run")
        out["first_run"]["cp/10"] = summarise_run(first, 10)
        for _ in range(config.warmup - 1):
            st.run("ts/run")
        out["latency"]["cp/10"] = aggregate([summarise_run(st.run("ts/run"), 10) for _ in range(config.runs)])
        assert st.app is not None
        out["memory_kib"] = {"engine": memory_kib(st.engine.pid), "app": memory_kib(st.app.pid)}
    out["seconds"] = round(time.monotonic() - started, 1)
    log(f"  done in {out['seconds']}s")
    return out


def engine_round_trips(config: Config, tmp: Path, log: Any) -> dict[str, Any]:
    """Keep-alive round trips to the engine's API (http.client, one write per request, as the
    checkpoint sender does): as shipped, and with TCP_NODELAY on the listening socket."""
    import http.client

    out: dict[str, Any] = {}
    samples = 10 if config.quick else 30
    for label, nodelay in (("as shipped", False), ("TCP_NODELAY", True)):
        engine = Child(
            [
                sys.executable,
                str(HERE / "engine_host.py"),
                "--db",
                str(tmp / f"api-{label.replace(' ', '-')}-engine.db"),
                *(["--nodelay"] if nodelay else []),
            ],
            tmp / f"api-{int(nodelay)}-engine.log",
            env=child_env(),
        )
        try:
            ready = read_json_line(engine.proc, 30)
            host, port = str(ready["url"]).rsplit("/", 1)[-1].split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            row: dict[str, Any] = {"nodelay": ready.get("nodelay")}
            requests = {
                "POST /e/{key}": ("POST", "/e/bench", b'{"name":"bench/nobody-listens","data":{}}'),
                "POST /v1/checkpoint (unknown run)": (
                    "POST",
                    "/v1/checkpoint/01J00000000000000000000000/async",
                    b'{"run_id":"01J00000000000000000000000","fn_id":"x","steps":[]}',
                ),
            }
            for name, (method, path, body) in requests.items():
                times = []
                for _ in range(samples + 2):
                    t0 = time.perf_counter()
                    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
                    conn.getresponse().read()
                    times.append((time.perf_counter() - t0) * 1000)
                row[name] = stats(times[2:])
            conn.close()
            out[label] = row
        finally:
            engine.stop()
        if ready.get("nodelay"):
            break  # the engine already sets TCP_NODELAY: nothing to compare
    log("  engine API round trips measured")
    return out


def summarise_run(figures: dict[str, Any], n: int) -> dict[str, Any]:
    run: dict[str, Any] = {
        "e2e_ms": (figures["ended_at"] - figures["created_at"]) * 1000,
        "client_ms": figures["client_ms"],
        "start_to_end_ms": None,
        "sdk_requests": figures["sdk_requests"],
        "checkpoint_calls": figures["checkpoint_calls"],
    }
    output = figures.get("output")
    if isinstance(output, dict) and "loop_ns" in output and n:
        run["step_overhead_us"] = (output["loop_ns"] - output["body_ns"]) / n / 1000
    if isinstance(output, dict) and "started" in output:
        # the function's last (in checkpointing mode: only) invocation started -> run completed
        run["start_to_end_ms"] = (figures["ended_at"] - output["started"]) * 1000
        # where the time goes: accepted -> function starts (engine dispatch, HTTP, framework, request
        # parsing), the step loop, and loop end -> run completed (reply, engine applies it)
        run["accept_to_start_ms"] = (output["started"] - figures["created_at"]) * 1000
        if "loop_ns" in output:
            run["loop_ms"] = output["loop_ns"] / 1e6
            run["after_loop_ms"] = run["start_to_end_ms"] - run["loop_ms"] - output.get("body_ns", 0) / 1e6
    return run


def stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = stats(values)
    return out


def microbench(config: Config, log: Any) -> dict[str, Any] | None:
    """The checkpoint helper's in-process overhead benchmark (``checkpoint_overhead.py``), when present:
    its printed table, and the numbers parsed from its rows."""
    path = HERE / "checkpoint_overhead.py"
    if not config.microbench or not path.exists():
        return None
    argv = [sys.executable, str(path), "--steps", "100" if config.quick else "200"]
    argv += ["--repeats", "5" if config.quick else "20"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT, env=child_env())
    except subprocess.TimeoutExpired:
        log("  checkpoint_overhead.py timed out")
        return {"error": "timed out after 300 s"}
    out: dict[str, Any] = {"command": " ".join(["python", "benchmarks/checkpoint_overhead.py", *argv[2:]])}
    if done.returncode != 0:
        log(f"  checkpoint_overhead.py failed (exit {done.returncode})")
        out["error"] = f"exit {done.returncode}: {done.stderr.strip()[-1500:]}"
        return out
    out["text"] = done.stdout.strip()
    rows: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        for name in ("async def", "def"):
            if line.startswith(name):
                numbers = re.findall(r"-?\d+(?:\.\d+)?", line[len(name) :].split(")", 1)[-1])
                if len(numbers) >= 6:
                    values = [float(x) for x in numbers]
                    rows[name] = {
                        "step_loop_us": {"median": values[0], "min": values[1], "max": values[2]},
                        "whole_request_us": {"median": values[3], "min": values[4], "max": values[5]},
                    }
                break
    out["rows"] = rows
    return out


# ------------------------------------------------------------------------------------------------
# Machine and versions


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    from importlib import metadata

    for dist in (
        "eagerstep",
        "django",
        "flask",
        "werkzeug",
        "fastapi",
        "starlette",
        "uvicorn",
        "httpx",
        "inngest",
    ):
        with suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    node = shutil.which("node")
    if node:
        try:
            versions["node"] = subprocess.run(
                [node, "--version"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            package = json.loads((TS_APP / "node_modules" / "inngest" / "package.json").read_text())
            versions["inngest (npm)"] = package["version"]
        except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
            pass
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, cwd=ROOT
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "eagerstep"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=ROOT,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        head, dirty = "", ""
    return {
        "git": {"commit": head, "eagerstep_modified": bool(dirty)},
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ------------------------------------------------------------------------------------------------


def keep_logs(tmp: Path, framework: str, into: Path, log: Any) -> None:
    """Copy a failed section's engine and app logs out of the temporary directory."""
    into.mkdir(parents=True, exist_ok=True)
    for path in tmp.glob(f"{framework}-*.log"):
        shutil.copy(path, into / path.name)
    log(f"  logs kept in {into}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a minute or so)")
    parser.add_argument("--frameworks", nargs="+", choices=[*FRAMEWORKS], help="default: all")
    parser.add_argument("--steps", nargs="+", type=int, choices=[1, 10, 100], help="default: 1 10 100")
    parser.add_argument("--runs", type=int, help="measured runs per cell (default 50; quick 5)")
    parser.add_argument("--throughput-runs", type=int, help="runs per throughput figure (0: skip)")
    parser.add_argument("--concurrency", type=int, default=8, help="runs in flight at most (throughput)")
    parser.add_argument("--no-typescript", action="store_true", help="skip the TypeScript SDK row")
    parser.add_argument("--no-microbench", action="store_true", help="skip checkpoint_overhead.py")
    parser.add_argument("--no-endpoints", action="store_true", help="skip durable_endpoints.py")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--engine-nodelay",
        action="store_true",
        help="set TCP_NODELAY on the engine's listening socket (A/B against what eagerstep.engine ships)",
    )
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where results go (default: benchmarks/)")
    return parser.parse_args(argv)


def previous_figures(path: Path) -> dict[str, Any] | None:
    """The checkpointing figures of the run this one replaces (its ``results.json``), to show next to
    the new ones: what a change to the SDK did, at a glance. None if there was no earlier run."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    latency: dict[str, Any] = {}
    for framework, data in old.get("frameworks", {}).items():
        cells = data.get("latency", {})
        latency[framework] = {
            key: {field: cell.get(field) for field in ("e2e_ms", "start_to_end_ms", "checkpoint_calls")}
            for key, cell in cells.items()
            if key.startswith(("cp/", "io-cp/"))
        }
    machine_info = old.get("machine", {})
    return {
        "commit": machine_info.get("git", {}).get("commit"),
        "date": machine_info.get("date"),
        "latency": latency,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    config = Config.from_args(args)
    began = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {message}", file=sys.stderr, flush=True)

    results: dict[str, Any] = {
        "machine": machine(),
        "config": {k: v for k, v in vars(config).items()},
        "frameworks": {},
        "errors": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="eagerstep-bench-"))
    try:
        for framework in config.frameworks:
            log(f"{framework}: starting")
            try:
                results["frameworks"][framework] = measure_framework(framework, config, tmp, log)
            except Exception as exc:  # one broken framework must not hide the others' numbers
                results["errors"][framework] = f"{type(exc).__name__}: {exc}"
                log(f"{framework}: FAILED: {exc}")
                keep_logs(tmp, framework, args.out_dir / "logs", log)
        try:
            results["engine_api"] = engine_round_trips(config, tmp, log)
        except Exception as exc:
            results["errors"]["engine_api"] = f"{type(exc).__name__}: {exc}"
        ts_ready = shutil.which("node") and (TS_APP / "node_modules" / "inngest").is_dir()
        if config.typescript and ts_ready and 10 in config.steps:
            log("typescript: starting")
            try:
                results["frameworks"]["typescript"] = measure_typescript(config, tmp, log)
            except Exception as exc:
                results["errors"]["typescript"] = f"{type(exc).__name__}: {exc}"
                log(f"typescript: FAILED: {exc}")
                keep_logs(tmp, "typescript", args.out_dir / "logs", log)
        if config.microbench:
            log("microbenchmark (checkpoint_overhead.py)")
        results["microbench"] = microbench(config, log)
        if config.microbench:
            log("middleware overhead (middleware_overhead.py)")
            try:
                results["middleware"] = middleware_overhead.main(
                    ["--steps", "200", "--repeats", "5" if config.quick else "20"]
                )
            except Exception as exc:  # e.g. the otel extra not installed
                results["errors"]["middleware"] = f"{type(exc).__name__}: {exc}"
                log(f"middleware overhead: FAILED: {exc}")
        endpoint_apps = [app for fw, app in _ENDPOINT_APPS.items() if fw in config.frameworks]
        if config.endpoints and endpoint_apps:
            log("durable endpoints (durable_endpoints.py)")
            try:
                results["durable_endpoints"] = durable_endpoints.main(
                    [
                        "--requests",
                        str(50 if config.quick else 300),
                        "--frameworks",
                        *endpoint_apps,
                    ]
                )
            except Exception as exc:
                results["errors"]["durable_endpoints"] = f"{type(exc).__name__}: {exc}"
                log(f"durable endpoints: FAILED: {exc}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["seconds"] = round(time.monotonic() - began, 1)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results["previous"] = previous_figures(args.out_dir / "results.json")
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = report.markdown(results)
    (args.out_dir / "RESULTS.md").write_text(markdown)
    if not args.no_plot:
        report.plot(results, args.out_dir / "e2e_latency.png")
    print(markdown)
    log(f"wrote {args.out_dir / 'results.json'}, RESULTS.md" + ("" if args.no_plot else ", e2e_latency.png"))
    return results


if __name__ == "__main__":
    main()
