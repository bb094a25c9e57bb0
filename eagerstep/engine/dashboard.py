"""A tiny HTML dashboard: recent runs, and one run's steps as a timeline."""

from __future__ import annotations

import html
import json
from typing import Any

from eagerstep.engine.engine import Engine
from eagerstep.engine.model import EngineError

_STYLE = """<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
.Completed{color:#17803d}.Failed{color:#c62828}.Cancelled{color:#777}.Running{color:#1565c0}
.bar{background:#90caf9;height:10px;display:inline-block}pre{margin:0;max-width:60em;white-space:pre-wrap}
</style>"""


def _page(title: str, body: str, refresh: bool = True) -> str:
    meta = "<meta http-equiv=refresh content=2>" if refresh else ""
    return (
        f"<!doctype html><html><head><meta charset=utf-8>{meta}<title>{html.escape(title)}</title>{_STYLE}"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _short(value: Any) -> str:
    text = json.dumps(value)
    return html.escape(text if len(text) < 200 else text[:200] + "…")


def render_dashboard(engine: Engine) -> str:
    rows = []
    for run in engine.list_runs(100):
        rid = html.escape(run["run_id"])
        rows.append(
            f"<tr><td><a href='/runs/{rid}'>{rid}</a></td><td>{html.escape(run['function_id'])}</td>"
            f"<td class='{run['status']}'>{run['status']}</td><td>{run['run_started_at']}</td>"
            f"<td>{run['duration_ms'] if run['duration_ms'] is not None else ''}</td></tr>"
        )
    apps = "".join(
        f"<li>{html.escape(a['name'])} — {html.escape(a['url'])} ({len(a['functions'])} functions)</li>"
        for a in engine.list_apps()
    )
    body = (
        f"<h2>Apps</h2><ul>{apps or '<li>none synced yet</li>'}</ul><h2>Runs</h2>"
        "<table><tr><th>run</th><th>function</th><th>status</th><th>started</th><th>ms</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    return _page("eagerstep dev", body)


def render_run(engine: Engine, run_id: str) -> str:
    try:
        run = engine.get_run(run_id)
    except EngineError as exc:
        return _page("run not found", html.escape(exc.message), refresh=False)
    total = max(sum(s.get("duration_ms") or 0 for s in run["steps"]), 1e-9)
    rows = []
    for step in run["steps"]:
        width = int(300 * (step.get("duration_ms") or 0) / total)
        result = step.get("error", step.get("output"))
        rows.append(
            f"<tr><td>{html.escape(str(step.get('name')))}</td><td>{step.get('op', '')}</td>"
            f"<td class='{step['status']}'>{step['status']}</td><td>{step.get('duration_ms') or ''}</td>"
            f"<td><span class='bar' style='width:{width}px'></span></td>"
            f"<td><pre>{_short(result)}</pre></td></tr>"
        )
    outcome = run["output"] if run["error"] is None else run["error"]
    body = (
        f"<p><a href='/'>all runs</a></p><p>{html.escape(run['function_id'])}: "
        f"<b class='{run['status']}'>{run['status']}</b> in {run['duration_ms']} ms</p>"
        "<table><tr><th>step</th><th>op</th><th>status</th><th>ms</th><th></th><th>result</th></tr>"
        + "".join(rows)
        + f"</table><h3>Output</h3><pre>{_short(outcome)}</pre>"
    )
    return _page(f"run {run_id}", body, refresh=run["status"] == "Running")
