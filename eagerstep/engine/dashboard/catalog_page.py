"""Functions (triggers, retries, flow control, how their steps were reported) and apps (URL,
last sync, last sync error, Resync)."""

from __future__ import annotations

import json
from typing import Any

from eagerstep.engine.dashboard.render import Page, button, esc, plural, when


def _trigger(trigger: dict[str, Any]) -> str:
    if "cron" in trigger:
        return f"<div>cron <code>{esc(trigger['cron'])}</code></div>"
    expression = f" if <code>{esc(trigger['if'])}</code>" if trigger.get("if") else ""
    return f"<div>event <code>{esc(trigger['event'])}</code>{expression}</div>"


def _flow(flow: dict[str, Any]) -> str:
    if not flow:
        return "<span class=muted>none</span>"
    return "".join(
        f"<div><b>{esc(key)}</b> <code>{esc(json.dumps(value, separators=(',', ':')))}</code></div>"
        for key, value in flow.items()
    )


def _checkpointing(counts: dict[str, int]) -> str:
    total = counts["by_checkpoint"] + counts["by_reply"]
    if not total:
        return "<span class=muted>no steps run yet</span>"
    return (
        f"{esc(plural(counts['by_checkpoint'], 'step'))} by checkpoint,"
        f" {esc(plural(counts['by_reply'], 'step'))} orchestrated"
    )


def render_functions(functions: list[dict[str, Any]]) -> Page:
    rows = "".join(
        f"<tr><td><b>{esc(f['id'])}</b><div class=muted>{esc(f['name'])}</div></td>"
        f"<td>{''.join(_trigger(t) for t in f['triggers'])}</td><td class=num>{f['retries']}</td>"
        f"<td>{_flow(f['flow_control'])}</td><td>{_checkpointing(f['checkpointing'])}</td>"
        f"<td><code class=url>{esc(f['url'])}</code></td></tr>"
        for f in functions
    )
    empty = "<tr class=empty><td colspan=6>no functions: sync an app (Apps)</td></tr>"
    table = (
        "<table class=functions><thead><tr><th>function</th><th>triggers</th><th>retries</th>"
        "<th>flow control</th><th>checkpointing (observed)</th><th>URL</th></tr></thead>"
        f"<tbody>{rows or empty}</tbody></table>"
    )
    return Page("Functions", table, section="/functions")


def render_apps(apps: list[dict[str, Any]]) -> Page:
    rows = []
    for app in apps:
        error = app.get("last_sync_error")
        if error:
            state = f"<div class=err>{esc(error)}</div>"
            if app.get("sync_failures"):
                state += f"<div class=muted>{esc(plural(app['sync_failures'], 'failed attempt'))}</div>"
            if app.get("next_sync_retry_at"):
                state += f"<div class=muted>next retry at {when(app['next_sync_retry_at'])}</div>"
        else:
            state = "<span class='badge Completed'>ok</span>"
        rows.append(
            f"<tr data-app='{esc(app['url'])}'><td><b>{esc(app['name'] or '(never synced)')}</b>"
            f"<div class=muted>{esc(app.get('sdk') or '')} {esc(app.get('framework') or '')}</div></td>"
            f"<td><code class=url>{esc(app['url'])}</code></td>"
            f"<td>{esc(plural(len(app['functions']), 'function'))}</td>"
            f"<td>{when(app.get('synced_at')) or '<span class=muted>never</span>'}</td>"
            f"<td>{when(app.get('last_sync_attempt_at'))}</td><td>{state}</td>"
            f"<td>{button('Resync', '/v1/dev/apps', body={'url': app['url']})}</td></tr>"
        )
    empty = "<tr class=empty><td colspan=7>no apps yet</td></tr>"
    form = (
        "<form id=sync-app class=filters data-endpoint='/v1/dev/apps'>"
        "<input name=url required placeholder='http://127.0.0.1:8000/api/inngest' size=40>"
        "<button type=submit>Sync a new app</button> <span class=form-status></span></form>"
    )
    table = (
        "<table class=apps><thead><tr><th>app</th><th>URL</th><th>functions</th><th>last synced</th>"
        "<th>last attempt</th><th>sync state</th><th></th></tr></thead>"
        f"<tbody>{''.join(rows) or empty}</tbody></table>"
    )
    return Page("Apps", table, section="/apps", live="/apps?fragment=1", top=form)
