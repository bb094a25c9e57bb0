"""The benchmark harness (``make bench``) in its smallest configuration, so it keeps working.

One framework, N = 1, two runs per cell, a tiny throughput figure; checks the files and the shape of
the results, never a timing.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        any(importlib.util.find_spec(name) is None for name in ("flask", "matplotlib", "uvicorn")),
        reason="needs flask, matplotlib and uvicorn",
    ),
]


def test_smallest_benchmark_run(tmp_path: Path) -> None:
    from benchmarks import run_all

    results = run_all.main(
        [
            "--quick",
            "--frameworks",
            "flask",
            "--steps",
            "1",
            "--runs",
            "2",
            "--throughput-runs",
            "4",
            "--concurrency",
            "2",
            "--no-typescript",
            "--no-microbench",
            "--no-endpoints",
            "--out-dir",
            str(tmp_path),
        ]
    )
    assert results["errors"] == {}
    saved = json.loads((tmp_path / "results.json").read_text())
    flask = saved["frameworks"]["flask"]
    for key in ("cp/1", "std/1", "cp-async/1"):
        assert flask["latency"][key]["e2e_ms"]["n"] == 2
    assert flask["latency"]["std/1"]["sdk_requests"]["median"] == 2  # one step: two requests
    assert flask["latency"]["cp/1"]["sdk_requests"]["median"] == 1
    assert "step_overhead_us" in flask["latency"]["cp/1"]
    assert set(flask["throughput"]) == {"cp", "std"}
    assert flask["memory_kib"]["engine"]["VmHWM"] > 0 and flask["memory_kib"]["app"]["VmHWM"] > 0
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "## End-to-end latency" in markdown and "| Flask |" in markdown
    assert (tmp_path / "e2e_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
