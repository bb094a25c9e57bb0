"""The embedded orchestrator behind ``eagerstep dev``: an Inngest-compatible server in pure Python.

Run it::

    eagerstep dev -u http://127.0.0.1:8000/api/inngest      # or: python -m eagerstep dev
    INNGEST_DEV=http://127.0.0.1:8288 <start your app>        # any Inngest SDK, or eagerstep
    eagerstep send shop/order.created --data '{"id": 1}'
    eagerstep timers fire                                      # wake sleeps and timeouts now

It binds 127.0.0.1:8288 and keeps its state in one SQLite file (``--db``, default
``.eagerstep/dev.db``); stop it at any point, even with ``kill -9``, and start it again: accepted
events, finished steps and timers survive, and calls that were in flight are sent again.

HTTP API (every response carries ``X-Inngest-Server-Kind: dev``):

- Inngest server API: ``POST /fn/register``, ``POST /e/{key}``, ``POST /v1/checkpoint/{run}/async``
  (also under ``/v1/http/runs``), ``GET /v0/runs/{run}/actions`` and ``/batch``.
- Inspection: ``GET /v1/events/{id}/runs``, ``GET /v1/runs`` and ``/v1/runs/{id}`` (status, output,
  error, steps with timings), ``POST /v1/runs/{id}/cancel``; a dashboard at ``/``.
- Development: ``POST /v1/dev/apps`` ``{"url": ...}`` (sync an app now), ``GET /v1/dev/apps``,
  ``GET /v1/dev/timers``, ``POST /v1/dev/timers/fire`` (``{"run_id"?, "kinds"?}``),
  ``GET /v1/dev/stats``.

From Python (tests, benchmarks)::

    async with Engine(db_path=tmp / "engine.db", clock=ManualClock()) as engine: ...
    with EngineServer(tmp / "engine.db", clock=clock) as server:   # a thread; server.url
        ...

Time comes from a :class:`Clock`: :class:`RealClock` by default, or a :class:`ManualClock` that a
test moves with ``advance()``; sleeps, wait and invoke timeouts, retry backoff, throttling,
debounce, batching and cron all follow it.
"""

from eagerstep.engine.clock import Clock, ManualClock, RealClock
from eagerstep.engine.engine import Engine
from eagerstep.engine.model import EngineError
from eagerstep.engine.server import EngineServer, serve

__all__ = ["Clock", "Engine", "EngineError", "EngineServer", "ManualClock", "RealClock", "serve"]
