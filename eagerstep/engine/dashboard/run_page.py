"""One run: a waterfall of its steps on one time axis (from the event's arrival to the run's end),
every failed attempt, what a sleeping or waiting step waits for, the output or the error with its
stack, the triggering event, and Cancel / Rerun."""

from __future__ import annotations

from typing import Any

from eagerstep.engine.dashboard.render import (
    Page,
    badge,
    button,
    duration,
    error_block,
    esc,
    link,
    path,
    plural,
    pretty,
    when,
)

#: How each kind of span is told apart (css class, legend text).
KINDS = {
    "checkpoint": "ran in the worker, reported by checkpoint",
    "reply": "ran in a call, reported in its reply (orchestrated)",
    "orchestrator": "kept by the orchestrator (sleep, wait, invoke)",
    "attempt": "a failed attempt",
    "gap": "orchestrator time between spans",
}


_VIA_LABEL = {"checkpoint": " · checkpoint", "reply": " · in reply"}


def _bar(start: float | None, end: float | None, total: float, cls: str, title: str) -> str:
    if start is None:
        return ""
    left = 100 * start / total
    width = 100 * ((end if end is not None else total) - start) / total
    return (
        f"<span class='bar {cls}' style='left:{left:.3f}%;width:max({width:.3f}%,2px)'"
        f" title='{esc(title)}'></span>"
    )


def _op_label(step: dict[str, Any]) -> str:
    return {
        "StepRun": "step.run",
        "StepFailed": "step.run",
        "Sleep": "sleep",
        "WaitForEvent": "wait for event",
        "InvokeFunction": "invoke",
    }.get(step.get("op") or "", step.get("op") or "step")


def _step_note(step: dict[str, Any]) -> str:
    if step.get("wakes_at"):
        return f"sleeping; wakes at {when(step['wakes_at'])}"
    if step.get("waits_for"):
        note = f"waiting for <code>{esc(step['waits_for'])}</code>"
        if step.get("condition"):
            note += f" if <code>{esc(step['condition'])}</code>"
        if step.get("timeout_at"):
            note += f"; times out at {when(step['timeout_at'])}"
        return note
    if step.get("next_attempt_at"):
        return f"attempt {int(step.get('attempt') or 0) + 1} due at {when(step['next_attempt_at'])}"
    if step.get("timed_out"):
        return "timed out (no matching event)"
    if step["status"] == "Running":
        return "running"
    return ""


def _row(label: str, bar: str, dur: str, note: str, cls: str = "") -> str:
    return (
        f"<div class='wf-row {cls}'><div class=wf-label>{label}</div>"
        f"<div class=wf-track>{bar}</div><div class=wf-dur>{dur}</div>"
        f"<div class=wf-note>{note}</div></div>"
    )


def waterfall(run: dict[str, Any]) -> str:
    total = max(
        [run["run_end_ms"] or 0.0]
        + [s.get("end_ms") or s.get("start_ms") or 0.0 for s in run["steps"]]
        + [a.get("end_ms") or 0.0 for s in run["steps"] for a in s["attempts"]]
    )
    total = max(total, 0.001)
    ticks = "".join(
        f"<span class=tick style='left:{100 * i / 4:.0f}%'>{duration(total * i / 4)}</span>" for i in range(5)
    )
    rows = [
        _row(
            "<b>event received</b>",
            "<span class='marker' style='left:0'></span>",
            "0",
            link(path("/events/", run["event_id"]), (run["event"] or {}).get("name") or run["event_id"]),
        ),
        _row(
            "<b>run</b>",
            _bar(run["run_start_ms"], run["run_end_ms"], total, f"run {run['status']}", "the run"),
            duration(run["duration_ms"]),
            f"queued {duration(run['run_start_ms'])} after the event" if run["run_start_ms"] else "",
        ),
    ]
    for attempt in run["function_attempts"]:
        rows.append(_attempt_row("function", attempt, total))
    for step in run["steps"]:
        for attempt in step["attempts"]:
            rows.append(_attempt_row(step["name"], attempt, total))
        via = step.get("via") or "orchestrator"
        cls = f"{via} {step['status']}"
        label = (
            f"<a href='#step-{esc(step['id'])}'>{esc(step['name'])}</a>"
            f" <span class='tag {esc(via)}'>{esc(_op_label(step))}"
            f"{_VIA_LABEL.get(via, '')}</span>"
        )
        gap = step.get("gap_ms")
        gap_bar = ""
        if gap and step.get("start_ms") is not None:
            gap_bar = _bar(step["start_ms"] - gap, step["start_ms"], total, "gap", f"gap {duration(gap)}")
        note = _step_note(step)
        if gap and gap >= 0.5:
            note = (note + "; " if note else "") + f"<span class=muted>after a {duration(gap)} gap</span>"
        end = step.get("end_ms")
        bar = gap_bar + _bar(step.get("start_ms"), end, total, cls, f"{step['name']}: {step['status']}")
        dur = duration(step.get("duration_ms")) if end is not None else "…"
        rows.append(_row(label, bar, dur, note, f"step {step['status']}"))
    legend = "".join(f"<span class='legend {k}'><i></i>{esc(v)}</span>" for k, v in KINDS.items())
    return (
        f"<section class=waterfall><div class=wf-axis><div></div><div class=wf-ticks>{ticks}</div></div>"
        f"{''.join(rows)}<div class=wf-legend>{legend}</div></section>"
    )


def _attempt_row(name: str, attempt: dict[str, Any], total: float) -> str:
    error = attempt["error"] or {}
    number = attempt["attempt"] + 1
    label = f"<span class=attempt-label>↳ {esc(name)} attempt {number}</span>"
    start = attempt["start_ms"] if attempt["start_ms"] is not None else attempt["end_ms"]
    bar = _bar(start, attempt["end_ms"], total, "attempt", f"attempt {number} failed")
    outcome = "retried" if attempt["retried"] else "final"
    note = (
        f"<span class=err>{esc(error.get('name', 'Error'))}: {esc(error.get('message', ''))}</span>"
        f" <span class=muted>({outcome})</span>"
    )
    return _row(label, bar, "", note, "attempt-row")


def _headline(run: dict[str, Any]) -> str:
    status = run["status"]
    if run["final"]:
        timing = f"{status.lower()} in {duration(run['duration_ms'])}"
    else:
        timing = f"running for {duration(run['duration_ms'])}"
    actions = []
    if not run["final"]:
        actions.append(
            button("Cancel", f"/v1/runs/{run['run_id']}/cancel", confirm="Cancel this run?", cls="danger")
        )
    actions.append(button("Rerun", f"/dash/api/runs/{run['run_id']}/rerun"))
    return (
        f"<div class=headline>{badge(status)} <b>{esc(run['function_id'])}</b> {esc(timing)}"
        f" <span class=muted>started {when(run['started_at'])}</span>"
        f"<span class=actions>{''.join(actions)}</span></div>"
    )


def _outcome(run: dict[str, Any]) -> str:
    if run["status"] == "Completed":
        return f"<h2>Output</h2>{pretty(run['output'])}"
    if run["error"] is not None:
        return f"<h2>Error</h2>{error_block(run['error'])}"
    return ""


def _step_details(run: dict[str, Any]) -> str:
    parts = []
    for step in run["steps"]:
        if "error" in step:
            body = error_block(step["error"])
        elif "output" in step:
            body = pretty(step["output"])
        else:
            body = f"<p class=muted>{_step_note(step) or 'no result yet'}</p>"
        attempts = ""
        if step["attempts"]:
            attempts = "".join(
                f"<details><summary>attempt {a['attempt'] + 1} failed"
                f" ({'retried' if a['retried'] else 'final'}) at {when(a['ended_at'])}</summary>"
                f"{error_block(a['error'])}</details>"
                for a in step["attempts"]
            )
        parts.append(
            f"<div class=step-detail id='step-{esc(step['id'])}'><h3>{esc(step['name'])}"
            f" {badge(step['status'])} <span class=muted>{esc(_op_label(step))},"
            f" {esc(step.get('via'))}</span></h3>{attempts}{body}</div>"
        )
    return "<h2>Steps</h2>" + ("".join(parts) or "<p class=muted>no steps</p>")


def body(run: dict[str, Any]) -> str:
    function_attempts = ""
    if run["function_attempts"]:
        function_attempts = "<h2>Failed attempts of the function</h2>" + "".join(
            f"<details><summary>attempt {a['attempt'] + 1} ({'retried' if a['retried'] else 'final'})"
            f"</summary>{error_block(a['error'])}</details>"
            for a in run["function_attempts"]
        )
    batch = f" (a batch of {plural(run['batch_size'], 'event')})" if run["batch_size"] > 1 else ""
    return (
        _headline(run)
        + waterfall(run)
        + _outcome(run)
        + function_attempts
        + _step_details(run)
        + f"<h2>Triggering event{batch}</h2>{pretty(run['event'])}"
        + f"<div class=final-flag data-final='{str(run['final']).lower()}'></div>"
    )


def render(run: dict[str, Any]) -> Page:
    live = "" if run["final"] else f"/runs/{run['run_id']}?fragment=1"
    return Page(f"Run {run['run_id']}", body(run), section="/", live=live)
