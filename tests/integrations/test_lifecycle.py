"""Shutdown hooks (flush on exit and SIGTERM, keeping existing handlers) and a quiet AppConfig.ready()."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=ROOT,
    )


PRELUDE = """
    import os, signal, sys, time
    from eagerstep.integrations import _common
    real = _common.shutdown
    def traced(timeout=5.0):
        print("flushed", flush=True)
        real(timeout)
    _common.shutdown = traced
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_flushes_then_calls_the_previous_handler() -> None:
    result = run_python(
        PRELUDE
        + """
    def previous(signum, frame):
        print("previous handler", flush=True)
        sys.exit(3)
    signal.signal(signal.SIGTERM, previous)
    _common.install_shutdown_hooks()
    _common.install_shutdown_hooks()  # idempotent
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    """
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines()[:2] == ["flushed", "previous handler"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_with_the_default_handler_still_terminates() -> None:
    result = run_python(
        PRELUDE
        + """
    _common.install_shutdown_hooks()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    """
    )
    assert result.returncode == -signal.SIGTERM
    assert result.stdout.splitlines()[0] == "flushed"


def test_normal_exit_flushes() -> None:
    result = run_python(PRELUDE + "\n    _common.install_shutdown_hooks()\n")
    assert result.returncode == 0 and result.stdout.strip() == "flushed"


@pytest.mark.django
@pytest.mark.skipif(importlib.util.find_spec("django") is None, reason="needs django")
def test_django_setup_and_check_start_no_threads() -> None:
    result = run_python(
        """
        import os, threading
        os.environ["DJANGO_SETTINGS_MODULE"] = "tests.integrations.django_project.settings"
        os.environ["INNGEST_DEV"] = "1"
        import django
        from django.core.management import call_command
        django.setup()
        call_command("check")
        print(sorted(t.name for t in threading.enumerate()))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "['MainThread']"
    assert "System check identified no issues" in result.stdout
