"""docs/testing.md runs as written: its pytest examples are called with the plugin's fixture, its
Django TestCase runs inside the example shop (a child process: Django settings belong to it)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from eagerstep.testing import Harness
from tests.test_docs import ROOT, blocks

DOC = ROOT / "docs" / "testing.md"
SHOP = ROOT / "example_projects" / "django_shop"

pytestmark = [pytest.mark.engine, pytest.mark.timeout(120)]


def _doc_tests() -> tuple[dict[str, Any], list[str]]:
    namespace: dict[str, Any] = {"__name__": "docs_testing"}
    for block in blocks(DOC):
        if block.skip_reason is None:
            exec(compile(block.code, block.where, "exec"), namespace)
    return namespace, [name for name in namespace if name.startswith("test_")]


def test_the_pytest_examples_are_there() -> None:
    _, names = _doc_tests()
    assert names == [
        "test_order_is_charged_once_after_two_gateway_errors",
        "test_an_approved_reply_is_sent",
        "test_an_unanswered_ticket_times_out",
    ]
    assert 'pytest_plugins = ["eagerstep.testing.plugin"]' in DOC.read_text()


@pytest.mark.parametrize("name", _doc_tests()[1])
def test_each_pytest_example_passes(name: str) -> None:
    pytest.importorskip("flask")
    pytest.importorskip("fastapi")
    namespace, _ = _doc_tests()
    test = namespace[name]
    assert list(inspect.signature(test).parameters) == ["eagerstep_harness"]
    started: list[Harness] = []

    def eagerstep_harness(target: Any, client: Any, **options: Any) -> Harness:
        harness = Harness(target, client, **options).start()
        started.append(harness)
        return harness

    try:
        test(eagerstep_harness)
    finally:
        for harness in started:
            harness.close()


RUN_TESTCASE = textwrap.dedent(
    """
    import sys, unittest
    import django
    django.setup()
    from django.test.runner import DiscoverRunner

    code = sys.stdin.read()
    runner = DiscoverRunner(verbosity=0, interactive=False)
    runner.setup_test_environment()
    databases = runner.setup_databases()
    try:
        namespace = {"__name__": "docs_testing_django"}
        exec(compile(code, "docs/testing.md", "exec"), namespace)
        cases = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, unittest.TestCase)
                 and v.__module__ == "docs_testing_django"]
        suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(c) for c in cases)
        result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    finally:
        runner.teardown_databases(databases)
        runner.teardown_test_environment()
    sys.exit(0 if result.wasSuccessful() and result.testsRun else 1)
    """
)


def test_the_django_testcase_example_passes_in_the_example_shop(tmp_path: Path) -> None:
    pytest.importorskip("django")
    (block,) = [b for b in blocks(DOC) if b.first_line == "# shop/tests.py"]
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("INNGEST_") and k != "DJANGO_SETTINGS_MODULE"
    }
    env.update(DJANGO_SETTINGS_MODULE="shop_project.settings", SHOP_DATABASE=str(tmp_path / "db.sqlite3"))
    done = subprocess.run(
        [sys.executable, "-c", RUN_TESTCASE],
        input=block.code,
        cwd=SHOP,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ran 2 tests" in done.stderr + done.stdout
