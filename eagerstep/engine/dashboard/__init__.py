"""The dev dashboard served by ``eagerstep dev``: server-rendered pages plus one small script and
one stylesheet shipped in the package (nothing to build). One module per concern: ``queries``
(reads), ``actions`` (rerun, replay), ``render`` (shared HTML), a module per page, ``stacks``
(tracebacks) and ``routes`` (the HTTP handlers)."""

from eagerstep.engine.dashboard.routes import DashboardRoutes

__all__ = ["DashboardRoutes"]
