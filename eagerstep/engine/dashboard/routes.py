"""The dashboard's HTTP routes for :class:`eagerstep.engine.http.EngineApp`: its pages, their live
fragments, the JSON the script polls, its actions, and the static files shipped in the wheel."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from eagerstep.engine.dashboard import actions, catalog_page, events_page, queries, run_page, runs_page
from eagerstep.engine.dashboard.render import Page
from eagerstep.engine.model import EngineError

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine
    from eagerstep.engine.http import Request

Reply = tuple[int, bytes, bytes]
Handler = Callable[["Request"], Awaitable[Reply]]

HTML = b"text/html; charset=utf-8"
_STATIC_TYPES = {".css": b"text/css; charset=utf-8", ".js": b"text/javascript; charset=utf-8"}


def _json(status: int, value: Any) -> Reply:
    return status, b"application/json", json.dumps(value, separators=(",", ":")).encode()


def _page(request: Request, page: Page) -> Reply:
    return 200, HTML, page.html(fragment=request.query.get("fragment") == "1").encode()


def _not_found(message: str) -> Reply:
    page = Page("Not found", f"<p>{message}</p><p><a href='/'>all runs</a></p>")
    return 404, HTML, page.html().encode()


class DashboardRoutes:
    """Handlers of the dashboard; ``routes()`` lists them for the engine's router."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", r"/", self.runs),
            ("GET", r"/runs/(?P<run_id>[^/]+)", self.run),
            ("GET", r"/events", self.events),
            ("GET", r"/events/(?P<event_id>[^/]+)", self.event),
            ("GET", r"/functions", self.functions),
            ("GET", r"/apps", self.apps),
            ("GET", r"/static/(?P<name>[a-z]+\.(?:css|js))", self.static),
            ("GET", r"/dash/api/runs", self.api_runs),
            ("GET", r"/dash/api/runs/(?P<run_id>[^/]+)", self.api_run),
            ("POST", r"/dash/api/runs/(?P<run_id>[^/]+)/rerun", self.api_rerun),
            ("GET", r"/dash/api/events", self.api_events),
            ("GET", r"/dash/api/events/(?P<event_id>[^/]+)", self.api_event),
            ("POST", r"/dash/api/events/(?P<event_id>[^/]+)/replay", self.api_replay),
            ("GET", r"/dash/api/functions", self.api_functions),
            ("GET", r"/dash/api/apps", self.api_apps),
        ]

    # ------------------------------------------------------------------ pages

    async def runs(self, request: Request) -> Reply:
        filters = queries.RunFilter.from_query(request.query)
        functions = sorted(self.engine.functions)
        page = runs_page.render(queries.list_runs(self.engine, filters), filters, functions)
        return _page(request, page)

    async def run(self, request: Request) -> Reply:
        try:
            run = queries.get_run(self.engine, request.params["run_id"])
        except EngineError as exc:
            return _not_found(exc.message)
        return _page(request, run_page.render(run))

    async def events(self, request: Request) -> Reply:
        internal = request.query.get("internal") == "1"
        events = queries.list_events(self.engine, internal=internal)
        return _page(request, events_page.render_list(events, internal=internal))

    async def event(self, request: Request) -> Reply:
        try:
            event = queries.get_event(self.engine, request.params["event_id"])
        except EngineError as exc:
            return _not_found(exc.message)
        return _page(request, events_page.render_event(event))

    async def functions(self, request: Request) -> Reply:
        return _page(request, catalog_page.render_functions(queries.list_functions(self.engine)))

    async def apps(self, request: Request) -> Reply:
        return _page(request, catalog_page.render_apps(queries.list_apps(self.engine)))

    async def static(self, request: Request) -> Reply:
        name = request.params["name"]
        try:
            content = resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
        except FileNotFoundError:
            return _json(404, {"error": f"no such file: /static/{name}", "status": 404})
        return 200, _STATIC_TYPES[name[name.rindex(".") :]], content

    # ------------------------------------------------------------------ JSON (the script polls these)

    async def api_runs(self, request: Request) -> Reply:
        filters = queries.RunFilter.from_query(request.query)
        runs = queries.list_runs(self.engine, filters)
        rows = [runs_page.run_row(r) for r in runs] if request.query.get("rows") == "1" else None
        return _json(200, {"data": runs, **({"rows": rows} if rows is not None else {})})

    async def api_run(self, request: Request) -> Reply:
        return _json(200, {"data": queries.get_run(self.engine, request.params["run_id"])})

    async def api_rerun(self, request: Request) -> Reply:
        run_id = actions.rerun(self.engine, request.params["run_id"])
        return _json(200, {"run_id": run_id, "location": f"/runs/{run_id}"})

    async def api_events(self, request: Request) -> Reply:
        internal = request.query.get("internal") == "1"
        name = request.query.get("name", "")
        return _json(200, {"data": queries.list_events(self.engine, name=name, internal=internal)})

    async def api_event(self, request: Request) -> Reply:
        return _json(200, {"data": queries.get_event(self.engine, request.params["event_id"])})

    async def api_replay(self, request: Request) -> Reply:
        event_id = actions.replay(self.engine, request.params["event_id"])
        return _json(200, {"event_id": event_id, "location": f"/events/{event_id}"})

    async def api_functions(self, request: Request) -> Reply:
        return _json(200, {"data": queries.list_functions(self.engine)})

    async def api_apps(self, request: Request) -> Reply:
        return _json(200, {"data": queries.list_apps(self.engine)})
