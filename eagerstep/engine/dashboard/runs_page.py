"""The runs list: filters by status, function and time, search by run or event id; the script
keeps the table current by polling ``/dash/api/runs`` with the same filters."""

from __future__ import annotations

from typing import Any

from eagerstep.engine.dashboard.queries import SINCE, STATUSES, RunFilter
from eagerstep.engine.dashboard.render import Page, badge, duration, esc, link, path, when


def _select(name: str, label: str, options: list[str], current: str) -> str:
    items = "".join(
        f"<option value='{esc(o)}'{' selected' if o == current else ''}>{esc(o or label)}</option>"
        for o in ["", *options]
    )
    return f"<select name={name} aria-label='{esc(label)}'>{items}</select>"


def run_row(run: dict[str, Any]) -> str:
    rid = run["run_id"]
    return (
        f"<tr data-run='{esc(rid)}'><td>{link(path('/runs/', rid), rid, 'mono')}</td>"
        f"<td>{esc(run['function_id'])}</td><td>{badge(run['status'])}</td>"
        f"<td>{link(path('/events/', run['event_id']), run['event_name'] or run['event_id'])}</td>"
        f"<td>{when(run['started_at'])}</td><td class=num>{duration(run['duration_ms'])}</td></tr>"
    )


def render(runs: list[dict[str, Any]], filters: RunFilter, functions: list[str]) -> Page:
    form = (
        "<form id=run-filters class=filters method=get action='/'>"
        f"{_select('status', 'any status', list(STATUSES), filters.status)}"
        f"{_select('function', 'any function', functions, filters.function)}"
        f"{_select('since', 'any time', list(SINCE), filters.since)}"
        f"<input type=search name=q placeholder='run id or event id' value='{esc(filters.query)}'>"
        "<button type=submit>Filter</button>"
        "<span id=runs-live class=muted title='the table refreshes every second'>live</span></form>"
    )
    rows = "".join(run_row(r) for r in runs)
    empty = "<tr class=empty><td colspan=6>no runs match</td></tr>"
    table = (
        "<table class=runs><thead><tr><th>run</th><th>function</th><th>status</th><th>event</th>"
        "<th>started</th><th>duration</th></tr></thead>"
        f"<tbody id=runs-body data-endpoint='/dash/api/runs'>{rows or empty}</tbody></table>"
    )
    return Page("Runs", table, section="/", top=form)
