"""benchmarks/middleware_overhead.py in its smallest configuration, so it keeps working: checks the
rows it prints, never a timing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        importlib.util.find_spec("opentelemetry.sdk") is None, reason="needs the OpenTelemetry SDK"
    ),
]


def test_the_middleware_benchmark_prints_its_rows() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/middleware_overhead.py", "--steps", "20", "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith(("def ", "async def "))]
    assert len(rows) == 6, done.stdout
    for middleware in ("none", "empty hooks", "OpenTelemetry"):
        assert sum(f" {middleware} " in row for row in rows) == 2, done.stdout
