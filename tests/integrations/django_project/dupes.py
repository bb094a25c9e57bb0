"""Two functions with one id, for the duplicate-id system check."""

import eagerstep

client = eagerstep.Client(app_id="dupes")


@client.function(id="same", trigger=eagerstep.Event("dupes/a"))
def first(ctx: eagerstep.Context) -> None:
    return None


@client.function(id="same", trigger=eagerstep.Event("dupes/b"))
def second(ctx: eagerstep.Context) -> None:
    return None
