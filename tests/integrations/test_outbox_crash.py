"""The outbox survives a crash between commit and send: a child process commits an order whose
event went to the outbox, is SIGKILLed before its post-commit send, and ``manage.py
eagerstep_outbox`` delivers the event afterwards, exactly once, even when run again after
(a simulated) crash between the send and marking the row sent.

The engine runs in this process (eagerstep.testing's harness, a function listening for the event);
the Django project runs only in child processes, on a SQLite file."""

from __future__ import annotations

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("django") is None or importlib.util.find_spec("flask") is None:
    pytest.skip("needs django and flask", allow_module_level=True)
pytest.importorskip("uvicorn")  # the engine extra

from flask import Flask

import eagerstep
from eagerstep.integrations.flask import blueprint
from eagerstep.testing import Harness, wsgi

pytestmark = [pytest.mark.django, pytest.mark.engine, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
EVENT = "shop/order.placed"

client = eagerstep.Client(app_id="outbox-consumer")


@client.function(id="process-order", trigger=eagerstep.Event(EVENT))
def process_order(ctx: eagerstep.Context) -> int:
    return int(ctx.step.run("charge", lambda: ctx.event.data["order_id"]))


app = Flask(__name__)
app.register_blueprint(blueprint(client, [process_order]))


@pytest.fixture
def h() -> Iterator[Harness]:
    with Harness(wsgi(app), client) as harness:
        yield harness


def child_env(h: Harness, db: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("INNGEST_") and k != "DJANGO_SETTINGS_MODULE"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="tests.integrations.outbox_project.settings",
        OUTBOX_TEST_DB=str(db),
        INNGEST_DEV=h.url,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env


def outbox_rows(db: Path) -> list[tuple[str, Any]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT id, sent_at FROM eagerstep_outbox ORDER BY created_at"))


def resend(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "django", "eagerstep_outbox", "--min-age", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def receipts(h: Harness, event_id: str) -> int:
    return sum(1 for received in h.events(EVENT) if received == event_id)


def test_killed_between_commit_and_send_the_event_is_delivered_once(h: Harness, tmp_path: Path) -> None:
    db = tmp_path / "shop.sqlite3"
    env = child_env(h, db)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integrations.outbox_project.place_order", "7", "--hang-after-commit"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines: list[str] = []
        assert child.stdout is not None
        for line in child.stdout:  # bounded by the test's timeout
            lines.append(line)
            if line.startswith("COMMITTED"):
                break
        assert lines and lines[-1].startswith("COMMITTED"), "".join(lines)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(10)
    (event_id,) = [line.split()[1] for line in lines if line.startswith("EVENT")]

    # The order's transaction committed with its outbox row; the event never left the process.
    assert outbox_rows(db) == [(event_id, None)]
    assert h.events(EVENT) == []

    assert "sent 1 outbox event(s)" in resend(env)
    run = h.wait(event_id)
    assert run.completed and run.output == 7
    assert len(h.runs(event_id)) == 1 and receipts(h, event_id) == 1
    ((row_id, sent_at),) = outbox_rows(db)
    assert row_id == event_id and sent_at is not None

    assert "sent 0 outbox event(s)" in resend(env)  # nothing left: not sent again
    assert receipts(h, event_id) == 1

    # A crash after the send and before the row was marked sent: the resend sends it again, with
    # the same id; the event API keeps the first and starts no second run.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE eagerstep_outbox SET sent_at = NULL")
    assert "sent 1 outbox event(s)" in resend(env)
    h.settle()
    assert receipts(h, event_id) == 2
    assert len(h.runs(event_id)) == 1


def test_without_a_crash_the_post_commit_send_delivers_it(h: Harness, tmp_path: Path) -> None:
    db = tmp_path / "shop.sqlite3"
    env = child_env(h, db)
    done = subprocess.run(
        [sys.executable, "-m", "tests.integrations.outbox_project.place_order", "8"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "DONE" in done.stdout, done.stdout + done.stderr
    (event_id,) = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("EVENT")]
    assert h.wait(event_id).output == 8
    ((_, sent_at),) = outbox_rows(db)
    assert sent_at is not None
    assert "sent 0 outbox event(s)" in resend(env)
    assert len(h.runs(event_id)) == 1
