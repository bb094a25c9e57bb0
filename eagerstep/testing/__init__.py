"""Test durable functions against an in-process engine: ``Harness`` and the targets it drives.

::

    from eagerstep.testing import Harness, wsgi

    with Harness(wsgi(app), client) as h:
        run = h.run("app/user.signed_up", {"email": "ada@example.com"})
        assert run.completed
        assert run.step("send-welcome-email").checkpointed

Targets: :func:`wsgi` (Flask), :func:`asgi` (FastAPI), :func:`django` (the configured project).
For pytest, ``pytest_plugins = ["eagerstep.testing.plugin"]`` adds the ``eagerstep_harness``
fixture. Needs the ``engine`` extra (and, for ``asgi``, Starlette, which FastAPI brings).
"""

from eagerstep.testing.harness import Harness, HarnessError
from eagerstep.testing.results import RunResult, StepResult
from eagerstep.testing.targets import (
    AsgiTarget,
    DjangoTarget,
    Target,
    TargetReply,
    WsgiTarget,
    asgi,
    django,
    wsgi,
)

__all__ = [
    "AsgiTarget",
    "DjangoTarget",
    "Harness",
    "HarnessError",
    "RunResult",
    "StepResult",
    "Target",
    "TargetReply",
    "WsgiTarget",
    "asgi",
    "django",
    "wsgi",
]
