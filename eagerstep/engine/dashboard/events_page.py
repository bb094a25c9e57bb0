"""Events: the list with what each started (or "matched no function"), one event's payload and
runs with Replay, and a form to send an event."""

from __future__ import annotations

import json
from typing import Any

from eagerstep.engine.dashboard.render import (
    Page,
    badge,
    button,
    duration,
    esc,
    link,
    path,
    plural,
    pretty,
    when,
)

SEND_FORM = (
    "<form id=send-event class=send-event data-endpoint='/e/dashboard'>"
    "<h2>Send an event</h2>"
    "<label>Name <input name=name required placeholder='shop/order.created'></label>"
    "<label>Data (JSON object) <textarea name=data rows=4>{}</textarea></label>"
    "<button type=submit>Send event</button> <span class=form-status></span></form>"
)


def _outcome(event: dict[str, Any]) -> str:
    if event["matched_no_function"]:
        return "<span class='badge nomatch'>matched no function</span>"
    count = event["runs"] if isinstance(event["runs"], int) else len(event["runs"])
    return esc(plural(count, "run")) if count else "<span class=muted>no run (yet)</span>"


def render_list(events: list[dict[str, Any]], *, internal: bool = False) -> Page:
    rows = "".join(
        f"<tr data-event='{esc(e['id'])}'><td>{link(path('/events/', e['id']), e['id'], 'mono')}</td>"
        f"<td>{esc(e['name'])}</td><td class=payload><code>{esc(json.dumps(e['data'])[:120])}</code></td>"
        f"<td>{_outcome(e)}</td><td>{when(e['received_at'])}</td></tr>"
        for e in events
    )
    empty = "<tr class=empty><td colspan=5>no events yet</td></tr>"
    table = (
        "<table class=events><thead><tr><th>event</th><th>name</th><th>data</th><th>started</th>"
        f"<th>received</th></tr></thead><tbody>{rows or empty}</tbody></table>"
    )
    live = "/events?internal=1&fragment=1" if internal else "/events?fragment=1"
    return Page("Events", table, section="/events", live=live, top=SEND_FORM)


def render_event(event: dict[str, Any]) -> Page:
    runs = event["runs"]
    if event["matched_no_function"]:
        started = (
            "<p><span class='badge nomatch'>matched no function</span> No synced function is triggered"
            " by this event's name (and expression): check the name, or sync the app that serves"
            " the function (<a href='/apps'>Apps</a>).</p>"
        )
        if event["did_you_mean"]:
            names = " or ".join(f"<code>{esc(n)}</code>" for n in event["did_you_mean"])
            started += f"<p>Did you mean {names}?</p>"
    elif runs:
        rows = "".join(
            f"<tr><td>{link(path('/runs/', r['run_id']), r['run_id'], 'mono')}</td>"
            f"<td>{esc(r['function_id'])}</td><td>{badge(r['status'])}</td>"
            f"<td>{duration(r['duration_ms'])}</td></tr>"
            for r in runs
        )
        head = "<tr><th>run</th><th>function</th><th>status</th><th>duration</th></tr>"
        started = f"<table>{head}{rows}</table>"
    else:
        started = "<p class=muted>no run yet (debounced, batched, rate-limited or a duplicate)</p>"
    replay = button("Replay", path("/dash/api/events/", event["id"]) + "/replay")
    body = (
        f"<div class=headline><b>{esc(event['event'].get('name'))}</b>"
        f" <span class=muted>received {when(event['received_at'])}</span>"
        f"<span class=actions>{replay}</span></div>"
        f"<h2>Runs it started</h2>{started}<h2>Payload</h2>{pretty(event['event'])}"
    )
    live = path("/events/", event["id"]) + "?fragment=1"
    return Page(f"Event {event['id']}", body, section="/events", live=live)
