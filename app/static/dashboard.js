"use strict";
// The operator dashboard: reads GET /v1/admin/stats, draws the last hour by minute, and edits
// surface settings with PUT /v1/admin/surfaces/{surface}. No dependencies: works offline.

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];
const REFRESH_MS = 5000;
let token = sessionStorage.getItem("om-token") || "";

// The first minute worth drawing: the hour's first with requests on any surface (everything
// else follows requests), or the last MIN_MINUTES. A fresh service's data otherwise sits in a
// tick at the right edge of an hour-wide axis (the README screenshot, after a 75 s demo run).
const MIN_MINUTES = 10;
function firstMinute(stats) {
  const n = stats.minutes.length;
  let first = n;
  for (const s of Object.values(stats.surfaces || {})) {
    const i = (s.series.requests_per_s || []).findIndex(x => x !== null && x !== undefined && x > 0);
    if (i >= 0) first = Math.min(first, i);
  }
  return Math.max(0, Math.min(first, n - MIN_MINUTES));
}

function drawChart(canvas, minutes, series, start = 0) {
  minutes = minutes.slice(start);
  series = series.map(s => ({ ...s, values: s.values.slice(start) }));
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, w, h);
  const pad = { l: 44, r: 8, t: 8, b: 34 };
  const values = series.flatMap(s => s.values).filter(v => v !== null && v !== undefined);
  let lo = Math.min(0, ...values), hi = Math.max(...values, 0);
  if (hi === lo) hi = lo + 1;
  const x = i => pad.l + (w - pad.l - pad.r) * (minutes.length > 1 ? i / (minutes.length - 1) : 0);
  const y = v => h - pad.b - (h - pad.t - pad.b) * (v - lo) / (hi - lo);
  ctx.strokeStyle = "#e3e6eb"; ctx.fillStyle = "#667"; ctx.font = "10px system-ui"; ctx.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = lo + (hi - lo) * k / 4;
    ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(w - pad.r, y(v)); ctx.stroke();
    ctx.fillText(v >= 100 ? v.toFixed(0) : v.toPrecision(2), 2, y(v) + 3);
  }
  const label = t => new Date(t * 1000).toTimeString().slice(0, 5);
  if (minutes.length) {
    ctx.fillText(label(minutes[0]), pad.l, h - pad.b + 12);
    ctx.fillText(label(minutes[minutes.length - 1]), w - pad.r - 28, h - pad.b + 12);
  }
  let drawn = 0, legend = 0;
  series.forEach((s, k) => {
    ctx.strokeStyle = s.color || COLORS[k % COLORS.length]; ctx.lineWidth = 1.6; ctx.beginPath();
    let open = false;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) { open = false; return; }
      drawn += 1;
      if (open) ctx.lineTo(x(i), y(v)); else { ctx.moveTo(x(i), y(v)); open = true; }
    });
    ctx.stroke();
    ctx.fillStyle = s.color || COLORS[k % COLORS.length];
    // A point with no neighbour draws no line: mark it, or a new series' first minute is invisible.
    s.values.forEach((v, i) => {
      const lone = (i === 0 || s.values[i - 1] == null) && (i === s.values.length - 1 || s.values[i + 1] == null);
      if (v !== null && v !== undefined && lone) { ctx.beginPath(); ctx.arc(x(i), y(v), 2.5, 0, 2 * Math.PI); ctx.fill(); }
    });
    if (s.name) ctx.fillText(s.name, pad.l + 4 + 96 * legend++, h - 6);  // a band's edges go unnamed
  });
  canvas.dataset.points = String(drawn);
  return drawn;
}

// The what-if dial (GET /v1/admin/stats → surfaces[name].whatif): SNIPS clicks per request at
// each explore_traffic with its 95% band, the current setting dashed, and its realised value.
function drawWhatIf(canvas, w) {
  const dpr = window.devicePixelRatio || 1;
  const cw = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = cw * dpr; canvas.height = h * dpr;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, cw, h);
  const pad = { l: 44, r: 18, t: 8, b: 34 };
  const pts = w.explore_traffic.map((q, i) => ({ q, v: w.clicks_per_request[i], lo: w.low[i], hi: w.high[i] }))
    .filter(p => p.v !== null);
  const r = w.realised;
  const values = pts.flatMap(p => [p.lo, p.hi]).concat(r.clicks_per_request === null ? [] : [r.low, r.high]);
  // Zoomed to the band, not from 0: the differences between settings are the point, and the
  // band drawn at the same scale shows which of them the data can tell apart.
  let lo = values.length ? Math.min(...values) : 0, hi = values.length ? Math.max(...values) : 1;
  const margin = (hi - lo) * 0.1 || Math.max(Math.abs(hi) * 0.1, 0.05);
  lo = Math.max(0, lo - margin); hi = hi + margin;
  const qmax = Math.max(...w.explore_traffic, 0.05);
  const x = q => pad.l + (cw - pad.l - pad.r) * q / qmax;
  const y = v => h - pad.b - (h - pad.t - pad.b) * (v - lo) / (hi - lo);
  ctx.strokeStyle = "#e3e6eb"; ctx.fillStyle = "#667"; ctx.font = "10px system-ui"; ctx.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = lo + (hi - lo) * k / 4;
    ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(cw - pad.r, y(v)); ctx.stroke();
    ctx.fillText(v.toPrecision(2), 2, y(v) + 3);
  }
  const step = qmax <= 0.6 ? 0.1 : 0.25;
  for (let q = 0; q <= qmax + 1e-9; q += step) ctx.fillText(q.toFixed(2), x(q) - 10, h - pad.b + 12);
  ctx.fillText("explore_traffic →", cw - pad.r - 90, h - 6);
  if (pts.length) {
    ctx.fillStyle = "rgba(37, 99, 235, 0.15)"; ctx.beginPath();
    pts.forEach((p, i) => i ? ctx.lineTo(x(p.q), y(p.hi)) : ctx.moveTo(x(p.q), y(p.hi)));
    [...pts].reverse().forEach(p => ctx.lineTo(x(p.q), y(p.lo)));
    ctx.closePath(); ctx.fill();
    ctx.strokeStyle = COLORS[0]; ctx.fillStyle = COLORS[0]; ctx.lineWidth = 1.6; ctx.beginPath();
    pts.forEach((p, i) => i ? ctx.lineTo(x(p.q), y(p.v)) : ctx.moveTo(x(p.q), y(p.v)));
    ctx.stroke();
    pts.forEach(p => { ctx.beginPath(); ctx.arc(x(p.q), y(p.v), 2, 0, 2 * Math.PI); ctx.fill(); });
  }
  ctx.strokeStyle = "#94a3b8"; ctx.setLineDash([4, 3]); ctx.beginPath();
  ctx.moveTo(x(w.current), pad.t); ctx.lineTo(x(w.current), h - pad.b); ctx.stroke(); ctx.setLineDash([]);
  if (r.clicks_per_request !== null) {
    ctx.strokeStyle = COLORS[1]; ctx.fillStyle = COLORS[1]; ctx.lineWidth = 1.6; ctx.beginPath();
    ctx.moveTo(x(w.current), y(r.low)); ctx.lineTo(x(w.current), y(r.high)); ctx.stroke();
    ctx.beginPath(); ctx.arc(x(w.current), y(r.clicks_per_request), 3.5, 0, 2 * Math.PI); ctx.fill();
  }
  ctx.fillStyle = COLORS[0]; ctx.fillText("estimate (SNIPS, 95% band)", pad.l + 4, h - 6);
  ctx.fillStyle = COLORS[1]; ctx.fillText("realised now", pad.l + 150, h - 6);
  canvas.dataset.points = String(pts.length);
  return pts.length;
}

const fmt = v => v === null ? "–" : v.toFixed(3);

function whatIfReadout(w, typed) {
  const q = Number(typed);
  if (typed === "" || !Number.isFinite(q)) return "";
  let best = 0;
  w.explore_traffic.forEach((g, i) => { if (Math.abs(g - q) < Math.abs(w.explore_traffic[best] - q)) best = i; });
  const g = w.explore_traffic[best];
  const at = g === q ? `at explore_traffic ${g}` : `nearest computed point, explore_traffic ${g}`;
  const v = w.clicks_per_request[best];
  return v === null ? `${at}: not estimable (${w.not_estimable[best]})`
    : `${at}: ${fmt(v)} clicks per request (95% interval ${fmt(w.low[best])}–${fmt(w.high[best])})`;
}

function whatIfBox(w, input) {
  const canvas = el("canvas", { class: "whatif-chart", "data-title": "what-if" });
  const readout = el("p", { class: "readout" }, [whatIfReadout(w, input.value)]);
  input.addEventListener("input", () => { readout.textContent = whatIfReadout(w, input.value); });
  const r = w.realised;
  const now = r.clicks_per_request === null
    ? `No request at the current setting (${w.current}) in the last hour yet.`
    : `Now (${w.current}): realised ${fmt(r.clicks_per_request)} clicks per request `
      + `(95% interval ${fmt(r.low)}–${fmt(r.high)}) over ${r.requests} requests.`;
  const reasons = [...new Set(w.not_estimable.filter(x => x !== null))];
  const box = el("div", { class: "whatif" }, [
    el("h3", {}, ["What-if: clicks per request at other explore_traffic, last hour "
      + `(${w.requests.explore} explored and ${w.requests.greedy} greedy requests)`]),
    canvas, readout, el("p", { class: "now" }, [now]),
    ...(reasons.length ? [el("p", { class: "unsupported" }, ["Not estimable where the curve is missing: " + reasons.join("; ")])] : []),
    el("p", { class: "note" }, [
      "This curve prices exploration's immediate cost only: the clicks each setting would have got on this hour's "
      + "slates, with the model as it was. It leaves out what exploring teaches the model, which is its long-term "
      + "value; an experiment with a control arm measures that."]),
  ]);
  return { box, canvas };
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.detail || res.statusText);
  return data;
}

// Impressions of items under a day old in the window: without any, "fresh items reaching 50
// impressions" is 0 because there is nothing fresh to count, not because counting failed.
const freshShown = z => ["lt_1h", "lt_1d"].some(k => (z.impressions_by_age[k] || []).some(v => v > 0));

function chartsFor(name, s, minutes) {
  const c = s.config, z = s.series;
  const ages = Object.entries(z.impressions_by_age).map(([k, v]) => ({ name: "age " + k, values: v }));
  return [
    ["Exploration rate: realised vs configured budget (share of slots)", [
      { name: "realised", values: z.exploration_rate }, { name: "budget", values: z.exploration_budget, color: "#94a3b8" }]],
    ["Impressions: explored vs exploited", [
      { name: "explored", values: z.impressions_explored }, { name: "exploited", values: z.impressions_exploited }]],
    ["CTR: explored vs exploited", [
      { name: "explored", values: z.ctr_explored }, { name: "exploited", values: z.ctr_exploited }]],
    ["Fresh-item discovery: impressions by item age", ages],
    ["Fresh items reaching 50 impressions (counted at the 50th, while under a day old; 0 until one gets there)"
      + (freshShown(z) ? "" : " — no item under a day old was shown this hour, so none can"),
      [{ name: "per minute", values: z.fresh_items_reached_50 }]],
    ["Learning freshness (event → Redis), ms", [
      { name: "p50", values: z.freshness_p50_ms }, { name: "p99", values: z.freshness_p99_ms },
      { name: "dead letters", values: z.dead_letters }]],
    ["Requests per second", [
      { name: "req/s", values: z.requests_per_s }, { name: "degraded", values: z.degraded }]],
    ["Latency (service time), ms", [
      { name: "p50", values: z.latency_p50_ms }, { name: "p99", values: z.latency_p99_ms }]],
  ];
}

function settingsForm(name, config) {
  const form = el("form", { class: "settings", "data-surface": name });
  const field = (label, input) => el("label", {}, [label, input]);
  const policy = el("select", { name: "policy" });
  for (const p of ["diag_linucb", "diag_ts", "epsilon_greedy", "greedy", "random"]) {
    const o = el("option", { value: p }, [p]); if (p === config.policy) o.selected = true; policy.append(o);
  }
  const num = (key, step) => el("input", { name: key, type: "number", step, value: String(config[key]) });
  const msg = el("span", { class: "msg" });
  form.append(field("policy", policy), field("alpha", num("alpha", "any")),
    field("explore_slots", num("explore_slots", "1")), field("explore_traffic", num("explore_traffic", "any")),
    el("button", { type: "submit" }, ["Save"]), msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const body = { policy: f.get("policy"), alpha: Number(f.get("alpha")),
      explore_slots: Number(f.get("explore_slots")), explore_traffic: Number(f.get("explore_traffic")) };
    try {
      await api("PUT", "/v1/admin/surfaces/" + encodeURIComponent(name), body);
      msg.className = "msg ok"; msg.textContent = "saved";
      refresh();
    } catch (e) {
      msg.className = "msg error"; msg.textContent = "refused: " + e.message;
    }
  });
  return form;
}

// Experiments (GET /v1/admin/stats → surfaces[name].experiment): each arm's clicks per request
// since the start with its 95% interval, fresh-item figures, and the lift over control.
const pct = v => v === null ? "–" : (100 * v).toFixed(1) + "%";
const signed = v => v === null ? "–" : (v >= 0 ? "+" : "") + (100 * v).toFixed(1) + "%";

function experimentBox(name, view) {
  const box = el("div", { class: "experiment", "data-surface": name });
  const x = view ? view.experiment : null;
  if (x) {
    const since = new Date(x.started_at * 1000).toLocaleString();
    const state = x.ended_at === null ? `running since ${since}, started by ${x.started_by}`
      : `${x.outcome} by ${x.ended_by} at ${new Date(x.ended_at * 1000).toLocaleString()} (started ${since})`;
    box.append(el("h3", {}, [`Experiment ${x.name} (${x.id}): ${state}`]));
    const head = ["arm", "share", "settings", "requests", "clicks per request (95% interval)",
      "fresh impressions / clicks", "lift vs control (95% interval)", ""];
    const rows = view.arms.map(a => {
      const settings = Object.entries(a.settings).map(([k, v]) => `${k} ${v}`).join(", ") || "the surface's";
      const cpr = a.clicks_per_request === null ? "–"
        : `${fmt(a.clicks_per_request)} (${fmt(a.low)}–${fmt(a.high)})`;
      const lift = a.control ? "control" : `${signed(a.lift)} (${signed(a.lift_low)} to ${signed(a.lift_high)})`;
      const cells = [a.name, pct(a.share), settings, String(a.requests_served), cpr,
        `${a.fresh_impressions} / ${a.fresh_clicks}`, lift];
      const tr = el("tr", { "data-arm": a.name }, cells.map(c => el("td", {}, [c])));
      const action = el("td", {});
      if (x.ended_at === null) {
        const promote = el("button", { type: "button", class: "promote", "data-arm": a.name }, ["Promote"]);
        promote.addEventListener("click", () => change(box, "POST", `/experiment/promote`, { arm: a.name }, name,
          `Promote ${a.name}: the surface takes its settings and the experiment ends?`));
        action.append(promote);
      }
      tr.append(action);
      return tr;
    });
    box.append(el("table", { class: "arms" }, [el("thead", {}, [el("tr", {}, head.map(h => el("th", {}, [h])))]),
      el("tbody", {}, rows)]));
    for (const a of view.arms.filter(a => !a.control)) {
      box.append(el("p", { class: "verdict" + (a.significant ? " significant" : "") }, [a.verdict || ""]));
    }
    const charts = el("div", { class: "charts" });
    box.append(charts);
    const series = view.arms.flatMap((a, k) => [
      { name: a.name, values: a.series.clicks_per_request, color: COLORS[k % COLORS.length] },
      { name: "", values: a.series.low, color: COLORS[k % COLORS.length] + "55" },
      { name: "", values: a.series.high, color: COLORS[k % COLORS.length] + "55" }]);
    const lifts = view.arms.filter(a => !a.control).flatMap((a, k) => [
      { name: a.name, values: a.series.lift, color: COLORS[(k + 1) % COLORS.length] },
      { name: "", values: a.series.lift_low, color: COLORS[(k + 1) % COLORS.length] + "55" },
      { name: "", values: a.series.lift_high, color: COLORS[(k + 1) % COLORS.length] + "55" }]);
    const fresh = view.arms.flatMap((a, k) => [
      { name: a.name + " imp.", values: a.series.fresh_impressions, color: COLORS[k % COLORS.length] },
      { name: a.name + " clk.", values: a.series.fresh_clicks, color: COLORS[k % COLORS.length] + "88" }]);
    box.pending = [["Clicks per request since the start, per arm (95% band)", series],
      ["Lift over control since the start (95% band)", lifts],
      ["Fresh-item (under a day old) impressions and clicks per minute, per arm", fresh]].map(([title, s]) => {
      const canvas = el("canvas", { "data-title": title });
      charts.append(el("div", { class: "chart" }, [el("h4", {}, [title]), canvas]));
      return [canvas, s];
    });
    box.append(el("p", { class: "note" }, [
      "Each arm serves its share of users (a stable hash of user_id) with its own settings and learns only from its "
      + "own traffic, in statistics of its own: the control shows what its settings would have done alone. Unlike "
      + "the what-if curve, this measures exploration's long-term value, learning included."]));
    if (x.ended_at === null) {
      const end = el("button", { type: "button", class: "end" }, ["End experiment"]);
      end.addEventListener("click", () => change(box, "POST", "/experiment/end", undefined, name,
        "End the experiment? Every user goes back to the surface's own settings."));
      box.append(end);
      box.append(el("span", { class: "msg" }));
      return box;
    }
  }
  box.append(experimentForm(name));
  return box;
}

async function change(box, method, suffix, body, name, question) {
  if (!window.confirm(question)) return;
  const msg = box.querySelector(".msg");
  try {
    await api(method, "/v1/admin/surfaces/" + encodeURIComponent(name) + suffix, body);
    document.activeElement.blur();  // a focused button would hold the page's redraw (render: editing)
    refresh();
  } catch (e) {
    if (msg) { msg.className = "msg error"; msg.textContent = "refused: " + e.message; }
  }
}

function experimentForm(name) {
  const form = el("form", { class: "settings new-experiment", "data-experiment-surface": name });
  const field = (label, input) => el("label", {}, [label, input]);
  const input = (key, value, type = "number") => el("input", { name: key, type, step: "any", value });
  const msg = el("span", { class: "msg" });
  form.append(el("h3", {}, ["Start an experiment"]), field("name", input("name", "alpha0", "text")));
  [["control", "0.2", "0"], ["explore", "0.8", ""]].forEach(([arm, share, alpha], n) => form.append(
    field(`arm ${n + 1}${n ? "" : " (control)"}`, input(`arm${n}`, arm, "text")), field("share", input(`share${n}`, share)),
    field("alpha (blank: surface's)", input(`alpha${n}`, alpha)),
    field("explore_traffic (blank: surface's)", input(`traffic${n}`, ""))));
  form.append(el("button", { type: "submit" }, ["Start"]), msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const arms = [0, 1].map(n => {
      const settings = {};
      if (f.get(`alpha${n}`) !== "") settings.alpha = Number(f.get(`alpha${n}`));
      if (f.get(`traffic${n}`) !== "") settings.explore_traffic = Number(f.get(`traffic${n}`));
      return { name: f.get(`arm${n}`), share: Number(f.get(`share${n}`)), settings };
    });
    try {
      await api("PUT", "/v1/admin/surfaces/" + encodeURIComponent(name) + "/experiment",
        { name: f.get("name"), control: arms[0].name, arms });
      msg.className = "msg ok"; msg.textContent = "started";
      document.activeElement.blur();
      refresh();
    } catch (e) {
      msg.className = "msg error"; msg.textContent = "refused: " + e.message;
    }
  });
  return form;
}

function changeText(ch) {
  if (ch.experiment) return `experiment ${ch.new.name} (${ch.new.id}): ${ch.experiment}`;
  return Object.keys(ch.new).filter(k => ch.old[k] !== ch.new[k]).map(k => `${k}: ${ch.old[k]} → ${ch.new[k]}`).join("; ");
}

function render(stats) {
  const root = document.getElementById("surfaces");
  const editing = root.contains(document.activeElement);
  const b = stats.bundle;
  document.getElementById("bundle").textContent = b
    ? `bundle ${b.version} · ${(b.age_s / 3600).toFixed(1)} h old` : "no bundle loaded";
  if (!editing) root.replaceChildren();
  const start = firstMinute(stats);
  for (const [name, s] of Object.entries(stats.surfaces)) {
    let box = document.getElementById("surface-" + name);
    if (!box) {
      box = el("section", { class: "surface", id: "surface-" + name });
      root.append(box);
    } else if (editing) { continue; }
    const c = s.config;
    const learnt = s.learnt ? el("p", { class: "learnt" }, [
      "Examination by position (estimated from randomised slates, 1 = top): ",
      el("span", { class: "curve" }, [s.learnt.examination.map(x => x.toFixed(2)).join(" · ")]),
      ` — ${s.learnt.examination_impressions.reduce((a, b) => a + b, 0)} randomised impressions;`
      + ` calibration from ${s.learnt.calibration_exposure} exposures.`
      + ` Trending now (far above their priors, joining every request): `
      + (s.learnt.trending.length ? s.learnt.trending.join(", ") : "none yet")
      + `. Fresh pool: ${s.learnt.fresh_pool} items, ${s.learnt.fresh_graduated} graduated here.`]) : el("p", {}, []);
    const form = settingsForm(name, c);
    const dial = s.whatif ? whatIfBox(s.whatif, form.querySelector('input[name="explore_traffic"]')) : null;
    const experiment = experimentBox(name, s.experiment);
    box.replaceChildren(
      el("h2", {}, [`${name} · ${c.policy} · α ${c.alpha} · explore_slots ${c.explore_slots} · explore_traffic ${c.explore_traffic}`]),
      el("div", { class: "dial" }, dial ? [form, dial.box] : [form]), experiment, learnt,
      el("div", { class: "charts" }));
    if (dial) drawWhatIf(dial.canvas, s.whatif);
    for (const [canvas, series] of experiment.pending || []) drawChart(canvas, stats.minutes, series, start);
    const grid = box.querySelector(":scope > .charts");
    for (const [title, series] of chartsFor(name, s, stats.minutes)) {
      const canvas = el("canvas", { "data-title": title });
      grid.append(el("div", { class: "chart" }, [el("h3", {}, [title]), canvas]));
      drawChart(canvas, stats.minutes, series, start);
    }
  }
  const lag = Object.entries(stats.consumer_lag || {});
  document.getElementById("lag").textContent = lag.length
    ? "lag by partition: " + lag.map(([p, n]) => `${p}: ${n}`).join(", ") : "no consumer lag reported";
  const tbody = document.querySelector("#changes tbody");
  tbody.replaceChildren(...(stats.changes || []).map(ch => {
    const diff = changeText(ch);
    return el("tr", {}, [el("td", {}, [new Date(ch.at * 1000).toLocaleTimeString()]), el("td", {}, [ch.who]),
      el("td", {}, [ch.surface]), el("td", {}, [diff || "no change"])]);
  }));
}

async function refresh() {
  const status = document.getElementById("status");
  if (!token) return;
  try {
    const stats = await api("GET", "/v1/admin/stats");
    render(stats);
    status.className = "muted";
    status.textContent = "updated " + new Date().toLocaleTimeString() + (stats.degraded.length ? " · " + stats.degraded.join(", ") : "");
    document.body.dataset.loaded = "true";
  } catch (e) {
    status.className = "error"; status.textContent = "could not load stats: " + e.message;
  }
}

document.getElementById("auth").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("om-token", token);
  refresh();
});
document.getElementById("token").value = token;
refresh();
setInterval(refresh, REFRESH_MS);
