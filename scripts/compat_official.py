"""Run the official inngest-py SDK's own integration suite, unmodified, against ``eagerstep dev``.

Usage: ``make compat-official INNGEST_PY_SRC=/path/to/inngest-py`` (a git checkout of
https://github.com/inngest/inngest-py). Creates a venv (``build/compat-official/venv``, reused),
installs that checkout and its test dependencies there, starts ``eagerstep dev`` on a free
loopback port, runs the suite against it and prints a pass/fail table by test file.

Left out: the Connect tests (WebSocket transport, which eagerstep dev does not serve).
Nothing from the checkout is copied into this repository.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "build" / "compat-official" / "venv"
#: Test trees run, relative to the checkout; Connect (WebSocket transport) is left out.
SUITES = ["tests/test_inngest", "tests/test_inngest_encryption"]
#: Tests that build clients with no URL in dev mode and so expect the dev server on the default
#: port: they run in a second pass with INNGEST_BASE_URL pointing at the engine. The others run
#: without it (the introspection and registration tests expect the cloud defaults).
NEEDS_BASE_URL = [
    "tests/test_inngest/test_serialization",
    "tests/test_inngest/test_serve",
    "tests/test_inngest/test_server_timings",
]
IGNORED = ["tests/test_inngest/test_connect", "tests/test_inngest/test_function/test_connect.py"]
#: The checkout's own packages (uv workspace members), installed editable (the function tests
#: import the Connect extra's modules even when no Connect test runs).
PACKAGES = ["pkg/inngest[connect]", "pkg/inngest_encryption", "pkg/test_core"]
#: Its dev extra minus linters, type checkers and stubs, which the tests do not import.
_SKIP = re.compile(r"^(mypy|pyright|ruff|build|django-types|boto3-stubs|types-|inngest|test_core)", re.I)
#: Its pinned Starlette's TestClient passes ``app=`` to httpx.Client, removed in httpx 0.28.
EXTRA = ["httpx<0.28"]

HOW_TO = """\
make compat-official: set INNGEST_PY_SRC to a checkout of the official Python SDK, e.g.

    git clone https://github.com/inngest/inngest-py /tmp/inngest-py
    make compat-official INNGEST_PY_SRC=/tmp/inngest-py

It installs that checkout and its test dependencies into build/compat-official/venv, starts
`eagerstep dev` on a free loopback port and runs the SDK's integration suite against it.
"""


def test_requirements(src: Path) -> list[str]:
    """The checkout's ``dev`` extra (pinned test dependencies), minus tooling the tests never import."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        return ["pytest", "pytest-timeout", "pytest-xdist", "pytest-django", "django", "flask", "fastapi"]
    data = tomllib.loads((src / "pyproject.toml").read_text())
    dev: list[str] = data["project"]["optional-dependencies"]["dev"]
    return [req for req in dev if not _SKIP.match(req)]


def run(cmd: list[str], **kwargs: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def install(src: Path, venv: Path) -> Path:
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    commit = git_commit(src)
    if stamp.exists() and stamp.read_text() == commit:
        return python
    if not python.exists():
        run([sys.executable, "-m", "venv", str(venv)])
    editable: list[str] = []
    for package in PACKAGES:
        path, bracket, extras = package.partition("[")
        editable += ["-e", f"{src / path}{bracket}{extras}"]
    run([str(python), "-m", "pip", "install", "--quiet", *editable, *test_requirements(src), *EXTRA])
    stamp.write_text(commit)
    return python


def git_commit(src: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_engine(port: int, db: Path, log_path: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "eagerstep",
        "dev",
        "--port",
        str(port),
        "--db",
        str(db),
        "--retry-interval",
        "0.2",
        "--log-level",
        "info",
    ]
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"eagerstep dev did not start; see {log_path}")


def table(junits: list[Path]) -> tuple[str, int, int]:
    """A Markdown table of passed/failed/skipped per test file, and the totals passed and run."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    failures: list[str] = []
    cases = [
        case for junit in junits if junit.exists() for case in ET.parse(junit).getroot().iter("testcase")
    ]
    for case in cases:
        name = (case.get("classname") or "").replace(".", "/")
        file = re.sub(r"/[A-Z][^/]*$", "", name) + ".py"  # drop a test class name
        row = counts[file]
        if case.find("failure") is not None or case.find("error") is not None:
            row[1] += 1
            failures.append(f"{file}::{case.get('name')}")
        elif case.find("skipped") is not None:
            row[2] += 1
        else:
            row[0] += 1
    lines = ["| file | passed | failed | skipped |", "|---|---:|---:|---:|"]
    for file in sorted(counts):
        passed, failed, skipped = counts[file]
        lines.append(f"| {file} | {passed} | {failed} | {skipped} |")
    passed = sum(r[0] for r in counts.values())
    failed = sum(r[1] for r in counts.values())
    skipped = sum(r[2] for r in counts.values())
    lines.append(f"| **total** | **{passed}** | **{failed}** | **{skipped}** |")
    if failures:
        lines += ["", "Failed:", *(f"- {f}" for f in failures)]
    return "\n".join(lines), passed, passed + failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -k flask)")
    parser.add_argument("--workers", default=os.environ.get("COMPAT_WORKERS", "2"), help="pytest -n")
    args = parser.parse_args()
    src_env = os.environ.get("INNGEST_PY_SRC")
    if not src_env:
        print(HOW_TO)
        return 0
    src = Path(src_env).resolve()
    if not (src / "pkg" / "inngest").is_dir():
        print(f"INNGEST_PY_SRC={src} is not a checkout of inngest-py (no pkg/inngest)\n\n{HOW_TO}")
        return 2
    python = install(src, VENV)
    work = Path(tempfile.mkdtemp(prefix="eagerstep-compat-"))
    port = free_port()
    engine_log = ROOT / "build" / "compat-official" / "engine.log"
    engine = start_engine(port, work / "engine.db", engine_log)
    out = ROOT / "build" / "compat-official"
    env = {**os.environ, "DEV_SERVER_ENABLED": "0", "DEV_SERVER_PORT": str(port)}
    env.pop("INNGEST_BASE_URL", None)
    pytest = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if args.workers not in ("0", "1"):
        pytest += ["-n", args.workers]
    ignored = [f"--ignore={path}" for path in IGNORED]
    passes = [
        (out / "junit-main.xml", env, [*ignored, *(f"--ignore={p}" for p in NEEDS_BASE_URL), *SUITES]),
        (out / "junit-base-url.xml", {**env, "INNGEST_BASE_URL": f"http://127.0.0.1:{port}"}, NEEDS_BASE_URL),
    ]
    try:
        for junit, pass_env, paths in passes:
            junit.unlink(missing_ok=True)
            cmd = [*pytest, f"--junitxml={junit}", *paths, *args.pytest_args]
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, cwd=src, env=pass_env)
    finally:
        engine.terminate()
        try:
            engine.wait(10)
        except subprocess.TimeoutExpired:
            engine.kill()
        shutil.rmtree(work, ignore_errors=True)
    text, passed, total = table([junit for junit, _, _ in passes])
    print(f"\ninngest-py {git_commit(src)} against eagerstep dev: {passed}/{total} passed\n")
    print(text)
    print(f"\n(engine log: {engine_log})")
    return 0 if passed == total else 1


if __name__ == "__main__":
    sys.exit(main())
