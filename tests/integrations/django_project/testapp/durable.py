"""Discovered by the Django app (DURABLE_MODULE = "durable")."""

import eagerstep

client = eagerstep.Client(app_id="testapp")


@client.function(id="discovered", trigger=eagerstep.Event("testapp/hello"))
def discovered(ctx: eagerstep.Context) -> str:
    return "hello"


@client.function(id="db-check", trigger=eagerstep.Event("testapp/db"), checkpointing=False)
def db_check(ctx: eagerstep.Context) -> dict[str, object]:
    return _db_probe()


def _db_probe() -> dict[str, object]:
    """Whether this thread started with no open database connection (closed around each job), and
    which thread ran it."""
    import threading

    from django.db import connection

    was_closed = connection.connection is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"was_closed": was_closed, "thread": threading.current_thread().name}


@client.function(id="db-parallel", trigger=eagerstep.Event("testapp/db-parallel"))
def db_parallel(ctx: eagerstep.Context) -> list[dict[str, object]]:
    """An eager parallel group whose branches use the database, each reporting as db-check does."""

    return list(ctx.step.parallel([lambda i=i: ctx.step.run(f"db-{i}", _db_probe) for i in range(3)]))
