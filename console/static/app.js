// The event bus console: a hash router over views that read the HTTP API
// (/v1) with the token kept in this tab's sessionStorage. No framework,
// no build step: DOM built with el(), never from HTML strings, so event
// data cannot inject markup.

const TOKEN_KEY = 'eventbus.token';
const PAGE = 50;
const view = document.getElementById('view');
const errorBox = document.getElementById('error');

// ---- DOM helpers -------------------------------------------------------

function el(tag, attrs, ...children) {
  const svg = ['svg', 'line', 'circle', 'polyline', 'text', 'g', 'title', 'rect', 'a'].includes(tag) && attrs && attrs.svg;
  const node = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'svg' || v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function show(...nodes) {
  view.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined));
}

function showError(msg) {
  errorBox.textContent = msg;
  errorBox.hidden = !msg;
}

// time shows t in the viewer's zone, with UTC on hover.
function time(iso) {
  if (!iso) return el('span', { class: 'muted' }, '—');
  const d = new Date(iso);
  if (isNaN(d)) return el('span', {}, iso);
  return el('time', { datetime: iso, title: d.toISOString().replace('T', ' ').replace('Z', ' UTC') },
    d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3 }));
}

function copyButton(label, text) {
  return el('button', {
    type: 'button', onclick: async (e) => {
      try { await navigator.clipboard.writeText(text); e.target.textContent = 'Copied'; } catch { e.target.textContent = 'Copy failed: select the text instead'; }
      setTimeout(() => { e.target.textContent = label; }, 1500);
    },
  }, label);
}

const enc = encodeURIComponent;

// ---- API ---------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem, fallback) {
    super((problem && (problem.detail || problem.title)) || fallback);
    this.status = status;
    this.problem = problem;
  }
}

const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY) || ''; },
  set token(t) { if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY); },
  read: false,
  admin: false,
  authOn: false,
};

function headers(extra) {
  const h = Object.assign({ Accept: 'application/json' }, extra || {});
  if (session.token) h.Authorization = 'Bearer ' + session.token;
  return h;
}

async function api(method, path, body, { quiet401 } = {}) {
  let res;
  try {
    res = await fetch(path, {
      method, headers: headers(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
      body: body !== undefined ? JSON.stringify(body) : undefined, cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, null, `The server cannot be reached (${e.message}). Is eventbus serve running?`);
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (res.status === 401 && !quiet401) {
    session.token = '';
    go('#/login', 'Your token was refused or is missing: enter a valid one.');
  }
  if (!res.ok) throw new ApiError(res.status, json, `${method} ${path}: HTTP ${res.status}`);
  return json;
}

// probe learns whether auth is on and what the token may do, without
// side effects: /v1/status needs read; a dead-letter list with a name the
// server refuses (400) needs admin first (403 without it).
async function probe() {
  const status = await fetch('/v1/status', { headers: headers(), cache: 'no-store' }).catch(() => null);
  if (!status) throw new ApiError(0, null, 'The server cannot be reached. Is eventbus serve running?');
  if (status.status === 401) return false;
  session.authOn = !!session.token;
  session.read = status.status !== 403;
  const admin = await fetch('/v1/dead-letters/%01', { headers: headers(), cache: 'no-store' }).catch(() => null);
  session.admin = !!admin && admin.status !== 403 && admin.status !== 401;
  if (!session.token && status.ok) session.authOn = false;
  return true;
}

// readStream reads GET /v1/events/stream with fetch (EventSource cannot
// send the token), calling onEvent for each event, until signal aborts.
async function readStream(query, onEvent, signal, onState) {
  let last = '';
  while (!signal.aborted) {
    try {
      const h = headers({ Accept: 'text/event-stream' });
      if (last) h['Last-Event-ID'] = last;
      const res = await fetch('/v1/events/stream' + (query ? '?' + query : ''), { headers: h, signal, cache: 'no-store' });
      if (res.status === 401) { session.token = ''; go('#/login', 'Your token was refused: enter a valid one.'); return; }
      if (!res.ok) throw new Error('HTTP ' + res.status);
      onState('live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      let msg = {};
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i).replace(/\r$/, '');
          buf = buf.slice(i + 1);
          if (line === '') {
            if (msg.data !== undefined) {
              if (msg.id) last = msg.id;
              try { onEvent(JSON.parse(msg.data)); } catch { /* a malformed message is skipped */ }
            }
            msg = {};
          } else if (!line.startsWith(':')) {
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
            msg[field] = val;
          }
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      onState('reconnecting: ' + e.message);
    }
    if (!signal.aborted) { onState('reconnecting'); await new Promise((r) => setTimeout(r, 1000)); }
  }
}

// ---- router ------------------------------------------------------------

let current = null; // the view's AbortController: streams and timers stop on leaving
let flash = '';

function go(hash, message) {
  if (message) flash = message;
  if (location.hash === hash) route(); else location.hash = hash;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/events';
  const [path, qs] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(qs || '') };
}

function hashOf(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v) q.set(k, v);
  const s = q.toString();
  return '#' + path + (s ? '?' + s : '');
}

async function route() {
  if (current) current.abort();
  current = new AbortController();
  const signal = current.signal;
  showError(flash);
  flash = '';
  const { parts, params } = parseHash();
  const name = parts[0] || 'events';
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (name === 'login') { loginView(); return; }
  try {
    if (!(await probe())) { go('#/login', 'This server requires a token: enter one to continue.'); return; }
  } catch (e) { showError(e.message); show(el('p', {}, 'The console needs the event bus server; start it with ', el('code', {}, 'eventbus serve'), '.')); return; }
  updateChrome();
  if (!session.read) { show(el('p', { class: 'bad' }, 'This token does not have the read scope, which every view needs. Use a token with read or admin.')); return; }
  try {
    switch (name) {
      case 'events': await (parts[1] ? eventView(parts[1]) : eventsView(params, signal)); break;
      case 'correlation': await correlationView(parts[1], signal); break;
      case 'streams': await streamView(parts.slice(1).join('/'), params); break;
      case 'relay': await relayView(signal); break;
      case 'dlq': await dlqView(parts[1] || params.get('group') || '', signal); break;
      case 'replay': await replayView(params, signal); break;
      default: show(el('p', {}, 'No such view. ', el('a', { href: '#/events' }, 'Go to the events.')));
    }
  } catch (e) {
    if (signal.aborted) return;
    showError(e.message);
  }
  view.focus({ preventScroll: true });
}

function updateChrome() {
  for (const a of document.querySelectorAll('#nav a[data-scope="admin"]')) a.hidden = !session.admin;
  const who = document.getElementById('who');
  who.textContent = session.authOn ? (session.admin ? 'token: admin' : 'token: read') : 'auth off';
  document.getElementById('logout').hidden = !session.authOn;
}

document.getElementById('logout').addEventListener('click', () => { session.token = ''; go('#/login', 'Token forgotten.'); });

// ---- views -------------------------------------------------------------

function loginView() {
  document.getElementById('who').textContent = '';
  document.getElementById('logout').hidden = true;
  const input = el('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', required: true, 'aria-describedby': 'token-help' });
  const form = el('form', {
    class: 'login', onsubmit: async (e) => {
      e.preventDefault();
      session.token = input.value.trim();
      showError('');
      if (!(await probe().catch((err) => { showError(err.message); return null; }))) {
        session.token = '';
        showError('The server refused this token. Check it and try again.');
        input.focus();
        return;
      }
      go('#/events');
    },
  },
  el('h1', {}, 'Sign in'),
  el('label', { for: 'token' }, 'API token', input),
  el('p', { id: 'token-help', class: 'muted' }, 'A token of EVENTBUS_API_TOKENS with the read scope (admin for dead letters, replay and parked retries). It stays in this tab only, and is forgotten when the tab closes.'),
  el('button', { type: 'submit', class: 'primary' }, 'Open the console'));
  show(form);
  input.focus();
}

const FILTERS = [
  ['type', 'Type', 'quiz.submitted'], ['subject', 'Stream (subject)', 'quiz-1'], ['correlation_id', 'Correlation ID', 'UUID'],
  ['since', 'Since', '1h or 2026-01-02T15:04:05Z'], ['until', 'Until', 'RFC 3339 time'],
];

function filterQuery(params) {
  const q = new URLSearchParams();
  for (const [k] of FILTERS) if (params.get(k)) q.set(k, params.get(k));
  return q;
}

function eventRow(e, fresh) {
  return el('tr', { class: fresh ? 'fresh' : undefined },
    el('td', {}, time(e.time)),
    el('td', {}, el('a', { href: '#/events/' + enc(e.id) }, e.type), e.erased ? [' ', erasedPill()] : null),
    el('td', {}, e.subject ? el('a', { href: '#/streams/' + enc(e.subject) }, e.subject) : el('span', { class: 'muted' }, '—'), e.streamversion ? ' v' + e.streamversion : ''),
    el('td', { class: 'hide-narrow mono' }, el('a', { href: '#/correlation/' + enc(e.correlationid) }, String(e.correlationid).slice(0, 8) + '…')),
    el('td', { class: 'hide-narrow mono' }, e.position));
}

function eventsTable(rows) {
  return el('div', { class: 'table-wrap' }, el('table', { id: 'events' },
    el('thead', {}, el('tr', {}, el('th', {}, 'Time'), el('th', {}, 'Type'), el('th', {}, 'Stream'), el('th', { class: 'hide-narrow' }, 'Correlation'), el('th', { class: 'hide-narrow' }, 'Position'))),
    el('tbody', {}, rows)));
}

// newestFirst reads the events matching q with positions below before
// (or all), newest first, PAGE at a time. The API reads in commit order,
// so it reads windows of positions back from the head, widening them
// until a page is full.
async function newestFirst(q, before) {
  const status = await api('GET', '/v1/status');
  let top = before ? Number(before) - 1 : status.head_position;
  const found = [];
  let width = 256;
  while (top >= 1 && found.length <= PAGE) {
    const from = Math.max(1, top - width + 1);
    let after = '';
    for (;;) {
      const p = new URLSearchParams(q);
      p.set('from_position', from); p.set('to_position', top); p.set('limit', 1000);
      if (after) p.set('after', after);
      const page = await api('GET', '/v1/events?' + p);
      found.push(...page.events);
      if (page.events.length < 1000) break;
      after = page.next;
    }
    top = from - 1;
    width *= 4;
  }
  found.sort((a, b) => Number(b.position) - Number(a.position));
  const events = found.slice(0, PAGE);
  const more = found.length > PAGE || top >= 1;
  return { events, more, next: events.length ? events[events.length - 1].position : null, head: status.head_position };
}

async function eventsView(params, signal) {
  const q = filterQuery(params);
  const form = el('form', {
    class: 'filters', role: 'search', onsubmit: (e) => {
      e.preventDefault();
      const p = {};
      for (const [k] of FILTERS) p[k] = form.elements[k].value.trim();
      if (params.get('live')) p.live = '1';
      go(hashOf('/events', p));
    },
  },
  FILTERS.map(([k, label, ph]) => el('label', {}, label, el('input', { name: k, value: params.get(k) || '', placeholder: ph }))),
  el('div', { class: 'row' }, el('button', { type: 'submit', class: 'primary' }, 'Filter'), el('a', { href: '#/events' }, 'Clear')));
  const live = params.get('live') === '1';
  const liveState = el('span', { class: 'pill' + (live ? ' live' : ''), id: 'live-state' }, live ? 'connecting…' : 'paused');
  const liveToggle = el('button', {
    type: 'button', id: 'live', 'aria-pressed': String(live),
    onclick: () => { const p = Object.fromEntries(params); if (live) delete p.live; else p.live = '1'; delete p.before; go(hashOf('/events', p)); },
  }, live ? 'Stop live' : 'Live');
  const tbody = [];
  const { events, more, next } = await newestFirst(q, params.get('before'));
  if (signal.aborted) return;
  for (const e of events) tbody.push(eventRow(e));
  const table = eventsTable(tbody);
  const pager = el('div', { class: 'row' },
    params.get('before') ? el('a', { href: hashOf('/events', Object.assign(Object.fromEntries(params), { before: '' })) }, 'Newest') : null,
    more ? el('a', { href: hashOf('/events', Object.assign(Object.fromEntries(params), { before: next, live: '' })), id: 'older' }, 'Older events →') : null);
  const empty = events.length ? null : el('div', { class: 'notice', id: 'empty' },
    q.toString() ? 'No event matches these filters. Clear them, or widen the time range.' :
      el('span', {}, 'No events yet: publish one with ', el('code', {}, `curl -X POST ${location.origin}/v1/events -H 'Content-Type: application/json' -d '{"type":"quiz.submitted","source":"me","subject":"quiz-1","data":{"quiz_id":"…","learner_id":"…","score_raw":90}}'`),
        ' or ', el('code', {}, 'eventbus publish'), ', or turn on Live and watch them arrive.'));
  show(el('h1', {}, 'Events ', el('span', { class: 'muted' }, '(newest first)')), form,
    el('div', { class: 'row' }, liveToggle, liveState), empty, table, pager);
  if (live) {
    const body = table.querySelector('tbody');
    readStream(q.toString(), (e) => {
      document.getElementById('empty')?.remove();
      body.prepend(eventRow(e, true));
      while (body.children.length > 500) body.lastChild.remove();
    }, signal, (s) => { liveState.textContent = s; });
  }
}

// erasedPill marks an event whose data subject was erased.
function erasedPill() {
  return el('span', { class: 'pill erased', title: 'A data subject of this event was erased: their personal fields are gone' }, 'erased');
}

// schemas is GET /v1/schemas, fetched once (again after a failure).
let schemas = null;

// personalFields returns the personal fields that the latest schema of type
// names (x-eventbus-personal), or null when the server declares none for
// it: an event of such a type named its own with "personal".
async function personalFields(type) {
  if (!schemas) schemas = api('GET', '/v1/schemas').catch(() => { schemas = null; return null; });
  const all = await schemas;
  const t = all && all.types.find((x) => x.type === type);
  const latest = t && t.versions.length ? t.versions[t.versions.length - 1].schema : null;
  return latest && Array.isArray(latest['x-eventbus-personal']) ? latest['x-eventbus-personal'] : null;
}

// dataView shows an event's data. In an erased event the personal fields
// (all null fields, when the type names none) show as erased, never as
// blank: the value was destroyed with the data subject's key. A null that
// is not personal (an upcast default) stays null.
function dataView(e, text, personal) {
  const d = e.data;
  if (!e.erased || d === null || typeof d !== 'object' || Array.isArray(d)) return el('pre', { id: 'data' }, text);
  const keys = Object.keys(d);
  const parts = ['{\n'];
  keys.forEach((k, i) => {
    parts.push('  ' + JSON.stringify(k) + ': ');
    if (d[k] === null && (!personal || personal.includes(k))) parts.push(el('span', { class: 'erased-value', title: 'erased with the data subject (null in the API)' }, '‹erased›'));
    else parts.push(JSON.stringify(d[k], null, 2).replace(/\n/g, '\n  '));
    parts.push(i < keys.length - 1 ? ',\n' : '\n');
  });
  parts.push('}');
  return el('pre', { id: 'data' }, parts);
}

function envelopeOf(e) {
  const { data, ...env } = e;
  return env;
}

// eventView shows one event: in the latest version of its type, as every
// reader gets it, or as stored when asked (GET /v1/events/{id}?stored=true).
async function eventView(id, stored = false) {
  const e = await api('GET', '/v1/events/' + enc(id) + (stored ? '?stored=true' : ''));
  const env = envelopeOf(e);
  const dataText = JSON.stringify(e.data, null, 2);
  const fields = [['id', e.id], ['type', e.type], ['version', e.dataschema], ['source', e.source], ['subject', e.subject], ['stream version', e.streamversion],
    ['time', e.time], ['recorded', e.recordedtime], ['position', e.position], ['correlation', e.correlationid], ['causation', e.causationid],
    ['traceparent', e.traceparent]];
  const toggle = el('button', { type: 'button', id: 'toggle-stored', onclick: () => eventView(id, !stored).catch((err) => showError(err.message)) },
    stored ? 'Show the latest version' : 'Show as stored');
  show(
    el('h1', {}, e.type, ' ', el('span', { class: 'muted mono' }, e.id), e.erased ? [' ', erasedPill()] : null),
    e.erased ? el('div', { class: 'notice', id: 'erased-notice' },
      'A data subject of this event was erased: their personal fields are marked ‹erased› below (null in the API). The rest of the event stays in the record.') : null,
    el('dl', { class: 'envelope' }, fields.filter(([, v]) => v !== undefined && v !== '').flatMap(([k, v]) => {
      let val = v;
      if (k === 'time' || k === 'recorded') val = time(v);
      else if (k === 'subject') val = el('a', { href: '#/streams/' + enc(v) }, v);
      else if (k === 'correlation') val = el('a', { href: '#/correlation/' + enc(v), id: 'follow-correlation' }, v);
      else if (k === 'causation') val = el('a', { href: '#/events/' + enc(v) }, v);
      return [el('dt', {}, k), el('dd', { class: 'mono' }, val)];
    })),
    el('h2', {}, stored ? 'Data, as stored' : 'Data'), el('div', { class: 'row' }, toggle, copyButton('Copy data', dataText), copyButton('Copy event JSON', JSON.stringify(e, null, 2)), copyButton('Copy link', location.href)),
    dataView(e, dataText, e.erased ? await personalFields(e.type) : null),
    el('h2', {}, 'Envelope'), el('pre', {}, JSON.stringify(env, null, 2)));
}

async function readAll(query, signal) {
  const out = [];
  let after = '';
  for (;;) {
    const p = new URLSearchParams(query);
    p.set('limit', 1000);
    if (after) p.set('after', after);
    const page = await api('GET', '/v1/events?' + p);
    if (signal.aborted) return out;
    out.push(...page.events);
    if (page.events.length < 1000 || out.length >= 5000) return out;
    after = page.next;
  }
}

async function correlationView(id, signal) {
  const events = await readAll('correlation_id=' + enc(id), signal);
  if (signal.aborted) return;
  if (!events.length) {
    show(el('h1', {}, 'Correlation ', el('span', { class: 'mono' }, id)), el('p', { class: 'notice' }, 'No event carries this correlation ID. Check the ID; events of a request share the correlation ID of its first event.'));
    return;
  }
  events.sort((a, b) => new Date(a.time) - new Date(b.time) || Number(a.position) - Number(b.position));
  show(el('h1', {}, 'Correlation ', el('span', { class: 'mono' }, id)),
    el('p', { class: 'muted' }, `${events.length} events from `, time(events[0].time), ' to ', time(events[events.length - 1].time), '.'),
    el('h2', {}, 'Timeline'), timeline(events),
    el('h2', {}, 'Causation'), causationTree(events));
}

function timeline(events) {
  const t0 = new Date(events[0].time).getTime();
  const t1 = new Date(events[events.length - 1].time).getTime();
  const span = Math.max(t1 - t0, 1);
  const rowH = 26;
  const h = events.length * rowH + 30;
  const W = 1000;
  const left = 170;
  const x = (e) => left + ((new Date(e.time).getTime() - t0) / span) * (W - left - 20);
  const nodes = [el('line', { svg: true, x1: left, y1: 10, x2: left, y2: h - 20, class: 'axis' })];
  events.forEach((e, i) => {
    const y = 20 + i * rowH;
    nodes.push(el('a', { svg: true, href: '#/events/' + enc(e.id), 'aria-label': `${e.type} at ${e.time}` },
      el('title', { svg: true }, `${e.type} ${new Date(e.time).toISOString()}`),
      el('line', { svg: true, x1: left, y1: y, x2: W - 20, y2: y }),
      el('text', { svg: true, x: 4, y: y + 4 }, e.type.length > 22 ? e.type.slice(0, 21) + '…' : e.type),
      el('circle', { svg: true, cx: x(e), cy: y, r: 6 })));
  });
  nodes.push(el('text', { svg: true, x: left, y: h - 4 }, new Date(t0).toLocaleTimeString()),
    el('text', { svg: true, x: W - 120, y: h - 4 }, `+${((t1 - t0) / 1000).toFixed(3)} s`));
  return el('svg', { svg: true, class: 'timeline', viewBox: `0 0 ${W} ${h}`, role: 'img', 'aria-label': 'Events of the correlation by time' }, nodes);
}

function causationTree(events) {
  const byId = new Map(events.map((e) => [e.id, e]));
  const children = new Map();
  const roots = [];
  for (const e of events) {
    if (e.causationid && byId.has(e.causationid) && e.causationid !== e.id) {
      if (!children.has(e.causationid)) children.set(e.causationid, []);
      children.get(e.causationid).push(e);
    } else roots.push(e);
  }
  const seen = new Set();
  const item = (e) => {
    seen.add(e.id);
    const kids = (children.get(e.id) || []).filter((k) => !seen.has(k.id));
    return el('li', {}, el('a', { href: '#/events/' + enc(e.id) }, e.type), ' ', time(e.time),
      e.subject ? el('span', { class: 'muted' }, ' · ' + e.subject) : null,
      kids.length ? el('ul', { class: 'tree' }, kids.map(item)) : null);
  };
  return el('ul', { class: 'tree root', id: 'causation' }, roots.map(item));
}

async function streamView(subject, params) {
  if (!subject) { show(el('p', {}, 'Name a stream: ', el('code', {}, '#/streams/{subject}'), '.')); return; }
  const from = Number(params.get('from') || 1);
  const res = await api('GET', `/v1/streams/${subject.split('/').map(enc).join('/')}?from=${from}&limit=${PAGE}`);
  const events = res.events || [];
  const rows = events.map((e) => el('tr', {}, el('td', {}, 'v' + e.streamversion), el('td', {}, time(e.time)),
    el('td', {}, el('a', { href: '#/events/' + enc(e.id) }, e.type)),
    el('td', { class: 'hide-narrow' }, el('a', { href: '#/correlation/' + enc(e.correlationid) }, 'timeline'))));
  show(el('h1', {}, 'Stream ', el('span', { class: 'mono' }, subject)),
    events.length ? el('div', { class: 'table-wrap' }, el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Version'), el('th', {}, 'Time'), el('th', {}, 'Type'), el('th', { class: 'hide-narrow' }, 'Correlation'))), el('tbody', {}, rows)))
      : el('p', { class: 'notice' }, from > 1 ? 'No events from this version on.' : 'This stream has no events. Streams are named by the subject of their events.'),
    el('div', { class: 'row' },
      from > 1 ? el('a', { href: hashOf('/streams/' + enc(subject), { from: Math.max(1, from - PAGE) }) }, '← Earlier') : null,
      events.length === PAGE ? el('a', { href: hashOf('/streams/' + enc(subject), { from: from + PAGE }) }, 'Later →') : null));
}

// The relay view samples /v1/status every 2 s and draws the last minutes.
const samples = [];

async function relayView(signal) {
  const cards = el('div', { class: 'cards' });
  const lagChart = el('div');
  const rateChart = el('div');
  const partitions = el('div', { class: 'table-wrap' });
  const parked = el('div');
  show(el('h1', {}, 'Relay'), cards, el('h2', {}, 'Lag (s), last minutes'), lagChart, el('h2', {}, 'Throughput (events/s), last minutes'), rateChart,
    el('h2', {}, 'Partitions'), partitions, el('h2', {}, 'Parked events'), parked);
  const refresh = async () => {
    const st = await api('GET', '/v1/status');
    const now = Date.now();
    const prev = samples[samples.length - 1];
    samples.push({ t: now, lag: st.lag, events: st.events, rate: prev && now > prev.t ? Math.max(0, (st.events - prev.events) / ((now - prev.t) / 1000)) : 0 });
    while (samples.length && samples[0].t < now - 10 * 60 * 1000) samples.shift();
    cards.replaceChildren(
      card('Health', st.healthy ? el('span', { class: 'ok' }, 'healthy') : el('span', { class: 'bad' }, 'unhealthy'), (st.problems || []).join('; ')),
      card('Lag', st.lag.toFixed(3) + ' s'), card('Backlog', st.backlog), card('Held back', st.held_back, st.held_back ? `oldest open transaction ${st.oldest_tx_age}s` : ''),
      card('Parked', st.parked), card('Events', st.events));
    lagChart.replaceChildren(chart(samples.map((s) => [s.t, s.lag]), 's'));
    rateChart.replaceChildren(chart(samples.map((s) => [s.t, s.rate]), '/s'));
    partitions.replaceChildren(el('table', {}, el('thead', {}, el('tr', {}, ['Partition', 'Leader', 'Checkpoint position', 'Backlog', 'Lag', 'Updated'].map((h) => el('th', {}, h)))),
      el('tbody', {}, (st.partitions || []).map((p) => el('tr', {}, el('td', {}, p.partition), el('td', {}, p.leader || el('span', { class: 'bad' }, 'none')),
        el('td', {}, p.checkpoint_position), el('td', {}, p.backlog ?? ''), el('td', {}, p.lag === undefined ? '' : p.lag.toFixed(3) + ' s'), el('td', {}, time(p.updated_at)))))));
    const list = await api('GET', '/v1/parked');
    const items = Array.isArray(list) ? list : [];
    parked.replaceChildren(items.length ? parkedTable(items, refresh) : el('p', { class: 'muted', id: 'no-parked' }, 'No parked events: the broker accepts everything the relay sends.'));
  };
  await refresh();
  const timer = setInterval(() => refresh().catch((e) => showError(e.message)), 2000);
  signal.addEventListener('abort', () => clearInterval(timer));
}

function card(label, value, note) {
  return el('div', { class: 'card' }, el('div', { class: 'muted' }, label), el('div', { class: 'n' }, value), note ? el('div', { class: 'muted' }, note) : null);
}

function chart(points, unit) {
  const W = 600, H = 140, pad = 28;
  if (points.length < 2) return el('p', { class: 'muted' }, 'Collecting samples (every 2 s while this view is open)…');
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const maxV = Math.max(...points.map((p) => p[1]), unit === 's' ? 0.01 : 1);
  const x = (t) => pad + ((t - t0) / Math.max(t1 - t0, 1)) * (W - pad - 6);
  const y = (v) => H - pad + 6 - (v / maxV) * (H - pad - 6);
  const last = points[points.length - 1][1];
  return el('figure', { class: 'chart' },
    el('svg', { svg: true, class: 'chart', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': `now ${last.toFixed(3)} ${unit}, at most ${maxV.toFixed(3)} ${unit} over the last ${Math.round((t1 - t0) / 1000)} s` },
      el('line', { svg: true, class: 'axis', x1: pad, y1: H - pad + 6, x2: W, y2: H - pad + 6 }),
      el('polyline', { svg: true, class: 'line', 'vector-effect': 'non-scaling-stroke', points: points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ') })),
    el('figcaption', { class: 'row muted' }, el('span', {}, `${Math.round((t1 - t0) / 1000)} s ago → now`), el('span', {}, `max ${maxV.toFixed(maxV < 10 ? 3 : 0)} ${unit}`), el('strong', {}, `now ${last.toFixed(last < 10 ? 3 : 0)} ${unit}`)));
}

function parkedTable(items, refresh) {
  const retry = async (body) => {
    try { await api('POST', '/v1/parked/retry', body); flashNotice('Retry requested: the relay publishes them again, in order.'); await refresh(); } catch (e) { showError(e.message); }
  };
  return el('div', {},
    session.admin ? el('button', { type: 'button', id: 'retry-all', onclick: () => retry({ all: true }) }, 'Retry all') : el('p', { class: 'muted' }, 'Retrying needs an admin token.'),
    el('div', { class: 'table-wrap' }, el('table', { id: 'parked' }, el('thead', {}, el('tr', {}, ['Event', 'Type', 'Stream', 'Reason', 'Attempts', 'Parked', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, items.map((p) => el('tr', {}, el('td', { class: 'mono' }, el('a', { href: '#/events/' + enc(p.event_id) }, p.event_id.slice(0, 8) + '…')),
        el('td', {}, p.type), el('td', {}, p.stream ? el('a', { href: '#/streams/' + enc(p.stream) }, p.stream) : '—'), el('td', {}, p.reason), el('td', {}, p.attempts),
        el('td', {}, time(p.parked_at), p.retry_requested ? el('span', { class: 'pill' }, ' retry requested') : null),
        el('td', {}, session.admin ? el('button', { type: 'button', class: 'retry', onclick: () => retry({ event_ids: [p.event_id] }) }, 'Retry') : null)))))));
}

function flashNotice(msg) {
  const n = el('p', { class: 'notice', role: 'status' }, msg);
  view.prepend(n);
  setTimeout(() => n.remove(), 5000);
}

async function dlqView(group, signal) {
  const input = el('input', { name: 'group', value: group, placeholder: 'billing', required: true });
  const form = el('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); go('#/dlq/' + enc(input.value.trim())); } },
    el('label', {}, 'Consumer group', input), el('div', {}, el('button', { type: 'submit', class: 'primary' }, 'Show dead letters')));
  if (!group) { show(el('h1', {}, 'Dead letters'), form, el('p', { class: 'muted' }, 'Name a consumer group (the group its consumers were started with) to see the messages they gave up on.')); input.focus(); return; }
  const res = await api('GET', '/v1/dead-letters/' + enc(group) + '?limit=100');
  if (signal.aborted) return;
  const letters = res.dead_letters || [];
  const requeue = async (ids) => {
    try {
      const r = await api('POST', '/v1/dead-letters/' + enc(group) + '/requeue', ids ? { ids } : undefined);
      flash = `Requeued ${r.requeued ?? ''} message(s) to ${group}'s queue.`;
      route();
    } catch (e) { showError(e.message); }
  };
  show(el('h1', {}, 'Dead letters of ', el('span', { class: 'mono' }, group)), form,
    letters.length ? el('div', {},
      el('button', { type: 'button', id: 'requeue-all', onclick: () => requeue(null) }, 'Requeue all'),
      letters.map((d) => {
        const id = (d.event && d.event.id) || d.message_id;
        return el('div', { class: 'card' },
          el('p', {}, el('strong', {}, d.type || (d.event && d.event.type) || 'message'), ` · ${d.attempts} attempt(s) · failed `, time(d.failed_at), d.queue ? ` in ${d.queue}` : ''),
          d.reason ? el('p', { class: 'bad' }, d.reason) : null,
          el('div', { class: 'row' }, el('button', { type: 'button', class: 'requeue', onclick: () => requeue([id]) }, 'Requeue'),
            d.event ? el('a', { href: '#/events/' + enc(d.event.id) }, 'stored event') : null),
          el('details', {}, el('summary', {}, 'Message'), el('pre', {}, JSON.stringify(d, null, 2))));
      }))
      : el('p', { class: 'notice', id: 'no-dead-letters' }, 'No dead letters in this group.'));
}

async function replayView(params) {
  const fields = [...FILTERS, ['queue', 'Queue (empty: the exchange)', 'billing.q'], ['rate', 'Rate (events/s)', '500']];
  const form = el('form', { class: 'filters' },
    fields.map(([k, label, ph]) => el('label', {}, label, el('input', { name: k, value: params.get(k) || '', placeholder: ph }))));
  const out = el('div', { id: 'replay-out', 'aria-live': 'polite' });
  const body = (dry) => {
    const b = { dry_run: dry };
    for (const [k] of fields) {
      const v = form.elements[k].value.trim();
      if (!v) continue;
      b[k] = k === 'rate' ? Number(v) : v;
    }
    return b;
  };
  const dry = el('button', {
    type: 'button', id: 'dry-run', onclick: async () => {
      showError('');
      try {
        const r = await api('POST', '/v1/replay', body(true));
        out.replaceChildren(el('p', {}, `A replay would send ${r.total} event(s).`), start);
        start.disabled = r.total === 0;
        start.dataset.total = r.total;
      } catch (e) { showError(e.message); }
    },
  }, 'Dry run: count');
  const start = el('button', {
    type: 'button', class: 'primary', id: 'start-replay', disabled: true, onclick: async () => {
      const total = Number(start.dataset.total || 0);
      const bar = el('progress', { max: total || 1 });
      const began = Date.now();
      const note = el('p', {}, `Replaying ${total} event(s)…`);
      start.disabled = true;
      out.replaceChildren(note, bar);
      const tick = setInterval(() => { note.textContent = `Replaying ${total} event(s)… ${Math.round((Date.now() - began) / 1000)} s`; }, 500);
      try {
        const r = await api('POST', '/v1/replay', body(false));
        bar.value = r.published;
        note.textContent = `Replay ${r.id} sent ${r.published} of ${r.total} event(s)${r.complete ? '' : `; resume with after=${r.resume}`}.`;
      } catch (e) {
        showError(e.message + (e.problem && e.problem.resume ? ` (resume with after=${e.problem.resume})` : ''));
      } finally { clearInterval(tick); }
    },
  }, 'Start replay');
  show(el('h1', {}, 'Replay'), el('p', { class: 'muted' }, 'Send stored events to the exchange (or one queue) again: count first, then start.'), form, el('div', { class: 'row' }, dry), out);
}

window.addEventListener('hashchange', route);
route();
