"""Discovered only with DURABLE_MODULE = "tasks"."""

import eagerstep
from tests.integrations.django_project.testapp.durable import client


@client.function(id="from-tasks", trigger=eagerstep.Event("testapp/tasks"))
def from_tasks(ctx: eagerstep.Context) -> str:
    return "tasks"
