"""``flask eagerstep``: list the functions, send an event, sync the app with the orchestrator."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from eagerstep.integrations.flask import state

eagerstep_cli = AppGroup("eagerstep", help="eagerstep durable functions.")


@eagerstep_cli.command("list")
def list_functions() -> None:
    """List the functions this app serves, with their triggers."""
    for function in state().functions:
        for each in function.all_functions():
            triggers = ", ".join(
                f"event {t.name}" if hasattr(t, "name") else f"cron {t.expr}" for t in each.triggers
            )
            click.echo(f"{each.fully_qualified_id}\t{triggers or '(on failure)'}")


@eagerstep_cli.command("send")
@click.argument("name")
@click.option("--data", default="{}", help="The event's data, as a JSON object.")
def send_event(name: str, data: str) -> None:
    """Send one event NAME (with --data '{"k": "v"}') and print its id."""
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--data") from error
    for event_id in state().client.send({"name": name, "data": payload}):
        click.echo(event_id)


@eagerstep_cli.command("sync")
@click.option("--url", help="The public URL of the serve endpoint (default: SERVE_ORIGIN + the prefix).")
def sync(url: str | None) -> None:
    """Register this app's functions with the orchestrator (what a PUT to the endpoint does)."""
    current = state()
    if url is None:
        origin = current.client.settings.serve_origin
        if not origin:
            raise click.UsageError(
                "Pass --url, or set EAGERSTEP_SERVE_ORIGIN (e.g. https://shop.example.com)"
            )
        url = origin + (current.client.settings.serve_path or current.url_prefix)
    response = current.handler.register(url)
    click.echo(f"{response.status} {response.body.decode(errors='replace')}")
    if response.status >= 400:
        raise SystemExit(1)
