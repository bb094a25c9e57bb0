"""Docs that run: every Python block of README.md and docs/*.md compiles, uses no name it does not
define or import, and (except the few listed below) executes; the apps the quickstarts build are
served and run against the engine until their runs complete."""

from __future__ import annotations

import ast
import builtins
import dis
import os
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)

#: Blocks that are shown but not executed here, by (file, first line), with the reason.
NOT_RUN = {
    ("README.md", "# Flask"): "Flask and Django lines side by side, each for its own project",
    ("django.md", "# shop/durable.py"): "a module of a Django app: imported in one by the test below",
    ("django.md", "# shop/views.py"): "a module of a Django app: imported in one by the test below",
    ("ai.md", "import os"): "needs real model API keys in the environment",
    ("durable-endpoints.md", "# shop/views.py"): "a Django app's views module: tests/endpoints runs them",
    ("testing.md", "# shop/tests.py"): (
        "a Django app's tests.py: tests/testing/test_docs_testing.py runs it inside the example shop"
    ),
    ("ai.md", "# fake_model.py: python fake_model.py  (listens on 127.0.0.1:9100)"): (
        "a server that runs until stopped; tests/engine/test_step_ai.py runs the same flow"
    ),
    ("ai.md", "# app.py: INNGEST_DEV=1 flask --app app run --port 8000"): (
        "the app of the example above; tests/engine/test_step_ai.py runs the same flow"
    ),
}
#: Whole documents whose blocks are compiled and checked for undefined names, not executed.
NOT_EXECUTED = {"django.md": "settings and modules of a Django project"}


@dataclass
class Block:
    path: Path
    line: int
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.code.splitlines()[0] if self.code.strip() else ""

    @property
    def skip_reason(self) -> str | None:
        if self.path.name in NOT_EXECUTED:
            return NOT_EXECUTED[self.path.name]
        return NOT_RUN.get((self.path.name, self.first_line))


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    return [Block(path, text[: m.start()].count("\n") + 2, m.group(1)) for m in _BLOCK.finditer(text)]


def _docs_with_code() -> list[Any]:
    return [pytest.param(p, id=p.name) for p in DOCS if blocks(p)]


def _defined_names(tree: ast.Module) -> set[str]:
    """Names a block binds at module level: imports, definitions, assignments."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _globals_used_in_functions(code: types.CodeType) -> Iterator[tuple[str, int]]:
    """(name, line) of every global a function body of ``code`` reads (they fail only when called)."""
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            for instruction in dis.get_instructions(const):
                if instruction.opname == "LOAD_GLOBAL":
                    positions = getattr(instruction, "positions", None)  # Python 3.11+
                    yield str(instruction.argval), (positions.lineno or 0) if positions else 0
            yield from _globals_used_in_functions(const)


@pytest.mark.parametrize("path", _docs_with_code())
def test_every_block_compiles_and_defines_what_its_functions_use(path: Path) -> None:
    doc_blocks = blocks(path)
    known = set(dir(builtins))
    for block in doc_blocks:
        known |= _defined_names(ast.parse(block.code, block.where))
    problems = []
    for block in doc_blocks:
        code = compile(block.code, block.where, "exec")
        for name, line in _globals_used_in_functions(code):
            if name not in known:
                where = f"{path.name}:{block.line + line - 1}" if line else block.where
                problems.append(f"{where}: {name!r} is used but never defined")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", _docs_with_code())
def test_blocks_execute_in_order(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each document's blocks run in one namespace, in order, as a reader pastes them into a file."""
    monkeypatch.setenv("INNGEST_DEV", "1")  # the clients read it when first used, not here
    runnable = [b for b in blocks(path) if b.skip_reason is None]
    if not runnable:
        pytest.skip(f"{path.name}: {NOT_EXECUTED.get(path.name, 'no block to run')}")
    namespace: dict[str, Any] = {"__name__": f"docs_{path.stem}"}
    for block in runnable:
        exec(compile(block.code, block.where, "exec"), namespace)


# ---------------------------------------------------------------- the quickstarts, against the engine


def _namespace(path: Path, upto: str | None = None) -> dict[str, Any]:
    """Run a document's blocks up to the one starting with ``upto`` (excluded)."""
    namespace: dict[str, Any] = {"__name__": f"docs_{path.stem}"}
    for block in blocks(path):
        if upto is not None and block.first_line.startswith(upto):
            break
        if block.skip_reason is None:
            exec(compile(block.code, block.where, "exec"), namespace)
    return namespace


QUICKSTARTS = [
    # document, the block to stop before, the app's attribute, framework, event, data, the output
    pytest.param(
        "README.md", None, "app", "asgi", "shop/order.created", {"id": 1}, {"status": "done"}, id="README"
    ),
    pytest.param(
        "docs/index.md", None, "app", "asgi", "app/user.created", {"id": 42}, {"greeted": "Ada"}, id="index"
    ),
    pytest.param(
        "docs/fastapi.md",
        "from eagerstep.integrations.fastapi import EagerStepMiddleware",
        "app",
        "asgi",
        "shop/order.created",
        {"id": 1},
        {"status": "done"},
        id="fastapi",
    ),
    pytest.param(
        "docs/flask.md",
        "from eagerstep.integrations.flask import blueprint",
        "app",
        "wsgi",
        "shop/order.created",
        {"id": 1},
        {"status": "done"},
        id="flask",
    ),
]


@pytest.mark.engine
@pytest.mark.timeout(60)
@pytest.mark.parametrize(("doc", "upto", "attribute", "kind", "event", "data", "output"), QUICKSTARTS)
def test_the_quickstart_runs_against_the_engine(
    doc: str,
    upto: str | None,
    attribute: str,
    kind: str,
    event: str,
    data: dict[str, Any],
    output: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("uvicorn")
    from eagerstep.engine import EngineServer
    from tests.engine.helpers import EngineClient, asgi_app_server, wait_for, wsgi_app_server

    with EngineServer(tmp_path / "engine.db") as engine:
        monkeypatch.setenv("INNGEST_DEV", engine.url)
        app = _namespace(ROOT / doc, upto)[attribute]
        server = asgi_app_server(app) if kind == "asgi" else wsgi_app_server(app)
        with server as origin:
            api = EngineClient(engine.url)
            try:
                reply = api.sync(origin + "/api/inngest")
                assert reply["app_status"] == 200, reply
                event_id = api.send(event, data)
                wait_for(
                    lambda: any(t["kind"] == "sleep" for t in api.http.get("/v1/dev/timers").json()["data"])
                )
                assert api.fire_timers() >= 1  # what the docs tell the reader to run
                run = api.wait_run(event_id)
            finally:
                api.close()
    assert run["status"] == "Completed", run["error"]
    assert run["output"] == output


_IMPORT_IN_DJANGO = """
import os, sys
import django
sys.path.insert(0, os.getcwd())
django.setup()
for where, code in {blocks!r}:
    exec(compile(code, where, "exec"), {{"__name__": "docs_block"}})
    print("imported", where)
"""


@pytest.mark.django
@pytest.mark.timeout(60)
def test_the_django_modules_import_in_a_django_project(tmp_path: Path) -> None:
    """django.md's ``shop/durable.py`` and ``shop/views.py`` import inside the example Django shop
    (which has a ``shop`` app with an ``Order`` model), as they would in the reader's project."""
    pytest.importorskip("django")
    modules = [
        (b.where, b.code) for b in blocks(ROOT / "docs" / "django.md") if b.first_line.startswith("# shop/")
    ]
    assert [where for where, _ in modules] and len(modules) == 2
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop_project.settings",
        "SHOP_DATABASE": str(tmp_path / "shop.sqlite3"),
        "INNGEST_DEV": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_IN_DJANGO.format(blocks=modules)],
        cwd=ROOT / "example_projects" / "django_shop",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("imported django.md:") == 2, done.stdout
