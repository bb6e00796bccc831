// The NGTT live view page: a snapshot of everything first, then batched updates (Server-Sent Events).
'use strict';

/** Machines drawn as charts; other actors (HTTP retries) show as one line. */
const CHARTED = ['supervisor', 'connection', 'upload', 'logs', 'order'];
const ORDER_OF = (a) => { const i = CHARTED.indexOf(a.machine); return i < 0 ? 99 : i; };

const state = { charts: new Map(), fleet: [], actors: new Map(), orders: new Map(), mine: new Set() };
const svgs = new Map(); // machine id → Promise<svg text>
let renderQueue = Promise.resolve();
const hasMermaid = typeof window.mermaid !== 'undefined';
if (hasMermaid) window.mermaid.initialize({ startOnLoad: false, securityLevel: 'strict', theme: 'neutral', stateDiagram: { useMaxWidth: true } });
else document.getElementById('notice').textContent = 'state charts need the package mermaid (npm install mermaid@11); active states are listed as text';

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, text) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const time = (ms) => new Date(ms).toISOString().slice(11, 23);
const after = (from, to) => (from && to ? `+${Math.max(0, to - from)} ms` : '');
const bytes = (n) => (n < 10240 ? `${n} B` : `${(n / 1024).toFixed(1)} KiB`);
/** The deepest active states: `session.authenticated.sending.active`, not its parents. */
const leaves = (paths) => paths.filter((p) => !paths.some((q) => q.startsWith(p + '.')));

// ---- the stream ------------------------------------------------------------------------------

function connect() {
  const link = $('#link');
  const source = new EventSource('/events');
  source.addEventListener('snapshot', (m) => {
    const s = JSON.parse(m.data);
    link.textContent = 'live';
    link.dataset.state = 'live';
    state.charts = new Map(s.charts.map((c) => [c.machine, c]));
    state.fleet = s.fleet;
    state.actors = new Map(s.actors.map((a) => [a.sessionId, a]));
    state.orders = new Map(s.orders.map((o) => [o.id, o]));
    state.adminUrl = s.adminUrl;
    $('#devices').replaceChildren();
    renderAll(Object.fromEntries([...state.actors.keys()].map((k) => [k, true])));
  });
  source.addEventListener('update', (m) => {
    const u = JSON.parse(m.data);
    if (u.charts) for (const c of u.charts) state.charts.set(c.machine, c);
    state.fleet = u.fleet;
    const changed = {};
    for (const a of u.actors) {
      state.actors.set(a.sessionId, a);
      changed[a.sessionId] = true;
    }
    for (const id of u.removed) {
      state.actors.delete(id);
      changed[id] = true;
    }
    for (const o of u.orders) state.orders.set(o.id, o);
    renderAll(changed, u.orders.length > 0);
  });
  source.onerror = () => {
    link.textContent = 'reconnecting…';
    link.dataset.state = 'reconnecting';
  };
}

function renderAll(changedActors, ordersChanged = true) {
  renderFleet();
  renderDevicePicker();
  if (ordersChanged) renderTimeline();
  renderMachines(changedActors);
}

// ---- fleet -----------------------------------------------------------------------------------

function renderFleet() {
  const rows = state.fleet.map((d) => {
    const tr = el('tr', { 'data-device': d.deviceId });
    const cells = {
      device: d.deviceId,
      connection: d.connection,
      transport: d.transport === 'ngtt' ? 'NGTT' : d.transport === 'https' ? 'HTTPS' : 'none',
      orders: `${d.orders.received}/${d.orders.executing}/${d.orders.acked}/${d.orders.rejected}`,
      values: `${d.values.pushed}/${d.values.confirmed}/${d.values.pending}`,
      bytes: `${bytes(d.bytesSent)} / ${bytes(d.bytesReceived)}`,
      faults: d.faults.count ? `${d.faults.count}${d.faults.active.length ? ` (failing: ${d.faults.active.join(', ')})` : ''}${d.faults.last ? ` — ${d.faults.last.message}` : ''}` : '0',
    };
    for (const [field, text] of Object.entries(cells)) tr.append(el('td', { 'data-field': field, class: field === 'connection' ? `conn-${d.connection}` : '' }, text));
    return tr;
  });
  $('#fleet tbody').replaceChildren(...rows);
}

function renderDevicePicker() {
  const select = $('#order-device');
  const ids = state.fleet.map((d) => d.deviceId);
  if ([...select.options].map((o) => o.value).join() === ids.join()) return;
  const chosen = select.value;
  select.replaceChildren(...ids.map((id) => el('option', { value: id }, `${id} (${state.fleet.find((d) => d.deviceId === id).connection === 'disabled' ? 'HTTPS' : 'NGTT'})`)));
  if (ids.includes(chosen)) select.value = chosen;
}

// ---- order timeline ----------------------------------------------------------------------------

function renderTimeline() {
  const list = [...state.orders.values()].sort((a, b) => (b.enqueuedAt ?? b.receivedAt ?? 0) - (a.enqueuedAt ?? a.receivedAt ?? 0)).slice(0, 40);
  const rows = list.map((o) => {
    const tr = el('tr', { 'data-order': o.id, 'data-stage': o.stage, 'data-actor': o.actor ?? '', class: state.mine.has(o.id) ? 'mine' : '' });
    const start = o.enqueuedAt;
    const delivered = after(start, o.receivedAt) && `${after(start, o.receivedAt)}${o.via === 'https' ? ' poll delay' : ''}`;
    const executed = o.doneAt ? `${after(start, o.doneAt)}${o.outcome === 'rejected' ? ` rejected${o.reason ? `: ${o.reason}` : ''}` : ''}` : o.executingAt ? 'running' : '';
    const confirmed = o.serverState === 'confirmed' || o.serverState === 'rejected' ? `${after(start, o.settledAt)} ${o.serverState}` : o.via === 'https' && o.serverState === 'delivered' ? 'n/a (HTTPS)' : '';
    for (const [field, text] of Object.entries({ device: o.deviceId, what: o.what, via: o.via ? o.via.toUpperCase() : '', stage: o.stage, enqueued: start ? time(start) : '', delivered, executed, confirmed })) {
      tr.append(el('td', { 'data-field': field }, text));
    }
    return tr;
  });
  $('#timeline tbody').replaceChildren(...rows);
}

// ---- machines --------------------------------------------------------------------------------

function deviceSection(deviceId) {
  let section = $(`section.device[data-device="${CSS.escape(deviceId)}"]`);
  if (!section) {
    section = el('section', { class: 'device', 'data-device': deviceId });
    section.append(el('h2', {}, `${deviceId} — machines`), el('div', { class: 'machines' }), el('div', { class: 'others' }));
    // Devices in fleet order.
    const ids = state.fleet.map((d) => d.deviceId);
    const next = [...document.querySelectorAll('section.device')].find((s) => ids.indexOf(s.dataset.device) > ids.indexOf(deviceId));
    $('#devices').insertBefore(section, next ?? null);
  }
  return section;
}

/** Ended orders fold to one line, except each device's newest, so its chart stays to look at. */
function markLatestOrders() {
  for (const section of document.querySelectorAll('section.device')) {
    const orders = [...section.querySelectorAll('.machine[data-machine="order"]')];
    const newest = orders.reduce((a, c) => (!a || (state.actors.get(c.dataset.session)?.startedAt ?? 0) > (state.actors.get(a.dataset.session)?.startedAt ?? 0) ? c : a), undefined);
    for (const card of orders) card.classList.toggle('latest', card === newest);
  }
}

function renderMachines(changed) {
  renderCards(changed);
  markLatestOrders();
  markMyOrders();
}

/** Each order actor says what its order is; those of orders sent from this page are outlined like their timeline rows. */
function markMyOrders() {
  for (const o of state.orders.values()) {
    if (!o.actor) continue;
    const card = $(`.machine[data-device="${CSS.escape(o.deviceId)}"][data-name="${CSS.escape(o.actor)}"]`);
    if (!card) continue;
    const what = $('.what', card);
    if (what.textContent !== o.what) what.textContent = o.what;
    card.dataset.order = o.id;
    if (state.mine.has(o.id)) card.classList.add('mine');
  }
}

function renderCards(changed) {
  for (const sessionId of Object.keys(changed)) {
    const actor = state.actors.get(sessionId);
    const card = $(`[data-session="${CSS.escape(sessionId)}"]`);
    if (!actor) {
      card?.remove();
      continue;
    }
    const charted = CHARTED.includes(actor.machine);
    const section = deviceSection(actor.deviceId);
    if (!card) {
      const fresh = charted ? newCard(actor) : el('div', { class: 'other', 'data-session': sessionId, 'data-device': actor.deviceId, 'data-name': actor.name, 'data-machine': actor.machine });
      const box = $(charted ? '.machines' : '.others', section);
      const later = [...box.children].find((c) => ORDER_OF(state.actors.get(c.dataset.session) || { machine: '' }) > ORDER_OF(actor));
      box.insertBefore(fresh, later ?? null);
      updateCard(fresh, actor);
    } else updateCard(card, actor);
  }
}

function newCard(actor) {
  const card = el('div', { class: 'machine', 'data-session': actor.sessionId, 'data-device': actor.deviceId, 'data-name': actor.name, 'data-machine': actor.machine });
  card.append(el('h3'), el('div', { class: 'what' }), el('div', { class: 'active-text' }), el('div', { class: 'chart' }), el('ol', { class: 'events' }));
  const chart = state.charts.get(actor.machine);
  if (chart && hasMermaid) {
    svgFor(chart).then((svg) => {
      $('.chart', card).innerHTML = svg;
      card.dataset.chart = 'drawn';
      highlight(card, state.actors.get(actor.sessionId) || actor);
    }, (e) => {
      $('.chart', card).textContent = `chart failed: ${e.message}`;
    });
  }
  return card;
}

/** One Mermaid render per machine definition, reused by every actor of that machine. */
function svgFor(chart) {
  if (!svgs.has(chart.machine)) {
    // mermaid.render is not re-entrant: one at a time.
    const p = renderQueue.then(() => window.mermaid.render(`chart-${chart.machine}`, chart.text)).then((r) => r.svg);
    renderQueue = p.catch(() => {});
    svgs.set(chart.machine, p);
  }
  return svgs.get(chart.machine);
}

function updateCard(card, actor) {
  const active = leaves(actor.active);
  card.dataset.active = active.join(' ');
  card.dataset.status = actor.status;
  if (card.classList.contains('other')) {
    card.textContent = `${actor.name} (${actor.machine}): ${active.join(', ') || actor.status}`;
    return;
  }
  $('h3', card).textContent = `${actor.name}${actor.name !== actor.machine ? ` (${actor.machine})` : ''}${actor.status !== 'active' ? ` — ${actor.status}` : ''}`;
  $('.active-text', card).textContent = active.map((p) => p.replaceAll('.', ' › ')).join('  |  ');
  $('.events', card).replaceChildren(...actor.events.slice().reverse().map((e) => el('li', {}, `${time(e.at)} ${e.type}${e.from ? ` ← ${e.from}` : ''}`)));
  if (card.dataset.chart === 'drawn') highlight(card, actor);
}

function highlight(card, actor) {
  const chart = state.charts.get(actor.machine);
  if (!chart) return;
  const active = new Set(actor.active);
  const leaf = new Set(leaves(actor.active));
  for (const [path, id] of Object.entries(chart.nodes)) {
    if (path === '') continue;
    for (const g of card.querySelectorAll(`g[id*="-state-${id}-"]`)) {
      g.classList.toggle('active-leaf', leaf.has(path));
      g.classList.toggle('active-parent', active.has(path) && !leaf.has(path));
    }
  }
}

// ---- sending an order ----------------------------------------------------------------------------

function sectionsFromForm() {
  const kind = $('#order-kind').value;
  const path = $('#order-path').value.trim();
  if (kind === 'json') return JSON.parse($('#order-json').value);
  let order;
  if (kind === 'write') {
    const raw = $('#order-value').value.trim();
    const value = raw !== '' && !Number.isNaN(Number(raw)) ? Number(raw) : raw;
    order = { type: 'write', path, value };
  } else if (kind === 'read') order = { type: 'read', path };
  else if (kind === 'sysctl') order = { type: 'sysctl', op_type: $('#order-op').value.trim(), op_args: {} };
  else order = { type: 'wait', time: Number($('#order-time').value) };
  return [{ orders: [order], disposition: 0 }];
}

function showKindFields() {
  const kind = $('#order-kind').value;
  for (const label of document.querySelectorAll('#order-form label[class]')) label.hidden = !label.classList.contains(`for-${kind}`);
}

$('#order-kind').addEventListener('change', showKindFields);
showKindFields();
$('#order-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const result = $('#order-result');
  let sections;
  try {
    sections = sectionsFromForm();
  } catch (e) {
    result.textContent = `not valid JSON: ${e.message}`;
    result.dataset.outcome = 'error';
    return;
  }
  const deviceId = $('#order-device').value;
  result.textContent = 'sending…';
  result.dataset.outcome = 'pending';
  try {
    const response = await fetch('/orders', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ deviceId, sections }) });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    state.mine.add(body.id);
    state.orders.set(body.id, body);
    renderTimeline();
    result.textContent = `order ${body.id} (${body.what}) enqueued for ${deviceId}: follow it in the timeline`;
    result.dataset.outcome = 'sent';
    result.dataset.order = body.id;
  } catch (e) {
    result.textContent = `not sent: ${e.message}`;
    result.dataset.outcome = 'error';
  }
});

connect();
