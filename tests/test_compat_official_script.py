"""scripts/compat_official.py (`make compat-official`): without a checkout it says how to get one and
exits 0; with one that is not inngest-py it refuses; its table counts junit results by file."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "compat_official.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compat_official", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "INNGEST_PY_SRC"}
    if env_value is not None:
        env["INNGEST_PY_SRC"] = env_value
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_without_a_checkout_it_says_how_to_get_one(tmp_path: Path) -> None:
    result = run(None)
    assert result.returncode == 0
    assert "git clone https://github.com/inngest/inngest-py" in result.stdout
    assert "INNGEST_PY_SRC" in result.stdout
    result = run(str(tmp_path))
    assert result.returncode == 2 and "not a checkout of inngest-py" in result.stdout


def test_table_counts_by_file(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(
        """<testsuites><testsuite>
        <testcase classname="tests.test_a.TestThing" name="test_ok"/>
        <testcase classname="tests.test_a.TestThing" name="test_bad"><failure message="x"/></testcase>
        <testcase classname="tests.test_b" name="test_skip"><skipped/></testcase>
        <testcase classname="tests.test_b" name="test_err"><error message="y"/></testcase>
        </testsuite></testsuites>"""
    )
    text, passed, total = load().table([junit, tmp_path / "missing.xml"])
    assert (passed, total) == (1, 3)
    assert "| tests/test_a.py | 1 | 1 | 0 |" in text and "| tests/test_b.py | 0 | 1 | 1 |" in text
    assert "- tests/test_a.py::test_bad" in text and "- tests/test_b.py::test_err" in text
