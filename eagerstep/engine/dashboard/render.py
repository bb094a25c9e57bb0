"""HTML building blocks shared by the dashboard's pages: the layout, escaping, times, durations,
JSON, status badges and stacks."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from eagerstep._version import __version__
from eagerstep.engine.dashboard import stacks

NAV = (("/", "Runs"), ("/events", "Events"), ("/functions", "Functions"), ("/apps", "Apps"))


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


@dataclass(frozen=True)
class Page:
    """A page's title, body and nav section; ``live``: the URL the script polls to refresh the
    body (its fragment), '' for a page that does not change by itself."""

    title: str
    body: str
    section: str = "/"
    live: str = ""
    top: str = ""  # above the body and never refreshed (forms being filled in)

    def html(self, *, fragment: bool = False) -> str:
        if fragment:
            return self.body
        return layout(self.title, self.body, section=self.section, live=self.live, top=self.top)


def layout(title: str, body: str, *, section: str = "/", live: str = "", top: str = "") -> str:
    """A full page; ``live``: the URL the script polls to refresh ``#live`` ('' for none)."""
    links = "".join(
        f"<a href='{href}'{' class=active' if href == section else ''}>{label}</a>" for href, label in NAV
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)} · eagerstep dev</title>"
        "<link rel=stylesheet href='/static/dashboard.css'>"
        "<script defer src='/static/dashboard.js'></script></head><body>"
        f"<header><b class=brand>eagerstep dev</b><nav>{links}</nav>"
        f"<span class=version>{esc(__version__)}</span></header>"
        f"<main><h1>{esc(title)}</h1>{top}<div id=live data-live='{esc(live)}'>{body}</div></main>"
        "</body></html>"
    )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def duration(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.1f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(int(ms / 1000), 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def when(iso: str | None) -> str:
    """An ISO time as ``2026-12-01 00:40:12.123 UTC`` in a <time> the script shows in local time."""
    if not iso:
        return ""
    text = iso.replace("T", " ").replace("Z", "")
    return f"<time datetime='{esc(iso)}'>{esc(text)} UTC</time>"


def badge(status: str) -> str:
    return f"<span class='badge {esc(status)}'>{esc(status)}</span>"


def pretty(value: Any) -> str:
    return f"<pre class=json>{esc(json.dumps(value, indent=2, ensure_ascii=False, default=str))}</pre>"


def link(href: str, text: Any, cls: str = "") -> str:
    attr = f" class='{cls}'" if cls else ""
    return f"<a href='{esc(href)}'{attr}>{esc(text)}</a>"


def path(prefix: str, identifier: Any) -> str:
    """``prefix`` + an id (of a run or an event: events carry ids their senders chose) as one
    path segment."""
    return prefix + quote(str(identifier), safe="")


def button(label: str, url: str, *, body: Any = None, confirm: str = "", cls: str = "") -> str:
    """A button the script turns into ``POST url`` (JSON ``body``), then follows the reply."""
    data = esc(json.dumps(body)) if body is not None else ""
    return (
        f"<button class='action {cls}' data-url='{esc(url)}' data-body='{data}'"
        f" data-confirm='{esc(confirm)}'>{esc(label)}</button>"
    )


def error_block(error: dict[str, Any] | Any) -> str:
    """An error: its name and message, then the user's frames first, then the rest, folded."""
    if not isinstance(error, dict):
        return pretty(error)
    name, message = error.get("name") or "Error", error.get("message") or ""
    parts = [f"<div class=error-title><b>{esc(name)}</b>: {esc(message)}</div>"]
    attempts = error.get("attempts")
    if isinstance(attempts, int):
        parts.append(f"<div class=muted>failed after {plural(attempts, 'attempt')}</div>")
    stack = error.get("stack")
    if isinstance(stack, str) and stack.strip():
        parsed = stacks.parse(stack)
        if parsed.frames:
            parts.append(_frames("Your code", parsed.user_frames, "user"))
            library = parsed.library_frames
            parts.append(
                f"<details class=library><summary>{plural(len(library), 'other frame')}"
                " (eagerstep, standard library, packages) and the full traceback</summary>"
                f"{_frames('', library, 'lib')}<pre class=stack>{esc(stack)}</pre></details>"
            )
        else:
            parts.append(f"<pre class=stack>{esc(stack)}</pre>")
    hidden = {"name", "message", "stack", "attempts"}
    if isinstance(attempts, int):
        hidden.add("noRetry")  # the SDK's flag on its last attempt; "failed after N attempts" says more
    extra = {k: v for k, v in error.items() if k not in hidden}
    if extra:
        parts.append(f"<details><summary>more fields</summary>{pretty(extra)}</details>")
    return f"<div class=error>{''.join(parts)}</div>"


def _frames(title: str, frames: list[stacks.Frame], cls: str) -> str:
    if not frames:
        return "<p class=muted>no frames of your code in this traceback</p>" if cls == "user" else ""
    rows = "".join(
        f"<li><code class=where>{esc(f.file)}:{f.line}</code> in <code>{esc(f.function)}</code>"
        + (f"<pre class=code>{esc(f.code)}</pre>" if f.code else "")
        + "</li>"
        for f in reversed(frames)  # the innermost frame first: where it raised
    )
    heading = f"<h4>{esc(title)} <span class=muted>(innermost first)</span></h4>" if title else ""
    return f"{heading}<ol class='frames {cls}'>{rows}</ol>"
