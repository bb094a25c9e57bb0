"""scripts/demo.py (`make demo`): completes, prints both modes, leaves nothing behind; Ctrl-C safe."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

for _module in ("fastapi", "uvicorn", "celpy"):  # the example app and the engine
    pytest.importorskip(_module)

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo.py"

pytestmark = [pytest.mark.engine, pytest.mark.timeout(120)]


def child_pids(output: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"pid (\d+)\)", output)]


def ports(output: str) -> list[int]:
    return [int(port) for port in re.findall(r"http://127\.0\.0\.1:(\d+)", output)]


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def assert_nothing_left(pids: list[int], used_ports: list[int]) -> None:
    deadline = time.monotonic() + 10
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids if running(pid)] == []
    assert [port for port in used_ports if listening(port)] == []


def demo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_demo_runs_both_modes_and_cleans_up() -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO), "--runs", "2"],
        capture_output=True,
        text=True,
        timeout=100,
        env=demo_env(),
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "standard" in out and "checkpointing" in out
    for step in ("fetch", "clean", "embed", "score", "store", "completed"):
        assert re.search(rf"^\s+{step}\s+\d", out, re.M), out
    assert re.search(r"event -> completed, median \(ms\)\s+[\d.]+\s+[\d.]+", out), out
    assert re.search(r"SDK requests per run\s+6\s+1\b", out), out  # 5 steps + completion vs one request
    pids = child_pids(out)
    assert len(pids) == 2, out
    assert_nothing_left(pids, ports(out))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_demo_interrupted_leaves_no_child(signum: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(DEMO), "--runs", "500"],  # far more than it can do before the signal
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=demo_env(),
        cwd=ROOT,
    )
    seen = ""
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while "synced" not in seen:  # both children are up and work has started
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                break
            seen += line
        assert "synced" in seen, seen + (proc.stderr.read() if proc.stderr else "")
        time.sleep(0.3)  # in the middle of the runs
        proc.send_signal(signum)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, seen + rest + err
    assert "stopped by" in err
    assert_nothing_left(child_pids(seen), ports(seen))
