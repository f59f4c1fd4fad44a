// imgpipe's page: the public API, from a browser. Plain JavaScript, no
// build step, nothing fetched from elsewhere. State lives in this file's
// variables and, for the key and the recent jobs, in localStorage.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "imgpipe.key";
const RECENT_STORE = "imgpipe.recent";
const RECENT_MAX = 20;

let specs = [];          // GET /filters: the operations
let limits = {};         // GET /filters: the server's limits
let files = [];          // {file, url, problem}
let chain = [];          // {name, values: [string]}
let job = null;          // the job shown: {id, status, originals: Map(filename -> url)}
let stream = null;       // its EventSource
let poller = null;       // its status poll, when the stream is down

// ---------- API ----------

function key() { return localStorage.getItem(KEY_STORE) || ""; }

function headers() {
  return key() ? { Authorization: "Bearer " + key() } : {};
}

/** fetch with the key; asks for one on 401 and tries again once. */
async function api(path, options = {}, retried = false) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (response.status === 401 && !retried) {
    if (await askKey()) return api(path, options, true);
  }
  return response;
}

/** The JSON error of a 4xx/5xx answer: {code, message, operation, file}. */
async function problem(response) {
  try {
    const body = await response.json();
    return body.error || { message: `HTTP ${response.status}` };
  } catch (_) {
    return { message: `HTTP ${response.status}` };
  }
}

function askKey(message) {
  return new Promise((resolve) => {
    const dialog = $("key-dialog");
    $("key-error").hidden = !message;
    $("key-error").textContent = message || "";
    $("key-input").value = "";
    dialog.onclose = () => {
      const value = $("key-input").value.trim();
      if (dialog.returnValue === "ok" && value) {
        localStorage.setItem(KEY_STORE, value);
        $("key-button").hidden = false;
        resolve(true);
      } else {
        resolve(false);
      }
    };
    dialog.showModal();
  });
}

// ---------- files ----------

function humanBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function addFiles(list) {
  for (const file of list) {
    if (file.name.startsWith(".")) continue;
    files.push({ file, url: URL.createObjectURL(file), problem: null });
  }
  checkFiles();
  renderFiles();
}

function checkFiles() {
  files.forEach((f, i) => {
    f.problem = null;
    if (limits.max_file_bytes && f.file.size > limits.max_file_bytes) {
      f.problem = `larger than the server's ${humanBytes(limits.max_file_bytes)} limit`;
    } else if (f.file.size === 0) {
      f.problem = "empty file";
    } else if (limits.max_files && i >= limits.max_files) {
      f.problem = `over the server's ${limits.max_files} images per job`;
    }
  });
}

function renderFiles() {
  const ul = $("files");
  ul.replaceChildren();
  files.forEach((f, i) => {
    const li = document.createElement("li");
    li.className = f.problem ? "bad" : "";
    const img = document.createElement("img");
    img.src = f.url;
    img.alt = "";
    img.onerror = () => { img.replaceWith(Object.assign(document.createElement("div"), { className: "hint", textContent: "no preview" })); };
    const name = Object.assign(document.createElement("span"), { className: "name", textContent: f.file.webkitRelativePath || f.file.name });
    const size = Object.assign(document.createElement("span"), { className: "hint", textContent: humanBytes(f.file.size) });
    const remove = Object.assign(document.createElement("button"), { type: "button", className: "remove", textContent: "×" });
    remove.setAttribute("aria-label", `Remove ${f.file.name}`);
    remove.onclick = () => { URL.revokeObjectURL(f.url); files.splice(i, 1); checkFiles(); renderFiles(); };
    li.append(img, name, size, remove);
    if (f.problem) li.append(Object.assign(document.createElement("span"), { className: "error file-error", textContent: f.problem }));
    ul.append(li);
  });
  const bytes = files.reduce((n, f) => n + f.file.size, 0);
  $("files-summary").textContent = files.length ? `${files.length} image(s), ${humanBytes(bytes)}` : "";
}

/** Every file of a dropped folder, recursively (where the browser allows). */
async function droppedFiles(items) {
  const out = [];
  const walk = async (entry) => {
    if (entry.isFile) {
      out.push(await new Promise((ok, fail) => entry.file(ok, fail)));
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
        if (!batch.length) break;
        for (const e of batch) await walk(e);
      }
    }
  };
  for (const item of items) {
    const entry = item.webkitGetAsEntry && item.webkitGetAsEntry();
    if (entry) await walk(entry);
    else if (item.getAsFile()) out.push(item.getAsFile());
  }
  return out;
}

// ---------- the chain ----------

function spec(name) { return specs.find((s) => s.name === name); }

function chainText() {
  return chain.map(({ name, values }) => {
    const s = spec(name);
    let last = -1;
    values.forEach((v, i) => { if (v !== "") last = i; });
    let text = name;
    for (let i = 0; i <= last; i++) {
      const arg = s.args[i];
      text += (arg.lead || ":") + (values[i] !== "" ? values[i] : (arg.default ?? ""));
    }
    return text;
  }).join(",");
}

/** Reads a chain's text back into the builder (the server judges it). */
function parseChain(text) {
  const pieces = [];
  for (const token of text.split(",").map((t) => t.trim()).filter(Boolean)) {
    const name = token.split(":")[0];
    if (spec(name) || !pieces.length) pieces.push(token);
    else pieces[pieces.length - 1] += "," + token;  // an argument after a ',' lead
  }
  return pieces.map((piece) => {
    const name = piece.split(/[:,]/)[0];
    const s = spec(name);
    const values = piece.slice(name.length).split(/[:,]/).slice(1);
    const args = s ? s.args : [];
    return { name, values: args.map((_, i) => values[i] ?? "") };
  });
}

function argInput(op, arg, i, row) {
  const wrap = Object.assign(document.createElement("span"), { className: "arg" });
  const id = `arg-${row}-${i}`;
  const label = Object.assign(document.createElement("label"), { htmlFor: id, textContent: arg.name });
  let input;
  if (arg.type === "choice") {
    input = document.createElement("select");
    input.append(new Option(arg.default ? `default (${arg.default})` : "choose…", ""));
    for (const c of arg.choices) input.append(new Option(c, c));
  } else {
    input = document.createElement("input");
    input.type = arg.type === "size" ? "text" : "number";
    if (arg.type === "size") input.placeholder = "WxH";
    if ("minimum" in arg) { input.min = arg.minimum; input.max = arg.maximum; }
    if (arg.type === "integer" || arg.type === "odd_integer") input.step = arg.type === "odd_integer" ? 2 : 1;
    if (arg.type === "number") input.step = "any";
    if (arg.default != null) input.placeholder = arg.default;
    else input.required = true;
  }
  input.id = id;
  input.value = op.values[i];
  input.title = arg.description + ("minimum" in arg ? ` (${arg.minimum} to ${arg.maximum})` : "");
  input.oninput = () => {
    op.values[i] = input.value.trim();
    syncText();
    // An edited operation's error no longer applies.
    const li = input.closest("li");
    li.classList.remove("bad");
    li.querySelector(".op-error")?.remove();
  };
  wrap.append(label, input);
  return wrap;
}

function renderChain(errorFor) {
  const ol = $("chain");
  ol.replaceChildren();
  chain.forEach((op, row) => {
    const s = spec(op.name);
    const li = document.createElement("li");
    li.dataset.op = op.name;
    li.append(Object.assign(document.createElement("span"), { className: "op-name", textContent: op.name }));
    if (s) s.args.forEach((arg, i) => li.append(argInput(op, arg, i, row)));
    const tools = Object.assign(document.createElement("span"), { className: "tools" });
    const tool = (text, label, action, disabled) => {
      const b = Object.assign(document.createElement("button"), { type: "button", textContent: text, disabled });
      b.setAttribute("aria-label", `${label} ${op.name}`);
      b.onclick = () => { action(); syncText(); renderChain(); };
      tools.append(b);
    };
    tool("↑", "Move up", () => chain.splice(row - 1, 0, chain.splice(row, 1)[0]), row === 0);
    tool("↓", "Move down", () => chain.splice(row + 1, 0, chain.splice(row, 1)[0]), row === chain.length - 1);
    tool("Remove", "Remove", () => chain.splice(row, 1), false);
    li.append(tools);
    if (errorFor && errorFor.operation === op.name) {
      li.classList.add("bad");
      const p = Object.assign(document.createElement("p"), { className: "error op-error", textContent: errorFor.message });
      p.setAttribute("role", "alert");
      li.append(p);
    }
    ol.append(li);
  });
}

function syncText() { $("chain-text").value = chainText(); $("chain-error").hidden = true; }

// ---------- submitting ----------

/** The server's message without the file name it may start with. */
function withoutFile(error) {
  const prefix = error.file ? `${error.file}: ` : "";
  return prefix && error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
}

function showError(where, error) {
  const p = $(where);
  p.textContent = error.file ? `${error.file}: ${withoutFile(error)}` : error.message;
  p.hidden = false;
}

function submit() {
  $("submit-error").hidden = true;
  $("chain-error").hidden = true;
  const ok = files.filter((f) => !f.problem);
  if (!ok.length) return showError("submit-error", { message: "Choose at least one image first." });
  if (!$("chain-text").value.trim()) return showError("chain-error", { message: "Add at least one operation." });
  const form = new FormData();
  for (const f of ok) form.append("files", f.file, f.file.webkitRelativePath || f.file.name);
  form.append("ops", $("chain-text").value.trim());
  if ($("format").value) form.append("format", $("format").value);
  if ($("quality").value) form.append("quality", $("quality").value);
  send(form, ok);
}

function send(form, sent, retried = false) {
  const xhr = new XMLHttpRequest();
  const bar = $("upload-progress");
  bar.hidden = false;
  bar.value = 0;
  $("submit").disabled = true;
  xhr.upload.onprogress = (e) => {
    if (!e.lengthComputable) return;
    bar.value = e.loaded / e.total;
    $("upload-text").textContent = `Uploading ${humanBytes(e.loaded)} of ${humanBytes(e.total)}`;
  };
  xhr.onerror = () => { done(); showError("submit-error", { message: "The server could not be reached." }); };
  const done = () => { $("submit").disabled = false; bar.hidden = true; $("upload-text").textContent = ""; };
  xhr.onload = async () => {
    done();
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 401 && !retried && await askKey()) return send(form, sent, true);
    if (xhr.status !== 202) {
      const error = body.error || { message: `HTTP ${xhr.status}` };
      if (error.operation) {
        renderChain(error);
        showError("chain-error", error);
      } else if (error.file) {
        markFile(error);
        showError("submit-error", error);
      } else {
        showError("submit-error", error);
      }
      return;
    }
    renderChain();
    const originals = new Map(sent.map((f) => [f.file.webkitRelativePath || f.file.name, f.url]));
    remember(body);
    openJob(body.job_id, originals, body.events_url);
  };
  xhr.open("POST", "/process-job");
  for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
  xhr.send(form);
}

/** Shows the server's refusal of one file next to it. */
function markFile(error) {
  const i = files.findIndex((f) => (f.file.webkitRelativePath || f.file.name) === error.file);
  if (i < 0) return;
  files[i].problem = withoutFile(error);
  renderFiles();
}

// ---------- a job ----------

const STATE_LABEL = { queued: "queued", processing: "running", succeeded: "succeeded", failed: "failed" };

function stateOf(image) {
  if (image.state === "queued" && image.attempts > 0) return "retrying";
  return STATE_LABEL[image.state] || image.state;
}

async function openJob(id, originals, eventsUrl) {
  closeJob();
  job = { id, status: null, originals: originals || new Map() };
  $("job").hidden = false;
  $("job-title").textContent = `Job ${id}`;
  $("job-summary").textContent = "Loading…";
  const response = await api(`/status-job/${id}`);
  if (!response.ok) {
    const error = await problem(response);
    $("job-summary").textContent = error.message;
    if (response.status === 404) forget(id);
    return;
  }
  applyStatus(await response.json());
  follow(eventsUrl || job.status.events_url);
  $("job").scrollIntoView({ behavior: "smooth", block: "start" });
}

function closeJob() {
  if (stream) stream.close();
  if (poller) clearInterval(poller);
  stream = poller = null;
  job = null;
}

/** Live events; polling the status if the stream cannot be held. */
function follow(url) {
  if (!job || job.status.all_ready || !url || !window.EventSource) return poll();
  const id = job.id;
  stream = new EventSource(url);
  $("job-live").textContent = "Live updates on.";
  stream.addEventListener("snapshot", (e) => applyStatus(JSON.parse(e.data)));
  for (const kind of ["image.started", "image.succeeded", "image.failed", "image.retrying"]) {
    stream.addEventListener(kind, (e) => applyImageEvent(kind, JSON.parse(e.data)));
  }
  stream.addEventListener("job.progress", (e) => applyProgress(JSON.parse(e.data).progress));
  for (const kind of ["job.completed", "job.completed_with_errors", "job.failed", "job.deleted"]) {
    stream.addEventListener(kind, async (e) => {
      stream.close();
      stream = null;
      if (kind === "job.deleted") return jobGone(id);
      // The final event carries the status; fetch it again for fresh links.
      const data = JSON.parse(e.data);
      if (data.images) applyStatus(data);
      await refresh();
      $("job-live").textContent = "";
    });
  }
  stream.onerror = () => {
    if (!stream || !job || job.id !== id) return;
    stream.close();
    stream = null;
    poll();
  };
}

function poll() {
  if (!job || job.status.all_ready || poller) return;
  $("job-live").textContent = "Live updates unavailable; checking every second.";
  poller = setInterval(refresh, 1000);
}

async function refresh() {
  if (!job) return;
  const response = await api(`/status-job/${job.id}`);
  if (response.status === 404) return jobGone(job.id);
  if (response.ok) applyStatus(await response.json());
  if (job && job.status.all_ready && poller) { clearInterval(poller); poller = null; $("job-live").textContent = ""; }
}

function jobGone(id) {
  forget(id);
  closeJob();
  $("job-summary").textContent = "This job was deleted.";
  $("images").replaceChildren();
  $("job-zip").hidden = true;
}

function applyImageEvent(kind, event) {
  if (!job || !job.status) return;
  const image = job.status.images[event.index];
  if (!image) return;
  image.attempts = event.attempt ?? image.attempts;
  image.state = { "image.started": "processing", "image.succeeded": "succeeded", "image.failed": "failed", "image.retrying": "queued" }[kind];
  image.error = event.error || null;
  renderImage(image);
  if (kind === "image.succeeded") refresh();  // its result link
}

function applyProgress(progress) {
  if (!job || !job.status || !progress) return;
  job.status.progress = progress;
  renderSummary();
}

function applyStatus(status) {
  if (!job) return;
  job.status = status;
  renderSummary();
  $("images").replaceChildren(...status.images.map((image) => {
    const li = document.createElement("li");
    li.id = `image-${image.index}`;
    return li;
  }));
  status.images.forEach(renderImage);
  remember({ job_id: status.job_id, images: status.images, ops: status.ops, status: status.status });
}

function renderSummary() {
  const s = job.status;
  const p = s.progress;
  $("job-progress").value = p.percent;
  const failed = p.failed ? `, ${p.failed} failed` : "";
  $("job-summary").textContent = `${s.status.replaceAll("_", " ")}: ${p.succeeded + p.failed} of ${p.total} done (${p.percent}%)${failed}. Chain: ${s.ops}`;
  const zip = $("job-zip");
  zip.hidden = !(s.all_ready && p.succeeded > 0);
  zip.href = s.download_url;
  zip.download = `imgpipe-${s.job_id}.zip`;
}

function renderImage(image) {
  const li = $(`image-${image.index}`);
  if (!li) return;
  const state = stateOf(image);
  li.dataset.state = state;
  li.replaceChildren();
  if (image.state === "succeeded" && image.result_url) {
    const thumb = Object.assign(document.createElement("button"), { type: "button", className: "thumb" });
    thumb.setAttribute("aria-label", `Compare ${image.filename} before and after`);
    const img = Object.assign(document.createElement("img"), { src: image.result_url, alt: `Result of ${image.filename}` });
    thumb.append(img);
    thumb.onclick = () => compare(image);
    li.append(thumb);
  }
  li.append(Object.assign(document.createElement("span"), { className: "name", textContent: image.filename }));
  li.append(Object.assign(document.createElement("span"), { className: `state ${state}`, textContent: state }));
  if (image.attempts > 1) li.append(document.createTextNode(` attempt ${image.attempts}`));
  if (image.error) li.append(Object.assign(document.createElement("span"), { className: "why", textContent: image.error }));
  if (image.state === "succeeded" && image.result_url) {
    const a = Object.assign(document.createElement("a"), { href: image.result_url, textContent: "Download", download: image.entry_name });
    li.append(document.createElement("br"), a);
  }
}

function compare(image) {
  const before = job.originals.get(image.filename);
  $("compare-before").hidden = !before;
  $("compare-before").nextElementSibling.textContent = before ? "Original" : "Original (not in this browser any more)";
  if (before) $("compare-before").src = before;
  $("compare-after").src = image.result_url;
  $("compare").showModal();
}

async function deleteJob() {
  if (!job || !confirm("Delete this job and its results?")) return;
  const id = job.id;
  const response = await api(`/jobs/${id}`, { method: "DELETE" });
  if (response.ok || response.status === 404) return jobGone(id);
  $("job-summary").textContent = (await problem(response)).message;
}

// ---------- recent jobs ----------

function recent() {
  try { return JSON.parse(localStorage.getItem(RECENT_STORE)) || []; } catch (_) { return []; }
}

function remember(body) {
  const list = recent().filter((j) => j.id !== body.job_id);
  const old = recent().find((j) => j.id === body.job_id) || {};
  list.unshift({
    id: body.job_id,
    images: body.images ? body.images.length : old.images,
    ops: body.ops || old.ops,
    status: body.status || old.status || "queued",
    at: old.at || new Date().toISOString(),
  });
  localStorage.setItem(RECENT_STORE, JSON.stringify(list.slice(0, RECENT_MAX)));
  renderRecent();
}

function forget(id) {
  localStorage.setItem(RECENT_STORE, JSON.stringify(recent().filter((j) => j.id !== id)));
  renderRecent();
}

function renderRecent() {
  const list = recent();
  $("recent-empty").hidden = list.length > 0;
  $("recent").replaceChildren(...list.map((j) => {
    const li = document.createElement("li");
    const open = Object.assign(document.createElement("button"), { type: "button", textContent: "Open" });
    open.setAttribute("aria-label", `Open job ${j.id}`);
    open.onclick = () => openJob(j.id);
    li.append(open,
      Object.assign(document.createElement("span"), { className: `state ${j.status}`, textContent: j.status.replaceAll("_", " ") }),
      Object.assign(document.createElement("span"), { textContent: `${j.images ?? "?"} image(s), ${j.ops ?? ""}` }),
      Object.assign(document.createElement("code"), { textContent: j.id }),
      Object.assign(document.createElement("span"), { className: "hint", textContent: new Date(j.at).toLocaleString() }));
    return li;
  }));
}

// ---------- start ----------

async function start() {
  if (key()) $("key-button").hidden = false;
  $("key-button").onclick = () => askKey();
  const response = await api("/filters");
  if (!response.ok) {
    showError("submit-error", await problem(response));
    return;
  }
  const catalogue = await response.json();
  specs = catalogue.filters;
  limits = catalogue.limits || {};
  const select = $("op-select");
  for (const s of specs) select.append(new Option(`${s.name}: ${s.description}`, s.name));
  select.onchange = () => { const s = spec(select.value); $("op-help").textContent = s ? `${s.syntax}. Pillow: ${s.pillow}` : ""; };
  select.onchange();
  for (const f of catalogue.output_formats) $("format").append(new Option(f, f));
  const parts = [];
  if (limits.max_files) parts.push(`up to ${limits.max_files} images per job`);
  if (limits.max_file_bytes) parts.push(`${humanBytes(limits.max_file_bytes)} each`);
  if (limits.max_pixels) parts.push(`${(limits.max_pixels / 1e6).toFixed(0)} megapixels each`);
  $("limits-hint").textContent = parts.length ? `This server takes ${parts.join(", ")}.` : "";

  $("op-add").onclick = () => {
    const s = spec(select.value);
    chain.push({ name: s.name, values: s.args.map(() => "") });
    syncText();
    renderChain();
  };
  $("chain-text").onchange = () => { chain = parseChain($("chain-text").value); renderChain(); };
  $("pick-files").onchange = (e) => { addFiles(e.target.files); e.target.value = ""; };
  $("pick-folder").onchange = (e) => { addFiles(e.target.files); e.target.value = ""; };
  const drop = $("drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles(await droppedFiles([...e.dataTransfer.items]));
  };
  $("submit").onclick = submit;
  $("job-delete").onclick = deleteJob;
  $("job-new").onclick = () => { closeJob(); $("job").hidden = true; $("compose").scrollIntoView({ behavior: "smooth" }); };
  renderRecent();
}

start();
