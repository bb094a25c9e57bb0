// eagerstep dev dashboard: live tables, action buttons and forms. No build step, no dependencies.
"use strict";

const POLL_MS = 1000;

function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const date = new Date(el.getAttribute("datetime"));
    if (!isNaN(date)) {
      el.title = el.getAttribute("datetime");
      el.textContent = date.toLocaleString(undefined, {hour12: false}) + "." +
        String(date.getMilliseconds()).padStart(3, "0");
    }
  }
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: body === undefined ? "{}" : JSON.stringify(body),
  });
  let reply = null;
  try { reply = await response.json(); } catch (e) { reply = null; }
  if (!response.ok) {
    const message = (reply && (reply.error || reply.message)) || response.statusText;
    throw new Error(message);
  }
  return reply || {};
}

function flash(text, isError) {
  let box = document.getElementById("flash");
  if (!box) {
    box = document.createElement("div");
    box.id = "flash";
    document.querySelector("main").prepend(box);
  }
  box.className = isError ? "flash error" : "flash";
  box.textContent = text;
}

// Buttons with data-url: POST their data-body, then go where the reply says (or reload).
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.action");
  if (!button) return;
  event.preventDefault();
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  button.disabled = true;
  try {
    const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
    const reply = await postJson(button.dataset.url, body);
    if (reply.location) { window.location.assign(reply.location); return; }
    if (reply.app_status !== undefined) {
      flash(`synced ${reply.url}: the app answered ${reply.app_status}`, reply.app_status >= 300);
    } else {
      flash(`${button.textContent.trim()}: done`, false);
    }
    await refreshLive(true);
  } catch (error) {
    flash(`${button.textContent.trim()} failed: ${error.message}`, true);
    await refreshLive(true);
  } finally {
    button.disabled = false;
  }
});

// The send-event form: POST /e/dashboard, then open the event's page.
function wireSendEvent() {
  const form = document.getElementById("send-event");
  if (!form || form.dataset.wired) return;
  form.dataset.wired = "1";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = form.querySelector(".form-status");
    let data;
    try {
      data = JSON.parse(form.elements.data.value || "{}");
    } catch (error) {
      status.textContent = "data is not valid JSON: " + error.message;
      status.className = "form-status err";
      return;
    }
    try {
      const reply = await postJson(form.dataset.endpoint, {name: form.elements.name.value, data});
      window.location.assign("/events/" + reply.ids[0]);
    } catch (error) {
      status.textContent = error.message;
      status.className = "form-status err";
    }
  });
}

// The sync-app form on the apps page.
function wireSyncApp() {
  const form = document.getElementById("sync-app");
  if (!form || form.dataset.wired) return;
  form.dataset.wired = "1";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = form.querySelector(".form-status");
    try {
      const reply = await postJson(form.dataset.endpoint, {url: form.elements.url.value});
      status.textContent = `the app answered ${reply.app_status}`;
      status.className = reply.app_status >= 300 ? "form-status err" : "form-status";
    } catch (error) {
      status.textContent = error.message;
      status.className = "form-status err";
    }
    await refreshLive(true);
  });
}

// Pages with #live[data-live]: re-fetch their body fragment while they may change.
let liveBusy = false;
async function refreshLive(force) {
  const live = document.getElementById("live");
  if (!live || liveBusy) return;
  const url = live.dataset.live;
  if (!url && !force) return;
  // keep open <details> open across refreshes
  const open = new Set([...live.querySelectorAll("details[open] > summary")].map((s) => s.textContent));
  liveBusy = true;
  try {
    const target = url || (location.pathname + (location.search ? location.search + "&" : "?") + "fragment=1");
    const response = await fetch(target.includes("fragment=1") ? target : target + "?fragment=1");
    if (!response.ok) return;
    const html = await response.text();
    if (html !== live.dataset.last) {
      live.dataset.last = html;
      live.innerHTML = html;
      for (const summary of live.querySelectorAll("details > summary")) {
        if (open.has(summary.textContent)) summary.parentElement.open = true;
      }
      localTimes(live);
      wireSendEvent();
      wireSyncApp();
      const final = live.querySelector(".final-flag");
      if (final && final.dataset.final === "true") live.dataset.live = "";
    }
  } finally {
    liveBusy = false;
  }
}

// The runs list: poll the JSON endpoint with the form's filters and replace the rows.
function wireRuns() {
  const body = document.getElementById("runs-body");
  const form = document.getElementById("run-filters");
  if (!body || !form) return;
  const params = () => {
    const query = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (value) query.set(key, value);
    return query;
  };
  const poll = async () => {
    if (document.hidden) return;  // a background tab costs the engine nothing
    const query = params();
    query.set("rows", "1");
    try {
      const response = await fetch(body.dataset.endpoint + "?" + query);
      const reply = await response.json();
      if (!response.ok) throw new Error(reply.error || response.statusText);
      const html = reply.rows.join("") || "<tr class=empty><td colspan=6>no runs match</td></tr>";
      if (html !== body.dataset.last) {
        body.dataset.last = html;
        body.innerHTML = html;
        localTimes(body);
      }
      document.getElementById("runs-live").textContent = "live · " + reply.data.length + " shown";
    } catch (error) {
      document.getElementById("runs-live").textContent = "not updating: " + error.message;
    }
  };
  form.addEventListener("change", () => {
    const query = params().toString();
    history.replaceState(null, "", query ? "/?" + query : "/");
    poll();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    form.dispatchEvent(new Event("change"));
  });
  setInterval(poll, POLL_MS);
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  wireRuns();
  wireSendEvent();
  wireSyncApp();
  const live = document.getElementById("live");
  if (live && live.dataset.live) setInterval(() => { if (!document.hidden) refreshLive(false); }, POLL_MS);
});
