"""A Flask app with eagerstep: sign-ups onboarded by a durable function, events sent from the CLI.

INNGEST_DEV=1 flask --app app run --port 5000        (with `eagerstep dev` running)
flask --app app eagerstep send app/user.invited --data '{"email": "bob@example.com"}'
flask --app app invite carol@example.com
curl -L -X POST localhost:5000/summarise -H 'content-type: application/json' \
    -d '{"text": "a long text to summarise in a few words", "email": "bob@example.com"}'
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app, jsonify, request

import eagerstep
from eagerstep.integrations.flask import EagerStep, current_client
from eagerstep.integrations.flask.endpoints import durable_endpoint

client = eagerstep.Client(app_id="flask-onboarding")

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL, onboarded INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, email TEXT NOT NULL, subject TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS summaries (id INTEGER PRIMARY KEY, email TEXT NOT NULL, summary TEXT NOT NULL);
"""


@contextmanager
def db() -> Iterator[sqlite3.Connection]:
    """A connection to the app's SQLite file, committed on success (one per use: steps run in threads)."""
    connection = sqlite3.connect(current_app.config["DATABASE"], timeout=10)
    try:
        with connection:
            yield connection
    finally:
        connection.close()


def send_mail(email: str, subject: str) -> int:
    """Stands in for a mail provider: the message lands in the outbox table."""
    with db() as conn:
        return int(
            conn.execute("INSERT INTO outbox (email, subject) VALUES (?, ?)", (email, subject)).lastrowid or 0
        )


# ---------------------------------------------------------------------------------------------
# Durable functions. Plain `def` functions: on Flask each runs in the request's thread, with the app
# context available (current_app), and checkpointing reports finished steps from a sender thread.


@client.function(id="onboard-user", trigger=eagerstep.Event("app/user.signed_up"), retries=3)
def onboard_user(ctx: eagerstep.Context) -> dict[str, Any]:
    email = str(ctx.event.data["email"])

    def create_account() -> int:
        with db() as conn:
            conn.execute("INSERT OR IGNORE INTO users (email) VALUES (?)", (email,))
            row = conn.execute("SELECT id FROM users WHERE email = ?", (email,)).fetchone()
        return int(row[0])

    def mark_onboarded() -> bool:
        with db() as conn:
            conn.execute("UPDATE users SET onboarded = 1 WHERE id = ?", (user_id,))
        return True

    user_id = ctx.step.run("create-account", create_account)
    ctx.step.run("send-welcome-email", send_mail, email, "Welcome aboard!")
    ctx.step.run("mark-onboarded", mark_onboarded)
    # Fan out: other functions react to this event (here, count-signups).
    ctx.step.send_event("announce", {"name": "app/user.onboarded", "data": {"user_id": user_id}})
    return {"user_id": user_id, "email": email}


@client.function(id="count-signups", trigger=eagerstep.Event("app/user.onboarded"))
def count_signups(ctx: eagerstep.Context) -> int:
    def increment() -> int:
        with db() as conn:
            conn.execute(
                "INSERT INTO stats (name, value) VALUES ('signups', 1) "
                "ON CONFLICT(name) DO UPDATE SET value = value + 1"
            )
            return int(conn.execute("SELECT value FROM stats WHERE name = 'signups'").fetchone()[0])

    return ctx.step.run("increment", increment)


@client.function(id="invite-user", trigger=eagerstep.Event("app/user.invited"))
def invite_user(ctx: eagerstep.Context) -> dict[str, Any]:
    email = str(ctx.event.data["email"])
    message_id = ctx.step.run("send-invitation", send_mail, email, "You are invited")
    return {"email": email, "message_id": message_id}


FUNCTIONS = [onboard_user, count_signups, invite_user]


# ---------------------------------------------------------------------------------------------
# A durable endpoint: an ordinary view whose steps are checkpointed in the request. The caller gets
# its answer in the same request; if a step fails, the caller is redirected to a URL that answers
# once the orchestrator has retried it, and the steps before it do not run again.


def count(name: str) -> int:
    """How many times ``name`` has run (the example's way to show what ran, and to fail once)."""
    with db() as conn:
        conn.execute(
            "INSERT INTO stats (name, value) VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1",
            (name,),
        )
        return int(conn.execute("SELECT value FROM stats WHERE name = ?", (name,)).fetchone()[0])


def summarise_text(text: str) -> str:
    """Stands in for a model call: slow and costly in real life, so it must not run twice."""
    count("step:model")
    words = text.split()
    return " ".join(words[:6]) + ("..." if len(words) > 6 else "")


def lookup_user(email: str) -> dict[str, Any]:
    """A lookup against a flaky dependency: it fails the first time it is called."""
    if count("step:lookup") == 1:
        raise ConnectionError("the user service timed out")
    with db() as conn:
        row = conn.execute("SELECT id, onboarded FROM users WHERE email = ?", (email,)).fetchone()
    return {"email": email, "known": row is not None}


def save_summary(email: str, summary: str) -> int:
    count("step:write")
    with db() as conn:
        cursor = conn.execute("INSERT INTO summaries (email, summary) VALUES (?, ?)", (email, summary))
        return int(cursor.lastrowid or 0)


# ---------------------------------------------------------------------------------------------
# The app.


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE=str(Path(app.instance_path) / "onboarding.sqlite3"),
        # eagerstep reads EAGERSTEP_<KEY> from app.config (then the INNGEST_* environment variables).
        EAGERSTEP_CHECKPOINTING={"buffered_steps": 1},
        # Events sent while a request is handled go out only once the response is a success.
        EAGERSTEP_DEFER_EVENTS=True,
    )
    app.config.from_prefixed_env()  # e.g. FLASK_DATABASE=/tmp/app.sqlite3, FLASK_EAGERSTEP_DEV=1
    if config:
        app.config.update(config)
    Path(app.config["DATABASE"]).parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(app.config["DATABASE"]) as conn:
        conn.executescript(SCHEMA)
    conn.close()

    # Mounts the serve endpoint at /api/inngest and adds the `flask eagerstep` commands.
    EagerStep(app, client=client, functions=FUNCTIONS)

    @app.post("/signup")
    def signup() -> Any:
        email = (request.get_json(silent=True) or request.form).get("email", "").strip()
        if "@" not in email:
            return jsonify(error="a valid email is required"), 400
        # Deferred (EAGERSTEP_DEFER_EVENTS): the event leaves only if this request succeeds.
        current_client().send({"name": "app/user.signed_up", "data": {"email": email}})
        try:
            with db() as conn:
                conn.execute("INSERT INTO users (email) VALUES (?)", (email,))
        except sqlite3.IntegrityError:
            return jsonify(error=f"{email} has already signed up"), 409  # so no event is sent
        return jsonify(status="accepted", email=email), 202

    @app.post("/summarise")
    @durable_endpoint(client, id="summarise")
    def summarise(ctx: eagerstep.Context) -> Any:
        payload = request.get_json(silent=True) or {}
        text, email = str(payload.get("text", "")), str(payload.get("email", ""))
        if not text:
            return jsonify(error="text is required"), 400
        summary = ctx.step.run("model", summarise_text, text)
        user = ctx.step.run("lookup", lookup_user, email)
        summary_id = ctx.step.run("write", save_summary, email, summary)
        return jsonify(id=summary_id, summary=summary, user=user), 201

    @app.get("/users")
    def users() -> Any:
        with db() as conn:
            rows = conn.execute("SELECT id, email, onboarded FROM users ORDER BY id").fetchall()
            signups = conn.execute("SELECT value FROM stats WHERE name = 'signups'").fetchone()
        return jsonify(
            users=[{"id": r[0], "email": r[1], "onboarded": bool(r[2])} for r in rows],
            signups=signups[0] if signups else 0,
        )

    @app.get("/outbox")
    def outbox() -> Any:
        with db() as conn:
            rows = conn.execute("SELECT email, subject FROM outbox ORDER BY id").fetchall()
        return jsonify([{"email": r[0], "subject": r[1]} for r in rows])

    @app.cli.command("invite")
    @click.argument("emails", nargs=-1, required=True)
    def invite(emails: tuple[str, ...]) -> None:
        """Invite people: one app/user.invited event each (sent in one request)."""
        ids = current_client().send([{"name": "app/user.invited", "data": {"email": e}} for e in emails])
        for email, event_id in zip(emails, ids, strict=True):
            click.echo(f"{email}\t{event_id}")

    return app


app = create_app()
