// imgpipe's admin page: GET /admin/api/overview every 2 s, rendered as
// tables and a small chart; cancel and retry through the admin API. The key
// (admin scope) is the same one the main page keeps.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "imgpipe.key";
const REFRESH_MS = 2000;
let asking = null;

function key() { return localStorage.getItem(KEY_STORE) || ""; }

function askKey() {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const dialog = $("key-dialog");
    $("key-input").value = "";
    dialog.onclose = () => {
      const value = $("key-input").value.trim();
      if (dialog.returnValue === "ok" && value) localStorage.setItem(KEY_STORE, value);
      asking = null;
      resolve(dialog.returnValue === "ok" && !!value);
    };
    dialog.showModal();
  });
  return asking;
}

async function api(path, options = {}) {
  const headers = key() ? { Authorization: "Bearer " + key() } : {};
  const response = await fetch(path, { ...options, headers });
  if ((response.status === 401 || response.status === 403) && await askKey()) return api(path, options);
  return response;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function ago(time) {
  if (!time) return "–";
  const secs = Math.max(0, (Date.now() - new Date(time).getTime()) / 1000);
  if (secs < 60) return `${secs.toFixed(0)} s ago`;
  if (secs < 3600) return `${(secs / 60).toFixed(0)} min ago`;
  return `${(secs / 3600).toFixed(1)} h ago`;
}

function bytes(n) {
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function duration(job) {
  if (!job.finished_at) return "running";
  const secs = (new Date(job.finished_at) - new Date(job.created_at)) / 1000;
  if (secs < 1) return `${Math.round(secs * 1000)} ms`;
  return secs < 60 ? `${secs.toFixed(1)} s` : `${(secs / 60).toFixed(1)} min`;
}

function state(job) {
  const settled = job.succeeded + job.failed;
  if (settled < job.images) return job.processing ? "processing" : "queued";
  if (!job.failed) return "completed";
  return job.succeeded ? "completed_with_errors" : "failed";
}

function renderQueues(queues) {
  $("queues").replaceChildren(...queues.map((q) => {
    const tr = document.createElement("tr");
    tr.dataset.lane = q.lane;
    tr.append(cell(q.lane), cell(String(q.depth)),
      cell(q.oldest_age_seconds == null ? "–" : `${q.oldest_age_seconds.toFixed(1)} s`),
      cell(String(q.workers_alive)));
    return tr;
  }));
}

function renderThroughput(minutes) {
  const width = 600, height = 90, slots = 30;
  const now = Math.floor(Date.now() / 60000);
  const byMinute = new Map(minutes.map((m) => [Math.floor(new Date(m.minute).getTime() / 60000), m]));
  const max = Math.max(1, ...minutes.map((m) => m.succeeded + m.failed));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 16}`);
  svg.setAttribute("class", "chart");
  let total = 0;
  for (let i = 0; i < slots; i++) {
    const m = byMinute.get(now - slots + 1 + i) || { succeeded: 0, failed: 0 };
    total += m.succeeded + m.failed;
    const x = i * (width / slots) + 2, w = width / slots - 4;
    const hs = (m.succeeded / max) * height, hf = (m.failed / max) * height;
    for (const [h, y, cls] of [[hs, height - hs, "ok"], [hf, height - hs - hf, "bad"]]) {
      if (!h) continue;
      const rect = document.createElementNS(ns, "rect");
      Object.entries({ x, y, width: w, height: h, class: cls }).forEach(([k, v]) => rect.setAttribute(k, v));
      const title = document.createElementNS(ns, "title");
      title.textContent = `${m.succeeded} succeeded, ${m.failed} failed`;
      rect.append(title);
      svg.append(rect);
    }
  }
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", 0);
  label.setAttribute("y", height + 14);
  label.textContent = `${total} images in 30 minutes; peak ${max}/min`;
  svg.append(label);
  $("throughput").replaceChildren(svg);
}

function renderWorkers(workers) {
  $("workers").replaceChildren(...workers.map((w) => {
    const tr = document.createElement("tr");
    tr.dataset.worker = w.id;
    tr.dataset.alive = w.alive;
    tr.append(cell(w.id, "mono"), cell(w.queue), cell(w.host), cell(ago(w.started_at)),
      cell(ago(w.last_heartbeat)), cell(String(w.running)),
      cell(w.alive ? "alive" : "gone (no heartbeat)", w.alive ? "ok-text" : "bad-text"));
    return tr;
  }));
}

async function act(path, button) {
  button.disabled = true;
  const response = await api(path, { method: "POST" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    $("admin-error").textContent = (body.error && body.error.message) || `HTTP ${response.status}`;
    $("admin-error").hidden = false;
  } else {
    $("admin-error").hidden = true;
  }
  refresh();
}

function renderJobs(jobs) {
  $("jobs").replaceChildren(...jobs.map((j) => {
    const tr = document.createElement("tr");
    tr.dataset.job = j.job_id;
    const s = state(j);
    const progress = `${j.succeeded + j.failed}/${j.images}` + (j.failed ? ` (${j.failed} failed)` : "");
    tr.append(cell(j.job_id, "mono"), cell(j.tenant), cell(ago(j.created_at)), cell(String(j.images)),
      cell(bytes(j.input_bytes)), cell(`${s.replaceAll("_", " ")}: ${progress}`), cell(duration(j)));
    const actions = document.createElement("td");
    if (j.queued > 0) {
      const b = Object.assign(document.createElement("button"), { type: "button", textContent: "Cancel", className: "danger" });
      b.setAttribute("aria-label", `Cancel job ${j.job_id}`);
      b.onclick = () => act(`/admin/api/jobs/${j.job_id}/cancel`, b);
      actions.append(b);
    }
    tr.append(actions);
    return tr;
  }));
}

function renderFailures(groups) {
  $("failures-empty").hidden = groups.length > 0;
  $("failures").replaceChildren(...groups.map((g) => {
    const li = document.createElement("li");
    li.className = "failure-group";
    const head = Object.assign(document.createElement("p"), { className: "why-head" });
    head.append(Object.assign(document.createElement("strong"), { textContent: `${g.count} × ` }),
      document.createTextNode(g.reason), Object.assign(document.createElement("span"), { className: "hint", textContent: ` (last ${ago(g.last_at)})` }));
    const ul = document.createElement("ul");
    for (const f of g.examples) {
      const item = document.createElement("li");
      item.dataset.job = f.job_id;
      item.dataset.index = f.index;
      item.append(Object.assign(document.createElement("code"), { textContent: `${f.job_id} image ${f.index}` }), document.createTextNode(" "));
      const b = Object.assign(document.createElement("button"), { type: "button", textContent: "Retry" });
      b.setAttribute("aria-label", `Retry image ${f.index} of job ${f.job_id}`);
      b.onclick = () => act(`/admin/api/jobs/${f.job_id}/images/${f.index}/retry`, b);
      item.append(b);
      ul.append(item);
    }
    li.append(head, ul);
    return li;
  }));
}

async function refresh() {
  const response = await api("/admin/api/overview");
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    $("admin-error").textContent = (body.error && body.error.message) || `HTTP ${response.status}`;
    $("admin-error").hidden = false;
    return;
  }
  const o = await response.json();
  renderQueues(o.queues);
  renderThroughput(o.throughput);
  renderWorkers(o.workers);
  renderJobs(o.jobs);
  renderFailures(o.failures);
  $("updated").textContent = `Updated ${new Date(o.generated_at).toLocaleTimeString()}.`;
}

$("key-button").onclick = async () => { if (await askKey()) refresh(); };
refresh();
setInterval(refresh, REFRESH_MS);
