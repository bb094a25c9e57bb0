"""eagerstep for Flask: ``blueprint(client, functions)`` or the ``EagerStep(app)`` extension."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, current_app, g
from flask import Response as FlaskResponse
from flask import request as flask_request
from werkzeug.wsgi import get_input_stream

from eagerstep.core import deferred
from eagerstep.core.client import Client
from eagerstep.core.comm import CommHandler
from eagerstep.core.function import Function
from eagerstep.core.messages import Request as CommRequest
from eagerstep.integrations._common import DEFAULT_MAX_BODY_BYTES, install_shutdown_hooks, read_limited

FRAMEWORK = "flask"
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]  # the core answers 405 for all but GET/POST/PUT


@dataclass
class State:
    """What ``app.extensions["eagerstep"]`` holds."""

    client: Client
    functions: list[Function[Any]]
    handler: CommHandler
    url_prefix: str


def blueprint(
    client: Client,
    functions: Sequence[Function[Any]],
    *,
    url_prefix: str = "/api/inngest",
    name: str = "eagerstep",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Blueprint:
    """A blueprint serving ``functions`` at ``url_prefix``: ``app.register_blueprint(blueprint(...))``."""
    handler = CommHandler(client, list(functions), framework=FRAMEWORK, max_body_bytes=max_body_bytes)
    bp = Blueprint(name, __name__, url_prefix=url_prefix)

    def remember(setup: Any) -> None:
        prefix = setup.url_prefix or url_prefix
        setup.app.extensions.setdefault("eagerstep", State(client, list(functions), handler, prefix))

    bp.record_once(remember)

    @bp.route("", methods=METHODS, strict_slashes=False)
    def serve() -> FlaskResponse:
        # Not request.get_data(): that honours the app's MAX_CONTENT_LENGTH; our limit is our own.
        stream = get_input_stream(flask_request.environ, max_content_length=None)
        response = handler.handle(
            CommRequest(
                method=flask_request.method,
                url=flask_request.url,
                headers=dict(flask_request.headers),
                query=flask_request.args.to_dict(),
                body=read_limited(stream.read, max_body_bytes),
            )
        )
        return FlaskResponse(response.body, status=response.status, headers=response.headers)

    return bp


def current_client() -> Client:
    """The client of the current app (inside a request or app context)."""
    return state().client


def state(app: Flask | None = None) -> State:
    found = (app or current_app).extensions.get("eagerstep")
    if not isinstance(found, State):
        raise RuntimeError("eagerstep is not set up on this app; call EagerStep(app) or register blueprint()")
    return found


class EagerStep:
    """``EagerStep(app, client=client, functions=[...])`` or ``ext.init_app(app)`` in an app factory.

    Reads ``app.config["EAGERSTEP_<KEY>"]`` (``EAGERSTEP_SIGNING_KEY``, ``EAGERSTEP_DEV``, ...; with no
    ``client=``, ``EAGERSTEP_APP_ID`` names the app), mounts the blueprint at ``EAGERSTEP_URL_PREFIX``
    (default ``/api/inngest``), adds the ``flask eagerstep`` commands and, with
    ``EAGERSTEP_DEFER_EVENTS = True``, defers events sent during a request until it succeeds.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        client: Client | None = None,
        functions: Sequence[Function[Any]] = (),
    ) -> None:
        self.client = client
        self.functions = list(functions)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        config = app.config
        client = self.client
        if client is None:
            if not config.get("EAGERSTEP_APP_ID"):
                raise RuntimeError('Set app.config["EAGERSTEP_APP_ID"] or pass EagerStep(client=...)')
            client = self.client = Client(app_id=config["EAGERSTEP_APP_ID"])
        client.set_settings_source(lambda key: config.get(f"EAGERSTEP_{key}"))
        app.register_blueprint(
            blueprint(
                client,
                self.functions,
                url_prefix=config.get("EAGERSTEP_URL_PREFIX", "/api/inngest"),
                max_body_bytes=int(config.get("EAGERSTEP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
            )
        )
        if config.get("EAGERSTEP_DEFER_EVENTS"):
            _defer_events(app, client)
        from eagerstep.integrations.flask.cli import eagerstep_cli

        app.cli.add_command(eagerstep_cli)
        install_shutdown_hooks()


def _defer_events(app: Flask, client: Client) -> None:
    def open_scope() -> None:
        g._eagerstep_deferred = deferred.open_scope(client)
        g._eagerstep_succeeded = False

    def after(response: FlaskResponse) -> FlaskResponse:
        g._eagerstep_succeeded = response.status_code < 400
        return response

    def close(error: BaseException | None) -> None:
        opened = g.pop("_eagerstep_deferred", None)
        if opened is None:
            return
        scope, token = opened
        scope.commit() if error is None and g.pop("_eagerstep_succeeded", False) else scope.discard()
        deferred.close_scope(token)

    app.before_request(open_scope)
    app.after_request(after)
    app.teardown_request(close)


__all__ = ["EagerStep", "State", "blueprint", "current_client", "state"]
