// dmpstore's web console: one page, no framework, no build step. It talks to the gateway only
// through the JSON API in API.md, with the rights of the key it signed in with. Pages are
// chosen by the URL's hash (#/cluster, #/buckets/NAME/lifecycle, #/users/NAME), so a reload
// stays where it was. Every element a test drives carries a stable data-testid.
'use strict';

// ---------- DOM ----------

const $ = (id) => document.getElementById(id);

/** An element: attrs may hold class, testid, on<event> handlers; children may be nested arrays. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'testid') el.setAttribute('data-testid', v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
}

function appendAll(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

// ---------- formatting: every formatter shows "-" for a missing number ----------

const DASH = '-';
const missing = (v) => v === null || v === undefined;

function fmtBytes(n) {
  if (missing(n)) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  if (i === 0) return `${n} B`;
  const digits = v < 10 ? 2 : v < 100 ? 1 : 0;
  return `${Number(v.toFixed(digits))} ${units[i]}`;
}

function fmtCount(n) {
  return missing(n) ? DASH : Number(n).toLocaleString('en-US');
}

function fmtDuration(ms) {
  if (missing(ms)) return DASH;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const both = (big, bigUnit, small, smallUnit) =>
    (small ? `${big} ${bigUnit} ${small} ${smallUnit}` : `${big} ${bigUnit}`);
  const m = Math.floor(s / 60);
  if (m < 60) return both(m, 'min', Math.floor(s % 60), 's');
  const hours = Math.floor(m / 60);
  if (hours < 24) return both(hours, 'h', m % 60, 'min');
  return both(Math.floor(hours / 24), 'd', hours % 24, 'h');
}

const fmtAgo = (ms) => (missing(ms) ? DASH : `${fmtDuration(ms)} ago`);
const fmtSeconds = (s) => (missing(s) ? DASH : fmtDuration(s * 1000));
const fmtDays = (d) => (missing(d) ? DASH : `${d} day${d === 1 ? '' : 's'}`);
const yesNo = (b) => (missing(b) ? DASH : b ? 'yes' : 'no');

function fmtTime(epochMs) {
  if (missing(epochMs)) return DASH;
  const d = new Date(epochMs);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** A probability near 1 as a percentage with enough decimals to show its first non-9 digit. */
function fmtProb(p) {
  if (missing(p)) return DASH;
  if (p >= 1) return '100%';
  const decimals = Math.min(10, Math.max(2, Math.ceil(-Math.log10(1 - p)) - 1));
  return `${(p * 100).toFixed(decimals)}%`;
}

function fmtRate(v) {
  if (missing(v)) return DASH;
  return v < 10 ? v.toFixed(2) : v < 1000 ? v.toFixed(1) : fmtCount(Math.round(v));
}

// ---------- the API ----------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * One API call. `body` is sent as JSON; `file` (a Blob) is sent raw. Changes carry
 * X-Dmpstore-Console. A 401 (other than a refused login) ends the session: back to the login form.
 */
async function api(method, path, { body, file } = {}) {
  const headers = {};
  let payload;
  if (method !== 'GET') headers['X-Dmpstore-Console'] = '1';
  if (file) {
    headers['Content-Type'] = file.type || 'application/octet-stream';
    payload = file;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  } catch (e) {
    throw new ApiError(0, 'NetworkError', `The gateway did not answer (${e.message}).`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const code = (data && data.error) || `HTTP ${res.status}`;
    const message = (data && data.message) || res.statusText || text.slice(0, 200);
    if (res.status === 401 && path !== '/api/login') showLogin();
    throw new ApiError(res.status, code, message);
  }
  return data || {};
}

const seg = encodeURIComponent;
const bucketPath = (b) => `/api/buckets/${seg(b)}`;
const objectPath = (b, key, versionId) =>
  `${bucketPath(b)}/objects/${seg(key)}` + (missing(versionId) ? '' : `?version_id=${seg(versionId)}`);

// ---------- banners ----------

let errorFromPoll = false;

function showError(err, { fromPoll = false } = {}) {
  $('error-code').textContent = err.code || 'Error';
  $('error-message').textContent = err.message || String(err);
  $('error-banner').hidden = false;
  errorFromPoll = fromPoll;
}

function clearError() {
  $('error-banner').hidden = true;
  errorFromPoll = false;
}

let noticeTimer = null;
function notice(text) {
  const el = $('notice-banner');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { el.hidden = true; }, 4000);
}

/** An event handler whose failures go to the error banner. */
const guard = (fn) => async (...args) => {
  try {
    clearError();
    await fn(...args);
  } catch (e) {
    showError(e);
  }
};

// ---------- session and routing ----------

let session = null; // {user, admin}
let renderSeq = 0; // bumped by every page render; a stale async fill checks it and stops
let pollTimer = null;
let pendingSecret = null; // a new key's secret, shown once on the users page

function showLogin() {
  session = null;
  renderSeq++;
  clearTimeout(pollTimer);
  $('nav').hidden = true;
  $('who').hidden = true;
  $('app-view').hidden = true;
  $('app-view').replaceChildren();
  $('login-view').hidden = false;
  $('login-form').elements.access_key.focus();
}

function showApp() {
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('nav').hidden = false;
  $('who').hidden = false;
  $('who-name').textContent = session.user;
  $('who-admin').hidden = !session.admin;
  document.querySelector('[data-route="users"]').hidden = !session.admin;
  render();
}

function parseRoute() {
  const [path, query = ''] = location.hash.replace(/^#\/?/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

function routeHref(parts, params = {}) {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString();
  return '#/' + parts.map(seg).join('/') + (q ? `?${q}` : '');
}

function render() {
  if (!session) return;
  renderSeq++;
  clearTimeout(pollTimer);
  clearError();
  const { parts, params } = parseRoute();
  const page = parts[0] || 'cluster';
  if (page === 'users' && !session.admin) {
    location.replace('#/cluster'); // hashchange renders the cluster page
    return;
  }
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.route === page);
  }
  if (page !== 'users') pendingSecret = null;
  const view = $('app-view');
  if (page === 'buckets' && parts[1]) renderBucket(view, parts[1], parts[2] || 'objects', params);
  else if (page === 'buckets') renderBuckets(view);
  else if (page === 'users') renderUsers(view, parts[1]);
  else renderCluster(view);
}

/** Runs `fill` unless another page was rendered meanwhile; errors go to the banner. */
async function load(fill) {
  const seq = renderSeq;
  try {
    await fill(() => seq === renderSeq);
  } catch (e) {
    if (seq === renderSeq) showError(e);
  }
}

// ---------- shared pieces ----------

function card(title, testid, ...body) {
  return h('section', { class: 'card', testid },
    title && h('div', { class: 'card-head' }, typeof title === 'string' ? h('h2', {}, title) : title),
    body);
}

/** A table: columns are [label, className?]; rows are <tr> elements; `empty` shows when none. */
function table(columns, rows, empty, testid) {
  const body = rows.length
    ? rows
    : [h('tr', { class: 'empty-row' }, h('td', { colspan: columns.length }, empty))];
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'table', testid },
      h('thead', {}, h('tr', {}, columns.map(([label, cls]) => h('th', { class: cls }, label)))),
      h('tbody', {}, body)));
}

const td = (content, attrs = {}) => h('td', attrs, content);
const num = (content, attrs = {}) => h('td', { ...attrs, class: 'num' }, content);

function button(label, testid, onclick, cls = 'btn') {
  return h('button', { type: 'button', class: cls, testid, onclick: guard(onclick) }, label);
}

function pageHead(title, ...right) {
  return h('div', { class: 'page-head' }, h('h1', {}, title), h('div', { class: 'page-actions' }, right));
}

// ---------- cluster page ----------

const CLUSTER_REFRESH_MS = 2000;

function renderCluster(view) {
  const updated = h('span', { class: 'muted small', testid: 'cluster-updated' }, 'loading…');
  const tiles = h('div', { class: 'tiles', testid: 'cluster-tiles' });
  const charts = h('div', { class: 'charts', testid: 'rate-charts' });
  const nodes = h('div', {});
  const nodesHead = h('span', {});
  const failures = h('div', {});
  const lifecycle = h('div', {});
  view.replaceChildren(h('div', { class: 'page', testid: 'cluster-page' },
    pageHead('Cluster', updated),
    tiles,
    card(h('div', { class: 'toolbar' }, h('h2', {}, 'Nodes'), nodesHead), 'nodes-card', nodes),
    charts,
    card('Failure history', 'failures-card', failures),
    card('Lifecycle', 'lifecycle-card', lifecycle)));

  const seq = renderSeq;
  const tick = async () => {
    const [c, r] = await Promise.allSettled([api('GET', '/api/cluster'), api('GET', '/api/rates')]);
    if (seq !== renderSeq) return;
    try {
      const failed = [c, r].find((x) => x.status === 'rejected');
      if (failed) showError(failed.reason, { fromPoll: true });
      else if (errorFromPoll) clearError();
      if (c.status === 'fulfilled') {
        const cl = c.value;
        tiles.replaceChildren(...clusterTiles(cl));
        nodes.replaceChildren(nodesTable(cl.nodes || []));
        nodesHead.replaceChildren(nodesSummary(cl.nodes || []));
        failures.replaceChildren(failuresTable(cl.failures || []));
        lifecycle.replaceChildren(lifecycleTable(cl.lifecycle || []));
        updated.textContent = `map v${cl.map_version} · updated ${fmtTime(Date.now()).slice(11)}`;
      }
      if (r.status === 'fulfilled') charts.replaceChildren(...rateCharts(r.value));
    } catch (e) {
      showError(new ApiError(0, 'ConsoleError', `Could not show the cluster's summary: ${e.message}`), { fromPoll: true });
    }
    if (session) pollTimer = setTimeout(tick, CLUSTER_REFRESH_MS);
  };
  tick();
}

function tile(label, value, sub, testid, tone) {
  return h('div', { class: `tile tone-${tone || 'none'}`, testid },
    h('div', { class: 'tile-label' }, label),
    h('div', { class: 'tile-value', testid: `${testid}-value` }, value),
    h('div', { class: 'tile-sub' }, sub));
}

function clusterTiles(c) {
  const deg = c.degraded || {};
  const reasons = Object.entries(deg.by_reason || {});
  const av = c.availability || {};
  const served = (w) => av[w] || {};
  const ft = c.fault_tolerance;
  const waiting = deg.nodes_without_census || [];
  return [
    tile('Degraded versions', fmtCount(deg.versions),
      [h('div', {}, `${fmtBytes(deg.bytes)} below full redundancy`),
        reasons.length
          ? h('ul', { class: 'reasons', testid: 'degraded-reasons' },
            reasons.map(([why, n]) => h('li', {}, h('span', {}, why), h('b', {}, fmtCount(n)))))
          : null],
      'tile-degraded', deg.versions ? 'warn' : 'ok'),
    tile('Fully redundant', missing(deg.fully_redundant) ? DASH : deg.fully_redundant ? 'Yes' : 'No',
      waiting.length ? `no census yet from ${waiting.map((n) => `n${n}`).join(', ')}`
        : `oldest census ${fmtAgo(deg.oldest_census_ms_ago)}`,
      'tile-redundant', deg.fully_redundant ? 'ok' : 'warn'),
    tile('Repair queue', fmtCount(c.repair_queued),
      `${fmtBytes(c.repair_rate_bytes_per_s)}/s · ETA ${fmtSeconds(c.repair_eta_s)}` +
      (c.repair_idle ? ' · idle' : ''),
      'tile-repair', c.repair_queued ? 'warn' : 'none'),
    tile('P_HA last hour', fmtProb(served('last_hour').availability),
      [h('div', {}, `last day ${fmtProb(served('last_day').availability)}`),
        h('div', {}, `${fmtCount(served('last_hour').requests)} requests, ` +
          `${fmtCount(served('last_hour').failed)} failed`)],
      'tile-pha'),
    tile('P_FT', fmtProb(ft && ft.p_ft),
      ft ? [h('div', {}, 'a year without data loss'),
        h('div', {}, `failure rate ${ft.annual_failure_rate}/yr · MTTR ${missing(ft.mttr_hours) ? DASH : ft.mttr_hours.toFixed(2)} h`)]
        : 'no node answered',
      'tile-pft'),
    tile('Repair delay', fmtDuration(c.repair_delay_ms),
      [h('div', {}, `last T_FD ${fmtDuration(c.last_t_fd_ms)}`),
        h('div', {}, `T_FR ${fmtDuration(c.last_t_fr_ms)} · T_RT ${fmtDuration(c.last_t_rt_ms)}`)],
      'tile-delay'),
  ];
}

function nodesSummary(nodes) {
  const count = (s) => nodes.filter((n) => n.state === s).length;
  return h('span', { class: 'muted small', testid: 'nodes-summary' },
    `${count('Up')} of ${nodes.length} Up` +
    ['Suspect', 'Down'].filter((s) => count(s)).map((s) => ` · ${count(s)} ${s}`).join(''));
}

function stateBadge(state, testid) {
  return h('span', { class: `badge state state-${state}`, testid }, state);
}

function diskCell(disk) {
  if (!disk) return DASH;
  const used = disk.total_bytes - disk.free_bytes;
  const share = disk.total_bytes ? used / disk.total_bytes : 0;
  const fill = h('span', { class: 'meter-fill' });
  fill.style.width = `${Math.min(100, Math.max(0, share * 100)).toFixed(1)}%`;
  if (disk.read_only || share > 0.9) fill.classList.add('meter-hot');
  return [
    h('div', {}, `${fmtBytes(used)} / ${fmtBytes(disk.total_bytes)}`,
      disk.read_only ? h('span', { class: 'badge badge-bad' }, 'read-only') : null),
    h('span', { class: 'meter' }, fill),
  ];
}

function nodesTable(nodes) {
  const rows = nodes.map((n) => {
    const id = `n${n.node_id}`;
    return h('tr', { testid: `node-row-${id}` },
      td(h('strong', {}, id), { testid: `node-id-${id}` }),
      td(h('code', {}, n.addr)),
      td(n.zone || DASH),
      td([stateBadge(n.state, `node-state-${id}`),
        n.draining ? h('span', { class: 'badge badge-warn' }, 'draining') : null]),
      td(yesNo(n.reachable), { testid: `node-reachable-${id}`, class: n.reachable ? '' : 'text-bad' }),
      num(fmtAgo(n.last_heartbeat_ms_ago), { testid: `node-heartbeat-${id}` }),
      td(diskCell(n.disk), { testid: `node-disk-${id}`, class: 'disk' }),
      num(fmtCount(n.chunks_estimate), { testid: `node-chunks-${id}` }),
      num(fmtCount(n.repair_queued), { testid: `node-repair-${id}` }));
  });
  return table([['Node'], ['Address'], ['Zone'], ['State'], ['Reachable'], ['Last heartbeat', 'num'],
    ['Disk used'], ['Chunks', 'num'], ['Repair queued', 'num']], rows, 'No nodes.', 'nodes-table');
}

function failuresTable(failures) {
  const rows = failures.map((f, i) => h('tr', { testid: `failure-row-${i}` },
    td(h('strong', {}, `n${f.node}`)),
    num(fmtAgo(f.down_ms_ago)),
    num(fmtDuration(f.t_fd_ms)),
    num(fmtDuration(f.t_fr_ms)),
    num(fmtDuration(f.t_rt_ms)),
    td(yesNo(f.rebuilt)),
    num(fmtDuration(f.back_after_ms))));
  return table([['Node'], ['Down', 'num'], ['T_FD', 'num'], ['T_FR', 'num'], ['T_RT', 'num'],
    ['Rebuilt'], ['Back after', 'num']], rows, 'No failures recorded.', 'failures-table');
}

function lifecycleTable(entries) {
  const rows = entries.map((l) => h('tr', { testid: `lifecycle-status-${l.bucket}` },
    td(h('a', { href: routeHref(['buckets', l.bucket, 'lifecycle']) }, l.bucket)),
    num(fmtCount(l.rules)),
    num(fmtCount(l.passes)),
    td(l.in_pass ? h('span', { class: 'badge badge-warn' }, 'running')
      : missing(l.last_pass_end_ms) ? 'never' : fmtAgo(Date.now() - l.last_pass_end_ms),
    { title: fmtTime(l.last_pass_end_ms) }),
    num(fmtCount(l.expired)),
    num(fmtCount(l.noncurrent_expired)),
    num(fmtCount(l.markers_removed)),
    num(fmtCount(l.uploads_aborted))));
  return table([['Bucket'], ['Rules', 'num'], ['Passes', 'num'], ['Last pass'], ['Expired', 'num'],
    ['Noncurrent', 'num'], ['Markers', 'num'], ['Aborted', 'num']],
  rows, 'No bucket has lifecycle rules.', 'lifecycle-status-table');
}

const CHARTS = [
  ['requests', 'Requests/s', fmtRate],
  ['errors', 'Errors/s', fmtRate],
  ['bytes_in', 'Bytes in/s', (v) => fmtBytes(Math.round(v))],
  ['bytes_out', 'Bytes out/s', (v) => fmtBytes(Math.round(v))],
];

function rateCharts(rates) {
  const samples = rates.samples || [];
  const perS = (rates.interval_ms || 10000) / 1000;
  const span = samples.length > 1 ? samples[samples.length - 1].t_ms - samples[0].t_ms : 0;
  return CHARTS.map(([field, title, fmt]) => {
    const values = samples.map((s) => (s[field] || 0) / perS);
    const last = values.length ? values[values.length - 1] : null;
    const peak = values.length ? Math.max(...values) : null;
    return h('div', { class: `chart chart-${field}`, testid: `chart-${field}` },
      h('div', { class: 'chart-head' },
        h('span', { class: 'chart-title' }, title),
        h('span', { class: 'chart-value', testid: `chart-${field}-value` }, missing(last) ? DASH : fmt(last))),
      sparkline(samples.map((s) => s.t_ms), values),
      h('div', { class: 'chart-foot' },
        h('span', {}, samples.length ? `last ${fmtDuration(span + perS * 1000)}` : 'no samples yet'),
        h('span', {}, missing(peak) ? '' : `peak ${fmt(peak)}`)));
  });
}

/** A hand-drawn SVG line over the samples, x by time, y from 0 to the peak. */
function sparkline(times, values) {
  const W = 300;
  const H = 64;
  const pad = 3;
  const chart = svg('svg', { class: 'spark', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none' });
  chart.append(svg('line', { x1: 0, x2: W, y1: H - pad, y2: H - pad, class: 'spark-base' }));
  if (!values.length) return chart;
  const t0 = times[0];
  const tSpan = times[times.length - 1] - t0 || 1;
  const peak = Math.max(...values) || 1;
  const pts = values.map((v, i) => {
    const x = values.length === 1 ? W : ((times[i] - t0) / tSpan) * W;
    const y = H - pad - (v / peak) * (H - 2 * pad);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  if (values.length === 1) pts.unshift(`0,${pts[0].split(',')[1]}`);
  const first = pts[0].split(',')[0];
  const lastX = pts[pts.length - 1].split(',')[0];
  chart.append(
    svg('polygon', { class: 'spark-area', points: `${first},${H - pad} ${pts.join(' ')} ${lastX},${H - pad}` }),
    svg('polyline', { class: 'spark-line', points: pts.join(' ') }));
  return chart;
}

// ---------- buckets page ----------

function renderBuckets(view) {
  const list = h('div', {}, h('p', { class: 'muted pad' }, 'loading…'));
  const name = h('input', { testid: 'bucket-name-input', placeholder: 'new-bucket-name', spellcheck: 'false', required: true });
  const form = h('form', {
    class: 'inline-form',
    onsubmit: guard(async (e) => {
      e.preventDefault();
      const bucket = name.value.trim();
      await api('POST', '/api/buckets', { body: { name: bucket } });
      notice(`Bucket ${bucket} created.`);
      name.value = '';
      await fill();
    }),
  }, name, h('button', { type: 'submit', class: 'btn btn-primary', testid: 'bucket-create' }, 'Create bucket'));
  view.replaceChildren(h('div', { class: 'page', testid: 'buckets-page' },
    pageHead('Buckets', form), card(null, 'buckets-card', list)));

  const fill = () => load(async (current) => {
    const { buckets = [] } = await api('GET', '/api/buckets');
    if (!current()) return;
    const rows = buckets.map((b) => h('tr', { testid: `bucket-row-${b.name}` },
      td(h('a', { href: routeHref(['buckets', b.name]), testid: `bucket-open-${b.name}`, class: 'strong-link' }, b.name)),
      td(h('span', { class: `badge badge-${b.versioning === 'Enabled' ? 'ok' : 'plain'}` }, b.versioning || DASH)),
      td(fmtTime(b.created_ms)),
      td(h('div', { class: 'row-actions' },
        h('a', { class: 'btn btn-sm', href: routeHref(['buckets', b.name, 'lifecycle']), testid: `bucket-lifecycle-${b.name}` }, 'Lifecycle'),
        button('Delete', `bucket-delete-${b.name}`, async () => {
          if (!confirm(`Delete bucket ${b.name}? It must be empty.`)) return;
          await api('DELETE', bucketPath(b.name));
          notice(`Bucket ${b.name} deleted.`);
          await fill();
        }, 'btn btn-sm btn-danger')), { class: 'actions' })));
    list.replaceChildren(table([['Name'], ['Versioning'], ['Created'], ['', 'actions']], rows,
      'No buckets yet: create one above.', 'buckets-table'));
  });
  fill();
}

function renderBucket(view, bucket, tab, params) {
  const prefix = params.get('prefix') || '';
  const tabs = [['objects', 'Objects'], ['versions', 'Versions'], ['lifecycle', 'Lifecycle']];
  const body = h('div', { class: 'stack' });
  view.replaceChildren(h('div', { class: 'page', testid: 'bucket-page' },
    h('div', { class: 'page-head' },
      h('h1', {}, h('a', { href: '#/buckets', class: 'muted-link' }, 'Buckets'), h('span', { class: 'sep' }, '/'),
        h('span', { testid: 'bucket-title' }, bucket))),
    h('nav', { class: 'tabs' }, tabs.map(([id, label]) => h('a', {
      href: id === 'objects' ? routeHref(['buckets', bucket], { prefix })
        : id === 'versions' ? routeHref(['buckets', bucket, id], { prefix }) : routeHref(['buckets', bucket, id]),
      class: tab === id ? 'active' : '',
      testid: `tab-${id}`,
    }, label))),
    body));
  if (tab === 'versions') renderVersions(body, bucket, prefix);
  else if (tab === 'lifecycle') renderLifecycle(body, bucket);
  else renderObjects(body, bucket, prefix, params.get('token') || '');
}

function breadcrumb(bucket, prefix) {
  const parts = prefix.split('/').filter(Boolean);
  const crumbs = [h('a', { href: routeHref(['buckets', bucket]), testid: 'crumb-root' }, bucket)];
  let acc = '';
  for (const p of parts) {
    acc += p + '/';
    crumbs.push(h('span', { class: 'sep' }, '/'),
      h('a', { href: routeHref(['buckets', bucket], { prefix: acc }), testid: `crumb-${acc}` }, p));
  }
  return h('div', { class: 'breadcrumb', testid: 'breadcrumb' }, crumbs);
}

function renderObjects(el, bucket, prefix, token) {
  const list = h('div', {}, h('p', { class: 'muted pad' }, 'loading…'));
  const status = h('span', { class: 'muted small', testid: 'upload-status' });
  const input = h('input', { type: 'file', class: 'visually-hidden', testid: 'upload-input', multiple: true });
  input.addEventListener('change', guard(async () => {
    const files = [...input.files];
    input.value = '';
    for (const f of files) {
      status.textContent = `uploading ${f.name} (${fmtBytes(f.size)})…`;
      try {
        await api('PUT', objectPath(bucket, prefix + f.name), { file: f });
      } finally {
        status.textContent = '';
      }
      notice(`Uploaded ${prefix + f.name} (${fmtBytes(f.size)}).`);
    }
    await fill();
  }));
  el.replaceChildren(card(h('div', { class: 'toolbar' }, breadcrumb(bucket, prefix),
    h('div', { class: 'toolbar-right' }, status,
      h('label', { class: 'btn btn-primary', testid: 'upload-button' }, 'Upload file', input))),
  'objects-card', list));

  const fill = () => load(async (current) => {
    const q = new URLSearchParams({ prefix });
    if (token) q.set('token', token);
    const page = await api('GET', `${bucketPath(bucket)}/objects?${q}`);
    if (!current()) return;
    const folders = (page.prefixes || []).map((p) => h('tr', { testid: `prefix-row-${p}`, class: 'folder' },
      td(h('a', { href: routeHref(['buckets', bucket], { prefix: p }), testid: `prefix-open-${p}` },
        h('span', { class: 'icon-folder', 'aria-hidden': 'true' }), p.slice(prefix.length))),
      num(DASH), td(DASH), td('')));
    const objects = (page.objects || []).map((o) => h('tr', { testid: `object-row-${o.key}`, 'data-size': o.size },
      td([h('span', { class: 'icon-file', 'aria-hidden': 'true' }), o.key.slice(prefix.length)], { class: 'key' }),
      num(fmtBytes(o.size), { testid: `object-size-${o.key}`, title: `${fmtCount(o.size)} bytes`, 'data-bytes': o.size }),
      td(fmtTime(o.last_modified_ms)),
      td(h('div', { class: 'row-actions' },
        h('a', { class: 'btn btn-sm', href: objectPath(bucket, o.key), download: o.key.split('/').pop(), testid: `object-download-${o.key}` }, 'Download'),
        button('Delete', `object-delete-${o.key}`, async () => {
          if (!confirm(`Delete ${o.key}?`)) return;
          await api('DELETE', objectPath(bucket, o.key));
          notice(`Deleted ${o.key}.`);
          await fill();
        }, 'btn btn-sm btn-danger')), { class: 'actions' })));
    const pager = h('div', { class: 'pager' },
      token ? h('a', { class: 'btn btn-sm', href: routeHref(['buckets', bucket], { prefix }), testid: 'objects-first' }, 'First page') : null,
      page.next ? h('a', { class: 'btn btn-sm', href: routeHref(['buckets', bucket], { prefix, token: page.next }), testid: 'objects-next' }, 'Next page') : null);
    list.replaceChildren(
      table([['Name'], ['Size', 'num'], ['Last modified'], ['', 'actions']], [...folders, ...objects],
        prefix ? 'Nothing under this prefix.' : 'This bucket is empty: upload a file.', 'objects-table'),
      ...(pager.childElementCount ? [pager] : []));
  });
  fill();
}

function renderVersions(el, bucket, prefix) {
  const list = h('div', {}, h('p', { class: 'muted pad' }, 'loading…'));
  const filter = h('input', { testid: 'versions-prefix', placeholder: 'prefix', value: prefix, spellcheck: 'false' });
  const form = h('form', {
    class: 'inline-form',
    onsubmit: (e) => { e.preventDefault(); location.hash = routeHref(['buckets', bucket, 'versions'], { prefix: filter.value }); },
  }, filter, h('button', { type: 'submit', class: 'btn', testid: 'versions-filter' }, 'Filter'));
  el.replaceChildren(card(h('div', { class: 'toolbar' }, h('h2', {}, 'Versions'), form), 'versions-card', list));

  const fill = () => load(async (current) => {
    const { versions = [] } = await api('GET', `${bucketPath(bucket)}/versions?${new URLSearchParams({ prefix })}`);
    if (!current()) return;
    const rows = versions.map((v) => h('tr', { testid: `version-row-${v.key}-${v.version_id}`, class: v.latest ? '' : 'dim' },
      td(v.key, { class: 'key' }),
      td(h('code', { class: 'small' }, v.version_id)),
      td([v.latest ? h('span', { class: 'badge badge-ok' }, 'latest') : null,
        v.delete_marker ? h('span', { class: 'badge badge-warn' }, 'delete marker') : null]),
      num(v.delete_marker ? DASH : fmtBytes(v.size)),
      td(fmtTime(v.last_modified_ms)),
      td(h('div', { class: 'row-actions' },
        v.delete_marker ? null : h('a', { class: 'btn btn-sm', href: objectPath(bucket, v.key, v.version_id), download: v.key.split('/').pop() }, 'Download'),
        button('Delete', `version-delete-${v.key}-${v.version_id}`, async () => {
          if (!confirm(`Delete version ${v.version_id} of ${v.key}? This cannot be undone.`)) return;
          await api('DELETE', objectPath(bucket, v.key, v.version_id));
          notice(`Deleted version ${v.version_id} of ${v.key}.`);
          await fill();
        }, 'btn btn-sm btn-danger')), { class: 'actions' })));
    list.replaceChildren(table([['Key'], ['Version'], [''], ['Size', 'num'], ['Last modified'], ['', 'actions']],
      rows, 'No versions.', 'versions-table'));
  });
  fill();
}

// ---------- lifecycle ----------

function describeFilter(f) {
  if (!f) return 'whole bucket';
  const parts = [];
  const add = (x) => {
    if (!missing(x.Prefix)) parts.push(x.Prefix ? `prefix ${x.Prefix}` : 'whole bucket');
    if (x.Tag) parts.push(`tag ${x.Tag.Key}=${x.Tag.Value}`);
    for (const t of x.Tags || []) parts.push(`tag ${t.Key}=${t.Value}`);
    if (!missing(x.ObjectSizeGreaterThan)) parts.push(`size > ${fmtBytes(x.ObjectSizeGreaterThan)}`);
    if (!missing(x.ObjectSizeLessThan)) parts.push(`size < ${fmtBytes(x.ObjectSizeLessThan)}`);
  };
  add(f);
  if (f.And) add(f.And);
  return parts.join(', ') || 'whole bucket';
}

function describeExpiration(e) {
  if (!e) return DASH;
  if (!missing(e.Days)) return `after ${fmtDays(e.Days)}`;
  if (e.Date) return `on ${e.Date.slice(0, 10)}`;
  if (e.ExpiredObjectDeleteMarker) return 'expired delete markers';
  return DASH;
}

function describeNoncurrent(n) {
  if (!n) return DASH;
  const keep = missing(n.NewerNoncurrentVersions) ? '' : `, keeping ${n.NewerNoncurrentVersions}`;
  return `after ${fmtDays(n.NoncurrentDays)}${keep}`;
}

/** A rule from the form, as the aws cli writes it; a field left empty adds no action. */
function ruleFromForm(form) {
  const v = (name) => form.elements[name].value.trim();
  const days = (name) => (v(name) === '' ? null : Number(v(name)));
  const rule = { ID: v('id'), Status: v('status'), Filter: { Prefix: v('prefix') } };
  if (!rule.ID) delete rule.ID; // the gateway names it, as S3 does
  if (!missing(days('expiration'))) rule.Expiration = { Days: days('expiration') };
  if (!missing(days('noncurrent'))) rule.NoncurrentVersionExpiration = { NoncurrentDays: days('noncurrent') };
  if (!missing(days('abort'))) rule.AbortIncompleteMultipartUpload = { DaysAfterInitiation: days('abort') };
  return rule;
}

function renderLifecycle(el, bucket) {
  const list = h('div', {}, h('p', { class: 'muted pad' }, 'loading…'));
  let rules = [];
  const field = (label, name, attrs = {}) => h('label', { class: 'field' }, label,
    h('input', { name, testid: `lifecycle-add-${name}`, spellcheck: 'false', ...attrs }));
  const dayField = (label, name) => field(`${label} (days)`, name, { type: 'number', min: '0', step: '1', placeholder: 'none' });
  const form = h('form', { class: 'rule-form', testid: 'lifecycle-add-form', novalidate: true },
    field('Rule ID', 'id', { placeholder: 'expire-logs' }),
    field('Prefix', 'prefix', { placeholder: 'logs/ (empty: whole bucket)' }),
    h('label', { class: 'field' }, 'Status',
      h('select', { name: 'status', testid: 'lifecycle-add-status' },
        h('option', { value: 'Enabled' }, 'Enabled'), h('option', { value: 'Disabled' }, 'Disabled'))),
    dayField('Expire objects after', 'expiration'),
    dayField('Expire noncurrent versions after', 'noncurrent'),
    dayField('Abort incomplete multipart uploads after', 'abort'),
    h('div', { class: 'form-actions' },
      h('span', { class: 'muted small' }, 'Saving replaces the bucket\'s configuration with its current rules plus this one; the gateway checks it as S3 would.'),
      h('button', { type: 'submit', class: 'btn btn-primary', testid: 'lifecycle-add-submit' }, 'Add rule')));

  /** Stores `next` as the bucket's whole configuration (none left: deletes it). */
  const save = async (next) => {
    if (next.length) await api('PUT', `${bucketPath(bucket)}/lifecycle`, { body: { Rules: next } });
    else await api('DELETE', `${bucketPath(bucket)}/lifecycle`);
  };
  form.addEventListener('submit', guard(async (e) => {
    e.preventDefault();
    const rule = ruleFromForm(form);
    await save([...rules, rule]);
    notice(`Rule ${rule.ID || '(no ID)'} saved.`);
    form.reset();
    await fill();
  }));

  el.replaceChildren(
    card('Lifecycle rules', 'lifecycle-rules-card', list),
    card('Add a rule', 'lifecycle-add-card', form));

  const fill = () => load(async (current) => {
    let config;
    try {
      config = await api('GET', `${bucketPath(bucket)}/lifecycle`);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404 && e.code !== 'NoSuchBucket')) throw e;
      config = { Rules: [] };
    }
    if (!current()) return;
    rules = config.Rules || [];
    const rows = rules.map((r, i) => {
      const id = r.ID || `#${i + 1}`;
      return h('tr', { testid: `lifecycle-rule-${id}` },
        td(h('strong', {}, id)),
        td(h('span', { class: `badge badge-${r.Status === 'Enabled' ? 'ok' : 'plain'}` }, r.Status || DASH)),
        td(describeFilter(r.Filter || (missing(r.Prefix) ? null : { Prefix: r.Prefix })), { testid: `lifecycle-rule-${id}-filter` }),
        td(describeExpiration(r.Expiration), { testid: `lifecycle-rule-${id}-expiration` }),
        td(describeNoncurrent(r.NoncurrentVersionExpiration), { testid: `lifecycle-rule-${id}-noncurrent` }),
        td(r.AbortIncompleteMultipartUpload ? `after ${fmtDays(r.AbortIncompleteMultipartUpload.DaysAfterInitiation)}` : DASH,
          { testid: `lifecycle-rule-${id}-abort` }),
        td(button('Delete', `lifecycle-delete-${id}`, async () => {
          if (!confirm(`Delete rule ${id}?`)) return;
          await save(rules.filter((x) => x !== r));
          notice(`Rule ${id} deleted.`);
          await fill();
        }, 'btn btn-sm btn-danger'), { class: 'actions' }));
    });
    list.replaceChildren(table([['ID'], ['Status'], ['Applies to'], ['Expire objects'], ['Expire noncurrent'],
      ['Abort multipart'], ['', 'actions']], rows, h('span', { testid: 'lifecycle-empty' }, 'No lifecycle configuration.'),
    'lifecycle-rules-table'));
  });
  fill();
}

// ---------- users page (administrators) ----------

function secretBox() {
  if (!pendingSecret) return null;
  const s = pendingSecret;
  const copy = (text) => () => navigator.clipboard && navigator.clipboard.writeText(text);
  return h('section', { class: 'secret-box', testid: 'secret-box' },
    h('div', { class: 'secret-head' },
      h('strong', {}, `New key for ${s.user}`),
      h('span', {}, 'Copy the secret now: it is shown only this once.')),
    h('dl', {},
      h('dt', {}, 'Access key'), h('dd', {}, h('code', { testid: 'secret-access-key' }, s.access_key),
        h('button', { type: 'button', class: 'btn btn-sm btn-ghost-dark', onclick: copy(s.access_key) }, 'Copy')),
      h('dt', {}, 'Secret key'), h('dd', {}, h('code', { testid: 'secret-secret-key' }, s.secret_key),
        h('button', { type: 'button', class: 'btn btn-sm btn-ghost-dark', onclick: copy(s.secret_key) }, 'Copy'))),
    h('button', {
      type: 'button', class: 'btn btn-sm', testid: 'secret-dismiss',
      onclick: (e) => { pendingSecret = null; e.target.closest('.secret-box').remove(); },
    }, 'I have saved it'));
}

function renderUsers(view, selected) {
  const list = h('div', {}, h('p', { class: 'muted pad' }, 'loading…'));
  const keys = h('div', {});
  const secret = h('div', {}, secretBox());
  const name = h('input', { testid: 'user-name-input', placeholder: 'user name', spellcheck: 'false', required: true });
  const form = h('form', {
    class: 'inline-form',
    onsubmit: guard(async (e) => {
      e.preventDefault();
      const res = await api('POST', '/api/users', { body: { name: name.value.trim() } });
      pendingSecret = res;
      secret.replaceChildren(secretBox());
      name.value = '';
      await fillUsers();
    }),
  }, name, h('button', { type: 'submit', class: 'btn btn-primary', testid: 'user-create' }, 'Create user'));
  view.replaceChildren(h('div', { class: 'page', testid: 'users-page' },
    pageHead('Users', form), secret, card(null, 'users-card', list), keys));

  const fillUsers = () => load(async (current) => {
    const { users = [] } = await api('GET', '/api/users');
    if (!current()) return;
    const rows = users.map((u) => h('tr', { testid: `user-row-${u.name}`, class: u.name === selected ? 'selected' : '' },
      td(h('a', { href: routeHref(['users', u.name]), class: 'strong-link', testid: `user-open-${u.name}` }, u.name)),
      td(fmtTime(u.created_ms)),
      num(fmtCount(u.keys), { testid: `user-keycount-${u.name}` }),
      td(h('div', { class: 'row-actions' },
        h('a', { class: 'btn btn-sm', href: routeHref(['users', u.name]), testid: `user-keys-${u.name}` }, 'Keys'),
        button('Delete', `user-delete-${u.name}`, async () => {
          if (!confirm(`Delete user ${u.name} and all its keys?`)) return;
          await api('DELETE', `/api/users/${seg(u.name)}`);
          notice(`User ${u.name} deleted.`);
          if (u.name === selected) location.hash = '#/users';
          else await fillUsers();
        }, 'btn btn-sm btn-danger')), { class: 'actions' })));
    list.replaceChildren(table([['Name'], ['Created'], ['Keys', 'num'], ['', 'actions']], rows,
      'No users yet. Administrators are the keys in the gateway\'s config.', 'users-table'));
  });
  fillUsers();
  if (selected) renderKeys(keys, selected, secret, fillUsers);
}

function renderKeys(el, user, secret, fillUsers) {
  const list = h('div', {}, h('p', { class: 'muted pad' }, 'loading…'));
  const readOnly = h('input', { type: 'checkbox', testid: 'key-read-only' });
  const prefixes = h('input', { testid: 'key-prefixes', placeholder: 'limit to: bucket/prefix, …', spellcheck: 'false' });
  const form = h('form', {
    class: 'inline-form',
    onsubmit: guard(async (e) => {
      e.preventDefault();
      const body = {
        read_only: readOnly.checked,
        prefixes: prefixes.value.split(',').map((p) => p.trim()).filter(Boolean),
      };
      pendingSecret = await api('POST', `/api/users/${seg(user)}/keys`, { body });
      secret.replaceChildren(secretBox());
      form.reset();
      await Promise.all([fill(), fillUsers()]);
    }),
  }, h('label', { class: 'check' }, readOnly, 'read-only'), prefixes,
  h('button', { type: 'submit', class: 'btn btn-primary', testid: 'key-create' }, 'Create key'));
  el.replaceChildren(card(h('div', { class: 'toolbar' }, h('h2', { testid: 'keys-title' }, `Keys of ${user}`), form),
    'keys-card', list));

  const keyPath = (ak) => `/api/users/${seg(user)}/keys/${seg(ak)}`;
  const fill = () => load(async (current) => {
    const { keys = [] } = await api('GET', `/api/users/${seg(user)}/keys`);
    if (!current()) return;
    const rows = keys.map((k) => {
      const ak = k.access_key;
      const toggle = k.disabled
        ? button('Enable', `key-enable-${ak}`, async () => { await api('POST', `${keyPath(ak)}/enable`); await fill(); }, 'btn btn-sm')
        : button('Disable', `key-disable-${ak}`, async () => { await api('POST', `${keyPath(ak)}/disable`); await fill(); }, 'btn btn-sm');
      return h('tr', { testid: `key-row-${ak}`, class: k.disabled ? 'dim' : '' },
        td(h('code', {}, ak)),
        td(fmtTime(k.created_ms)),
        td(h('span', { class: `badge badge-${k.disabled ? 'bad' : 'ok'}`, testid: `key-state-${ak}` }, k.disabled ? 'Disabled' : 'Active')),
        td(k.read_only ? 'read-only' : 'read-write', { testid: `key-access-${ak}` }),
        td((k.prefixes || []).length ? k.prefixes.map((p) => h('code', { class: 'tag' }, p)) : h('span', { class: 'muted' }, 'all buckets')),
        td(missing(k.expires_ms) ? 'never' : fmtTime(k.expires_ms)),
        td(h('div', { class: 'row-actions' }, toggle,
          button('Delete', `key-delete-${ak}`, async () => {
            if (!confirm(`Delete key ${ak}?`)) return;
            await api('DELETE', keyPath(ak));
            notice(`Key ${ak} deleted.`);
            await Promise.all([fill(), fillUsers()]);
          }, 'btn btn-sm btn-danger')), { class: 'actions' }));
    });
    list.replaceChildren(table([['Access key'], ['Created'], ['State'], ['Access'], ['Limited to'], ['Expires'],
      ['', 'actions']], rows, 'This user has no keys.', 'keys-table'));
  });
  fill();
}

// ---------- start ----------

function start() {
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const form = e.target;
    try {
      clearError();
      session = await api('POST', '/api/login', {
        body: { access_key: form.elements.access_key.value.trim(), secret_key: form.elements.secret_key.value },
      });
      form.reset();
      if (!location.hash) location.replace('#/cluster');
      showApp();
    } catch (err) {
      showError(err);
    }
  });
  $('logout').addEventListener('click', guard(async () => {
    try {
      await api('POST', '/api/logout');
    } finally {
      showLogin();
    }
  }));
  $('error-dismiss').addEventListener('click', clearError);
  window.addEventListener('hashchange', render);

  api('GET', '/api/me').then((me) => {
    session = me;
    showApp();
  }).catch((e) => {
    if (!(e instanceof ApiError && e.status === 401)) showError(e);
    showLogin();
  });
}

start();
