// regionflow console: polls /console/api/*, keeps a short per-region history and draws it with plotly.
"use strict";

const POLL_MS = 2000;
const JOBS_MS = 4000;
const HISTORY = 150; // points kept per region (5 minutes at 2 s)
const WINDOW_MS = 60000; // narrowest time axis shown
const TERMINAL = ["SUCCEEDED", "FAILED", "ABORTED"];

const PANELS = [
  { id: "files", title: "Input files",
    series: [["files_split", "split"], ["files_processed", "processed"], ["files_reconciled", "reconciled"]] },
  { id: "orchestrator", title: "Main orchestrator executions",
    series: [["orchestrator_started", "started"], ["orchestrator_succeeded", "succeeded"],
             ["orchestrator_failed", "failed"]] },
  { id: "chunks", title: "Chunk processor executions",
    series: [["chunk_started", "started"], ["chunk_succeeded", "succeeded"], ["chunk_failed", "failed"]] },
  { id: "lag", title: "Replication lag (s)", replication: "lag_seconds" },
  { id: "backlog", title: "Replication backlog (changes)", replication: "backlog" },
  { id: "ledger", title: "Ledger transfers committed", series: [["ledger_transfers", "transfers"]] },
  { id: "ledger-lag", title: "Ledger replay lag (s)", series: [["ledger_replay_lag_seconds", "replay lag"]] },
];
const STATS = [
  ["files_split", "files split"], ["files_processed", "files processed"], ["files_reconciled", "reconciled"],
  ["orchestrator_started", "orch. started"], ["orchestrator_succeeded", "orch. succeeded"],
  ["orchestrator_failed", "orch. failed"], ["chunk_started", "chunks started"],
  ["chunk_succeeded", "chunks succeeded"], ["chunk_failed", "chunks failed"], ["rows_ok", "rows ok"],
  ["rows_rejected", "rows rejected"], ["files_skipped", "skipped (standby)"],
  ["ledger_transfers", "ledger transfers"], ["ledger_commit_ms_avg", "commit ms (avg)"],
  ["ledger_canary_succeeded", "ledger canary ok"], ["ledger_canary_failed", "ledger canary failed"],
];

const state = { overview: null, history: {}, built: false, job: null, exec: null, switching: null, approving: null };

// ---------------------------------------------------------------------------------------------- helpers
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

async function api(path, options) {
  const resp = await fetch(path, { credentials: "same-origin", ...(options || {}) });
  if (resp.status === 401) { window.location.reload(); throw new Error("logged out"); }
  let body = null;
  try { body = await resp.json(); } catch (_e) { body = { detail: resp.statusText }; }
  if (!resp.ok) throw new Error(body && body.detail ? body.detail : `HTTP ${resp.status}`);
  return body;
}

const fmt = (v) => (v === null || v === undefined ? "–" : Number.isInteger(v) ? String(v) : v.toFixed(2));
const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "–");
const secs = (a, b) => (a && b ? `${(b - a).toFixed(2)}s` : "–");
const badgeClass = (s) => "badge " + String(s || "").toLowerCase().replace(/[^a-z_]/g, "");

// ---------------------------------------------------------------------------------------------- regions
function buildRegions(overview) {
  const root = $("regions");
  root.style.setProperty("--columns", overview.regions.length);
  for (const r of overview.regions) {
    const n = r.name;
    const stats = el("div", { class: "stats" }, ...STATS.map(([key, label]) =>
      el("div", { class: "stat" }, el("span", { class: "v", "data-testid": `metric-${n}-${key}`, text: "–" }),
        el("span", { class: "l", text: label }))));
    const charts = PANELS.map((p) => el("div", { class: "chart", id: `chart-${n}-${p.id}`,
                                                 "data-testid": `chart-${n}-${p.id}` }));
    const repl = el("table", { class: "grid compact", "data-testid": `replication-${n}` },
      el("thead", {}, el("tr", {}, ...["from → to", "paused", "backlog obj/state", "lag obj/state (s)"]
        .map((h) => el("th", { text: h })))), el("tbody", {}));
    state.history[n] = { t: [], v: {} };
    root.append(el("section", { class: "region card", id: `region-${n}`, "data-testid": `region-${n}` },
      el("header", {}, el("h2", { text: n }),
        el("span", { class: "badge", "data-testid": `health-${n}` }),
        el("span", { class: "badge", "data-testid": `role-${n}` }),
        el("span", { class: "badge", "data-testid": `deep-${n}` }),
        el("span", { class: "badge", "data-testid": `uploads-${n}` }),
        el("span", { class: "badge", "data-testid": `executor-${n}` })),
      el("p", { class: "note", "data-testid": `note-${n}` }), stats, el("div", { class: "charts" }, ...charts),
      el("h3", { text: "Replication into " + n }), repl));
  }
  state.built = true;
}

function replicationSeries(region) {
  const out = {};
  for (const d of region.replication || []) {
    for (const kind of ["objects", "state"]) {
      out[`backlog:${d.source}→${d.target} ${kind}`] = (d.backlog || {})[kind];
      out[`lag_seconds:${d.source}→${d.target} ${kind}`] = (d.lag_seconds || {})[kind];
    }
  }
  return out;
}

function record(region, now) {
  const h = state.history[region.name];
  const values = region.up ? { ...(region.metrics || {}), ...replicationSeries(region) } : {};
  h.t.push(now);
  for (const key of new Set([...Object.keys(h.v), ...Object.keys(values)])) {
    if (!h.v[key]) h.v[key] = new Array(h.t.length - 1).fill(null);
    h.v[key].push(values[key] === undefined ? null : values[key]);
  }
  if (h.t.length > HISTORY) {
    h.t.shift();
    for (const key of Object.keys(h.v)) h.v[key].shift();
  }
}

function drawCharts(name) {
  if (!window.Plotly) return;
  const h = state.history[name];
  const last = h.t[h.t.length - 1];
  const range = [new Date(Math.min(h.t[0], last - WINDOW_MS)), last]; // at least a minute wide
  for (const p of PANELS) {
    const series = p.series || Object.keys(h.v).filter((k) => k.startsWith(p.replication + ":"))
      .map((k) => [k, k.slice(p.replication.length + 1)]);
    // fresh arrays: Plotly.react redraws only data it sees as new
    const traces = series.map(([key, label]) => ({ x: h.t.slice(), y: (h.v[key] || []).slice(), name: label,
                                                   type: "scatter", mode: "lines+markers", marker: { size: 3 },
                                                   line: { width: 2 }, connectgaps: false }));
    const layout = { title: { text: p.title, font: { size: 12 } }, height: 180,
                     margin: { l: 40, r: 10, t: 28, b: 30 }, showlegend: true,
                     legend: { orientation: "h", y: -0.3, font: { size: 10 } },
                     xaxis: { type: "date", tickfont: { size: 9 }, range },
                     yaxis: { rangemode: "tozero", tickfont: { size: 9 } },
                     paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fafbfc" };
    window.Plotly.react(`chart-${name}-${p.id}`, traces, layout, { displayModeBar: false, responsive: true });
  }
}

function showRegion(r) {
  const n = r.name;
  const q = (id) => document.querySelector(`[data-testid="${id}"]`);
  const section = $(`region-${n}`);
  section.classList.toggle("down", !r.up);
  section.classList.toggle("active", !!r.active);
  const health = q(`health-${n}`);
  health.textContent = r.up ? "UP" : "DOWN";
  health.className = r.up ? "badge ok" : "badge down";
  const role = q(`role-${n}`);
  role.textContent = r.active ? "ACTIVE" : "STANDBY";
  role.className = r.active ? "badge active" : "badge";
  const deep = q(`deep-${n}`);
  const deepStatus = r.deep ? r.deep.status : "unknown";
  deep.textContent = r.up ? `deep: ${deepStatus}` : "deep: –";
  deep.className = deepStatus === "ok" ? "badge ok" : "badge warn";
  deep.title = r.deep ? Object.entries(r.deep.checks || {}).map(([k, v]) => `${k}: ${v}`).join("\n") : "";
  // Sync uploads fall back to async for a peer that stopped confirming: say so where people look.
  const uploads = q(`uploads-${n}`);
  const lagging = (r.uploads && r.uploads.lagging) || [];
  uploads.textContent = !r.up || !r.uploads ? "uploads: –"
    : r.uploads.mode !== "sync" ? "uploads: async" : lagging.length ? `uploads: lagging (${lagging.join(", ")})`
    : "uploads: sync";
  uploads.className = r.up && r.uploads && r.uploads.mode === "sync" && !lagging.length ? "badge ok" : "badge warn";
  uploads.title = lagging.map((p) => `${p}: ${(r.uploads.peers[p] || {}).reason || ""}`).join("\n");
  // Where the region's chunks run: its own processes or a Dask cluster, with the work in flight there.
  const executor = q(`executor-${n}`);
  const ex = r.deep && r.deep.executor;
  executor.textContent = !r.up || !ex ? "executor: –"
    : `executor: ${ex.kind}, ${ex.workers} worker${ex.workers === 1 ? "" : "s"}, ${ex.in_flight} in flight`;
  executor.className = r.up && ex && ex.available ? "badge ok" : "badge warn";
  executor.title = ex ? `${ex.address}${ex.error ? "\n" + ex.error : ""}` : "";
  const epoch = r.control ? ` · epoch ${r.control.epoch} (${r.control.active_region} active)` : "";
  q(`note-${n}`).textContent = r.up ? `answering at ${r.url}${epoch}`
    : `did not answer (${r.error || "down"}); ${state.history[n].seen ? "figures below are the last seen"
                                                                     : "no figures from it yet"}`;
  if (r.up && r.metrics) state.history[n].seen = true;
  if (r.up && r.metrics) {
    for (const [key] of STATS) q(`metric-${n}-${key}`).textContent = fmt(r.metrics[key]);
  }
  if (r.up) {
    const body = q(`replication-${n}`).querySelector("tbody");
    body.replaceChildren(...(r.replication || []).map((d) => el("tr", {},
      el("td", { text: `${d.source} → ${d.target}` }), el("td", { text: d.paused ? "paused" : "no" }),
      el("td", { text: `${fmt((d.backlog || {}).objects)} / ${fmt((d.backlog || {}).state)}` }),
      el("td", { text: `${fmt((d.lag_seconds || {}).objects)} / ${fmt((d.lag_seconds || {}).state)}` }))));
  }
}

async function refreshOverview() {
  let ov;
  try {
    ov = await api("/console/api/overview");
  } catch (e) {
    $("status-line").textContent = `console API unreachable (${e.message}); retrying`;
    return;
  }
  state.overview = ov;
  if (!state.built) buildRegions(ov);
  const now = new Date(ov.time * 1000);
  for (const r of ov.regions) { record(r, now); showRegion(r); drawCharts(r.name); }
  $("active-region").textContent = ov.active || "unknown";
  $("epoch").textContent = ov.epoch === null ? "–" : String(ov.epoch);
  const banner = $("down-banner");
  if (ov.down.length) {
    banner.hidden = false;
    banner.textContent = `${ov.down.join(", ")} ${ov.down.length > 1 ? "are" : "is"} down (no answer); ` +
      "the console shows what the other regions report.";
    $("status-line").textContent = `updated ${now.toLocaleTimeString()} · ${ov.down.join(", ")} down`;
  } else {
    banner.hidden = true;
    $("status-line").textContent = `updated ${now.toLocaleTimeString()} · all regions up`;
  }
  $("failover-btn").disabled = ov.regions.every((r) => r.name === ov.active);
  $("failback-btn").disabled = ov.active === ov.primary;
}

// ---------------------------------------------------------------------------------------------- jobs
async function refreshJobs() {
  let data;
  try { data = await api("/console/api/jobs"); } catch (e) {
    $("jobs-source").textContent = `(unavailable: ${e.message})`;
    return;
  }
  $("jobs-source").textContent = `(as seen by ${data.region})`;
  const rows = data.jobs.map((j) => {
    const total = j.chunks_total || 0;
    const done = j.chunks_done === null || j.chunks_done === undefined ? null : j.chunks_done;
    const pct = total && done !== null ? Math.round((100 * done) / total) : 0;
    const bar = el("div", { class: "progress", title: `${pct}%` }, el("div", { style: `width:${pct}%` }));
    return el("tr", { class: "clickable", "data-testid": "job-row", "data-job-id": j.job_id,
                      onclick: () => openJob(j.job_id) },
      el("td", {}, el("code", { text: j.job_id })), el("td", { text: j.input_key }),
      el("td", {}, el("span", { class: badgeClass(j.status), text: j.status })),
      el("td", { text: j.owner_region || "–" }),
      el("td", {}, bar, el("span", { class: "small", text: ` ${fmt(done)}/${fmt(j.chunks_total)}` })),
      el("td", { text: fmt(j.rows_ok) }), el("td", { text: fmt(j.rows_rejected) }),
      el("td", { text: clock(j.updated_at) }));
  });
  $("jobs-table").querySelector("tbody").replaceChildren(...rows);
  $("jobs-empty").hidden = rows.length > 0;
  if (state.job) openJob(state.job, false);
}

async function openJob(jobId, scroll = true) {
  state.job = jobId;
  let data;
  try { data = await api(`/console/api/jobs/${encodeURIComponent(jobId)}`); } catch (e) {
    $("job-fields").replaceChildren(el("dd", { class: "error", text: e.message }));
    return;
  }
  const j = data.job;
  $("job-detail").hidden = false;
  $("job-id").textContent = j.job_id;
  const fields = [["status", j.status], ["input", j.input_key], ["owner region", j.owner_region],
    ["owner epoch", j.owner_epoch], ["completing region", j.completing_region || "–"],
    ["chunks", `${fmt(j.chunks_done)} / ${fmt(j.chunks_total)} done (${fmt(j.chunk_attempts)} attempts)`],
    ["rows in", fmt(j.rows_in)], ["rows ok", fmt(j.rows_ok)], ["rows rejected", fmt(j.rows_rejected)],
    ["reason", j.reason || "–"], ["read from", data.region]];
  $("job-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", { text: k }),
    el("dd", { "data-testid": `job-field-${k.replace(/ /g, "-")}`, text: String(v) })]));
  const link = $("job-download");
  link.hidden = !j.link;
  $("job-no-output").hidden = !!j.link;
  if (j.link) link.href = j.link;
  $("job-chunks").querySelector("tbody").replaceChildren(...data.chunks.map((c) => el("tr", {},
    el("td", { text: c.idx }), el("td", {}, el("span", { class: badgeClass(c.status), text: c.status })),
    el("td", { text: fmt(c.rows) }), el("td", { text: fmt(c.rows_ok) }), el("td", { text: fmt(c.rows_rejected) }),
    el("td", { text: fmt(c.attempts) }))));
  const rejects = data.rejects || { total: null, rejects: [] };
  $("job-rejects-total").textContent = fmt(rejects.total);
  $("job-rejects-shown").textContent = rejects.total > rejects.rejects.length
    ? `(first ${rejects.rejects.length} shown)` : "";
  $("job-rejects").querySelector("tbody").replaceChildren(...rejects.rejects.map((r) => el("tr", {},
    el("td", { text: r.row_no }), el("td", { text: r.chunk_idx }), el("td", { text: r.reason }),
    el("td", {}, el("code", { text: r.raw })))));
  if (scroll) $("job-detail").scrollIntoView({ behavior: "instant", block: "start" });
}

// ---------------------------------------------------------------------------------------------- executions
function renderSteps(container, rec) {
  const steps = rec.steps || [];
  const now = Date.now() / 1000;
  const t0 = rec.started_at || (steps[0] && steps[0].started) || now;
  const end = Math.max(rec.ended_at || 0, ...steps.map((s) => s.ended || now), t0 + 0.001);
  const span = end - t0;
  container.replaceChildren(...steps.map((s) => {
    const started = s.started || now;
    const left = (100 * (started - t0)) / span;
    const width = Math.max((100 * ((s.ended || now) - started)) / span, 0.8);
    return el("div", { class: "step", "data-testid": "step", "data-status": s.status },
      el("span", { class: "step-name", text: s.name }), el("span", { class: "muted small", text: s.kind }),
      el("span", { class: badgeClass(s.status), "data-testid": "step-status", text: s.status }),
      el("span", { class: "small", text: s.ended ? secs(s.started, s.ended) : "running" }),
      el("div", { class: "lane" }, el("div", { class: `bar ${String(s.status).toLowerCase()}`,
                                               style: `left:${left}%;width:${Math.min(width, 100 - left)}%` })),
      s.error ? el("div", { class: "error small", text: s.error }) : null);
  }));
  if (!steps.length) container.replaceChildren(el("p", { class: "muted", text: "no step has started yet" }));
}

async function refreshExecutions() {
  let data;
  try { data = await api("/console/api/executions"); } catch (e) {
    $("exec-note").textContent = `(unavailable: ${e.message})`;
    return;
  }
  $("exec-note").textContent = data.down.length ? `(${data.down.join(", ")} did not answer)` : "";
  const rows = data.executions.map((x) => el("tr", { class: "clickable", "data-testid": "execution-row",
                                                     "data-execution-id": x.execution_id,
                                                     onclick: () => showExecution(x) },
    el("td", {}, el("code", { text: x.execution_id })), el("td", { text: x.plan }), el("td", { text: x.target }),
    el("td", {}, el("span", { class: badgeClass(x.status), text: x.status + (x.practice ? " (practice)" : "") })),
    el("td", { text: x.started_by }), el("td", { text: clock(x.started_at) }),
    el("td", { text: x.rto_seconds === null ? "–" : `${x.rto_seconds.toFixed(2)}s` }),
    el("td", {}, x.status === "WAITING_APPROVAL"
      ? el("button", { class: "danger small-btn", "data-testid": "approve-button", "data-execution-id": x.execution_id,
                       onclick: (event) => { event.stopPropagation(); openApprove(x); }, text: "Approve…" })
      : null)));
  $("executions-table").querySelector("tbody").replaceChildren(...rows);
  $("executions-empty").hidden = rows.length > 0;
  if (state.exec) {
    const current = data.executions.find((x) => x.execution_id === state.exec);
    if (current) showExecution(current);
  }
}

function triggerReason(rec) {
  const t = rec.trigger;
  if (!t) return "";
  return `started by trigger ${t.name}: ${t.condition} held ${fmt(t.held_seconds)}s (for ${fmt(t.for_seconds)}s) ` +
    `in ${t.evaluated_in}; ${t.detail}`;
}

function waitingNote(rec) {
  const w = rec.waiting_for;
  if (!w || rec.status !== "WAITING_APPROVAL") return "";
  const left = Math.max(0, Math.round(w.until - Date.now() / 1000));
  return `waiting for approval at “${w.step}”: ${left}s left, then ${w.on_timeout}`;
}

function showExecution(rec) {
  state.exec = rec.execution_id;
  $("exec-detail").hidden = false;
  $("exec-id").textContent = rec.execution_id;
  $("exec-status").textContent = rec.status;
  $("exec-status").className = badgeClass(rec.status);
  $("exec-reason").textContent = triggerReason(rec);
  $("exec-reason").hidden = !rec.trigger;
  $("exec-waiting").textContent = waitingNote(rec);
  $("exec-waiting").hidden = !waitingNote(rec);
  renderSteps($("exec-steps"), rec);
}

// ---------------------------------------------------------------------------------------------- approve
function openApprove(rec) {
  state.approving = rec;
  $("approve-exec-id").textContent = rec.execution_id;
  $("approve-plan").textContent = rec.plan;
  $("approve-target").textContent = rec.target;
  $("approve-by").textContent = rec.started_by;
  $("approve-reason").textContent = triggerReason(rec);
  $("approve-prompt").textContent = (rec.waiting_for && rec.waiting_for.prompt) || "";
  $("approve-deadline").textContent = waitingNote(rec);
  $("approve-confirm").value = "";
  $("approve-submit").disabled = true;
  $("approve-form").hidden = false;
  $("approve-result").hidden = true;
  $("approve-error").hidden = true;
  $("approve-dialog").showModal();
  $("approve-confirm").focus();
}

async function submitApprove(event) {
  event.preventDefault();
  const rec = state.approving;
  const confirm = $("approve-confirm").value;
  if (!rec || confirm !== rec.target) return;
  $("approve-submit").disabled = true;
  $("approve-error").hidden = true;
  try {
    await api(`/console/api/executions/${encodeURIComponent(rec.execution_id)}/approve`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ region: rec.region, confirm }) });
  } catch (e) {
    $("approve-error").textContent = `not approved: ${e.message}`;
    $("approve-error").hidden = false;
    $("approve-submit").disabled = false;
    return;
  }
  $("approve-form").hidden = true;
  $("approve-result").textContent = `approved ${rec.execution_id}; it continues in ${rec.region}`;
  $("approve-result").hidden = false;
  refreshExecutions();
}

// ---------------------------------------------------------------------------------------------- switch
function openSwitch(kind) {
  const ov = state.overview;
  if (!ov) return;
  const others = ov.regions.map((r) => r.name).filter((n) => n !== ov.active);
  const target = kind === "failback" ? ov.primary : others[0];
  const select = $("switch-target");
  select.replaceChildren(...ov.regions.map((r) => el("option", { value: r.name, text: r.name,
                                                                 selected: r.name === target })));
  $("switch-title").textContent = kind === "failback" ? "Fail back" : "Fail over";
  $("switch-plan").textContent = ov.plan_path;
  $("switch-confirm").value = "";
  $("switch-submit").disabled = true;
  $("switch-form").hidden = false;
  $("switch-result").hidden = true;
  $("switch-error").hidden = true;
  $("switch-dialog").showModal();
  $("switch-confirm").focus();
}

function confirmMatches() {
  $("switch-submit").disabled = $("switch-confirm").value !== $("switch-target").value;
}

async function submitSwitch(event) {
  event.preventDefault();
  const target = $("switch-target").value;
  const confirm = $("switch-confirm").value;
  if (confirm !== target) return;
  $("switch-submit").disabled = true;
  $("switch-error").hidden = true;
  let rec;
  try {
    rec = await api("/console/api/switch", { method: "POST", headers: { "content-type": "application/json" },
                                             body: JSON.stringify({ target, confirm }) });
  } catch (e) {
    $("switch-error").textContent = `not started: ${e.message}`;
    $("switch-error").hidden = false;
    confirmMatches();
    return;
  }
  $("switch-form").hidden = true;
  $("switch-result").hidden = false;
  state.switching = { id: rec.execution_id, region: target };
  followSwitch(rec);
}

async function followSwitch(rec) {
  const { id, region } = state.switching;
  $("switch-exec-id").textContent = id;
  for (let i = 0; i < 1200; i++) { // at most 10 minutes
    $("switch-status").textContent = rec.status;
    $("switch-status").className = badgeClass(rec.status);
    renderSteps($("switch-steps"), rec);
    if (TERMINAL.includes(rec.status)) break;
    await new Promise((ok) => setTimeout(ok, 500));
    try {
      rec = await api(`/console/api/executions/${encodeURIComponent(id)}?region=${encodeURIComponent(region)}`);
    } catch (e) {
      $("switch-active").textContent = `(${e.message}; retrying)`;
    }
  }
  await refreshOverview();
  refreshExecutions();
  $("switch-active").textContent = `active region now: ${state.overview ? state.overview.active : "unknown"}`;
}

// ---------------------------------------------------------------------------------------------- start
function every(ms, fn) {
  const tick = async () => { try { await fn(); } finally { setTimeout(tick, ms); } };
  tick();
}

document.addEventListener("DOMContentLoaded", () => {
  $("failover-btn").addEventListener("click", () => openSwitch("failover"));
  $("failback-btn").addEventListener("click", () => openSwitch("failback"));
  $("switch-confirm").addEventListener("input", confirmMatches);
  $("switch-target").addEventListener("change", () => { $("switch-confirm").value = ""; confirmMatches(); });
  $("switch-form").addEventListener("submit", submitSwitch);
  $("switch-cancel").addEventListener("click", () => $("switch-dialog").close());
  $("approve-confirm").addEventListener("input", () => {
    $("approve-submit").disabled = !state.approving || $("approve-confirm").value !== state.approving.target;
  });
  $("approve-form").addEventListener("submit", submitApprove);
  $("approve-cancel").addEventListener("click", () => $("approve-dialog").close());
  $("job-close").addEventListener("click", () => { state.job = null; $("job-detail").hidden = true; });
  every(POLL_MS, refreshOverview);
  every(JOBS_MS, refreshJobs);
  every(JOBS_MS, refreshExecutions);
});
