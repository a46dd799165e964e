// The ledger UI: polls /ledger/ui/state, sends transfers, and for admins starts the ledger plan and
// follows its steps. Every POST carries the session's CSRF token.
"use strict";
(function () {
  const session = JSON.parse(document.body.dataset.session);
  const $ = (id) => document.getElementById(id);
  let execution = null;  // {execution_id, region} while a switch runs
  let pendingKey = null;  // one idempotency key per transfer the user means: a double click pays once
  const RETRIES = 40;  // 503s retried for about 20 s

  function text(el, value) { el.textContent = value == null ? "" : String(value); }
  function cell(row, value, cls) { const td = row.insertCell(); text(td, value); if (cls) td.className = cls; return td; }

  async function post(path, body) {
    const resp = await fetch(path, { method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": session.csrf }, body: JSON.stringify(body) });
    let data = {};
    try { data = await resp.json(); } catch (e) { data = { detail: resp.statusText }; }
    return { status: resp.status, data };
  }

  function fillAccounts(accounts) {
    const body = $("accounts").tBodies[0];
    body.replaceChildren();
    let total = 0;
    for (const a of accounts) {
      const row = body.insertRow(); cell(row, a.id); cell(row, a.balance, "num");
      total += Math.round(parseFloat(a.balance) * 100);
    }
    text($("total"), (total / 100).toFixed(2));
    for (const id of ["from", "to"]) {
      const select = $(id), keep = select.value;
      if (select.options.length === accounts.length) continue;
      select.replaceChildren(...accounts.map((a) => new Option(a.id, a.id)));
      if (keep) select.value = keep;
      else if (id === "to" && accounts.length > 1) select.selectedIndex = 1;
    }
  }

  function fillTransfers(transfers) {
    const body = $("transfers").tBodies[0];
    body.replaceChildren();
    for (const t of transfers) {
      const row = body.insertRow();
      cell(row, t.committed_at.replace("T", " ").slice(0, 19)); cell(row, t.from); cell(row, t.to);
      cell(row, t.amount, "num"); cell(row, t.region); cell(row, t.transfer_id.slice(0, 8));
    }
  }

  function fillMissing(missing) {
    $("missing-section").hidden = !missing || missing.count === 0;
    if (!missing || !missing.count) return;
    text($("missing-summary"), `${missing.count} transfer(s), ${missing.amount} in all, committed by an old primary and never replicated`);
    const body = $("missing").tBodies[0];
    body.replaceChildren();
    for (const t of missing.transfers) {
      const row = body.insertRow();
      cell(row, (t.committed_at || "").replace("T", " ").slice(0, 19)); cell(row, t.from); cell(row, t.to);
      cell(row, t.amount, "num"); cell(row, t.old_primary); cell(row, t.reapply_result || "");
    }
  }

  async function refresh() {
    let state;
    try {
      const resp = await fetch("/ledger/ui/state", { credentials: "same-origin" });
      if (resp.status === 401) { window.location.assign("/ledger/"); return; }
      state = await resp.json();
    } catch (e) { text($("notice"), "the ledger does not answer; retrying"); return; }
    text($("notice"), state.errors ? Object.values(state.errors).join("; ") : "");
    text($("served-by"), state.served_by);
    text($("db-primary"), state.ledger.primary_region || "-");
    text($("active-region"), `${state.active_region} (epoch ${state.epoch})`);
    if (state.accounts) fillAccounts(state.accounts);
    if (state.transfers) fillTransfers(state.transfers);
    fillMissing(state.missing);
  }

  $("transfer-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    pendingKey = pendingKey || crypto.randomUUID();
    $("send-button").disabled = true;
    const result = $("transfer-result");
    const body = { from: $("from").value, to: $("to").value, amount: $("amount").value, idempotency_key: pendingKey };
    let status, data;
    // 503: the ledger is between primaries (a switch in progress). Retried under the same key, it pays once.
    for (let attempt = 1; ; attempt++) {
      ({ status, data } = await post("/ledger/ui/transfers", body));
      if (status !== 503 || attempt >= RETRIES) break;
      result.className = "";
      text(result, `the ledger is switching regions (${data.detail}); retrying…`);
      await new Promise((done) => setTimeout(done, 500));
    }
    $("send-button").disabled = false;
    if (status === 201 || status === 200) {
      result.className = "ok";
      text(result, `sent ${data.amount} from ${data.from} to ${data.to}: committed in ${data.region} (transfer ${data.transfer_id.slice(0, 8)})`);
      pendingKey = null;
      $("amount").value = "";
      refresh();
    } else {
      result.className = "bad";
      text(result, `not sent (HTTP ${status}): ${data.detail}`);
      if (status !== 503) pendingKey = null;  // a 503 is retried under the same key
    }
  });

  function askConfirm(action) {
    const others = session.regions.filter((r) => r !== session.primary);
    const target = action === "failover" ? others[0] : session.primary;
    text($("confirm-target"), target);
    text($("confirm-action"), action === "failover" ? `fail over to ${target}` : `fail back to ${target}`);
    $("confirm-form").dataset.action = action;
    $("confirm-form").hidden = false;
    $("confirm").value = "";
    $("confirm").focus();
  }

  async function follow() {
    if (!execution) return;
    const resp = await fetch(`/ledger/ui/executions/${encodeURIComponent(execution.execution_id)}?region_name=${encodeURIComponent(execution.region)}`,
      { credentials: "same-origin" });
    const box = $("execution");
    if (resp.status !== 200) { text(box, `execution ${execution.execution_id}: no answer yet`); setTimeout(follow, 500); return; }
    const rec = await resp.json();
    box.replaceChildren();
    const head = document.createElement("p");
    head.id = "execution-status";
    head.className = rec.status === "SUCCEEDED" ? "ok" : (rec.status === "FAILED" || rec.status === "ABORTED") ? "bad" : "";
    text(head, `${execution.action} to ${execution.region}: ${rec.status}` + (rec.rto_seconds != null ? ` (RTO ${rec.rto_seconds} s)` : ""));
    const list = document.createElement("ol");
    list.className = "steps";
    for (const s of rec.steps || []) {
      const li = document.createElement("li");
      text(li, `${s.name}: ${s.status}${s.error ? " - " + s.error : ""}`);
      list.appendChild(li);
    }
    box.append(head, list);
    if (["SUCCEEDED", "FAILED", "ABORTED", "CANCELLED"].includes(rec.status)) { execution = null; refresh(); }
    else setTimeout(follow, 300);
  }

  if (session.admin) {
    $("admin").hidden = false;
    $("failover").addEventListener("click", () => askConfirm("failover"));
    $("failback").addEventListener("click", () => askConfirm("failback"));
    $("confirm-cancel").addEventListener("click", () => { $("confirm-form").hidden = true; });
    $("confirm-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const action = $("confirm-form").dataset.action;
      const { status, data } = await post("/ledger/ui/switch", { action, confirm: $("confirm").value.trim() });
      if (status !== 200) { text($("execution"), `not started (HTTP ${status}): ${data.detail}`); return; }
      $("confirm-form").hidden = true;
      execution = data;
      follow();
    });
  }
  text($("who"), `${session.user}${session.admin ? " (admin)" : ""}`);
  refresh();
  setInterval(refresh, 2000);
})();
