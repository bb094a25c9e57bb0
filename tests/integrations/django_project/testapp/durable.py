"""Discovered by the Django app (DURABLE_MODULE = "durable")."""

import eagerstep

client = eagerstep.Client(app_id="testapp")


@client.function(id="discovered", trigger=eagerstep.Event("testapp/hello"))
def discovered(ctx: eagerstep.Context) -> str:
    return "hello"
