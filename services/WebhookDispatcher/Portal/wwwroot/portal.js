// The delivery portal: a page served by the dispatcher that talks only to the dispatcher's own
// API with a session token kept in memory (never in storage, a cookie or the URL). No framework,
// no build step, no inline script (the CSP forbids it); every value from the API is put into the
// page as text, never as HTML. docs/portal.md describes the flow.

// payloads: a delivery's payload once read (by delivery id), for the deliveries shown; payloadOpen: whose payload is unfolded.
const state = { token: null, session: null, view: null, events: [], expanded: new Set(), payloads: new Map(), payloadOpen: new Set(), timer: null };
const main = document.getElementById('main');

// ---- DOM helpers ---------------------------------------------------------------------------

/** Creates an element; attrs may hold on* handlers, children are nodes or text. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

function render(...nodes) {
  main.replaceChildren(...nodes.flat().filter(n => n !== null && n !== undefined && n !== false));
  const heading = main.querySelector('h1');
  if (heading) { heading.tabIndex = -1; heading.focus(); }
}

function toast(text) {
  const t = document.getElementById('toast');
  t.textContent = text;
  t.classList.add('shown');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('shown'), 6000);
}

function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function percent(rate) { return rate === null || rate === undefined ? '—' : `${(rate * 100).toFixed(1)} %`; }

function badge(text, kind) { return h('span', { class: `badge ${kind}` }, text); }

const canChange = () => state.session && !state.session.read_only;

// ---- API -----------------------------------------------------------------------------------

/** Calls the dispatcher's API with the session token; returns { ok, status, data }. */
async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${state.token}` }, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
  if (body !== undefined) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (res.status === 401) sessionEnded();
  return { ok: res.ok, status: res.status, data };
}

function problemText(r) {
  const d = r.data || {};
  const fields = d.errors ? Object.entries(d.errors).map(([k, v]) => `${k}: ${v.join(' ')}`).join(' · ') : '';
  return [d.title, d.detail, fields].filter(Boolean).join(' — ') || `HTTP ${r.status}`;
}

function sessionEnded() {
  clearTimeout(state.timer);
  state.token = null;
  document.getElementById('nav').replaceChildren();
  document.getElementById('session').replaceChildren();
  render(h('section', { class: 'card narrow' }, h('h1', {}, 'Your portal session has ended'),
    h('p', {}, 'For your security, portal links work once and sessions are short. Open the portal again from your app to get a new link.')));
}

/** Ends the session on the server (DELETE portal/session); resolves to whether it is over (ended now, or already). */
async function endSession(token, keepalive) {
  try {
    const res = await fetch('portal/session', { method: 'DELETE', headers: { Authorization: `Bearer ${token}` }, keepalive,
      cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' });
    return res.ok || res.status === 401;
  } catch { return false; }
}

async function signOut() {
  const token = state.token;
  clearTimeout(state.timer);
  state.token = null;
  state.payloads.clear();
  document.getElementById('nav').replaceChildren();
  document.getElementById('session').replaceChildren();
  const ended = token ? await endSession(token, false) : true;
  render(h('section', { class: 'card narrow', 'data-testid': 'signed-out' }, h('h1', {}, 'You have signed out'),
    h('p', {}, ended ? 'This portal session has ended: it cannot be used again, from this page or anywhere else.'
      : `The page has forgotten the session, but the server could not be told; it ends by itself at ${when(state.session?.expires_at)}.`),
    h('p', { class: 'muted' }, 'Open the portal again from your app to get a new link.')));
}

// ---- start: trade the link's token for a session ---------------------------------------------

async function start() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  // Take the token out of the address bar (and so out of history and bookmarks) before anything else.
  history.replaceState(null, '', location.pathname + location.search);
  if (!match) {
    render(h('section', { class: 'card narrow' }, h('h1', {}, 'No portal link'),
      h('p', {}, 'Open the portal through the link your app gives you. Links carry a one-time token and work once.')));
    return;
  }
  const res = await fetch('portal/session', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: decodeURIComponent(match[1]) }),
    cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    render(h('section', { class: 'card narrow', 'data-testid': 'link-refused' }, h('h1', {}, 'This link cannot be opened'),
      h('p', {}, data.detail || 'The link is not valid.'),
      h('p', { class: 'muted' }, 'Open the portal again from your app to get a new link.')));
    return;
  }
  state.token = data.session_token;
  state.session = data;
  const s = document.getElementById('session');
  s.replaceChildren(h('span', {},
    data.scope === 'operator' ? badge(`Operator: ${data.operator}`, 'warn') : h('span', { class: 'muted' }, `Signed in as ${data.user_id}`),
    data.read_only ? [' ', badge('Read-only', 'info')] : null),
    h('button', { type: 'button', class: 'signout', onclick: signOut }, 'Sign out'));
  // Closing or reloading the page loses the token (it lives in memory only); end the session on the server too.
  addEventListener('pagehide', () => { if (state.token) endSession(state.token, true); });
  if (data.scope === 'operator') {
    nav([['Find deliveries', operatorView], ['Find endpoints', operatorEndpointsView], ['Audit log', auditView]]);
    operatorView();
  }
  else {
    nav([['Endpoints', endpointsView], ['Event catalog', catalogView], ['Statistics', statsView]]);
    const types = await api('GET', 'api/webhooks/event-types');
    state.events = types.ok ? types.data.event_types : [];
    endpointsView();
  }
}

function nav(items) {
  const el = document.getElementById('nav');
  el.replaceChildren(...items.map(([label, view]) => h('button', {
    type: 'button', class: 'navlink', 'data-view': label, onclick: () => { document.getElementById('toast').classList.remove('shown'); view(); },
  }, label)));
}

function setView(label) {
  clearTimeout(state.timer);
  state.view = label;
  for (const b of document.querySelectorAll('#nav button')) {
    if (b.dataset.view === label) b.setAttribute('aria-current', 'page'); else b.removeAttribute('aria-current');
  }
}

// ---- endpoints -------------------------------------------------------------------------------

async function endpointsView() {
  setView('Endpoints');
  const r = await api('GET', 'api/webhooks?limit=100');
  if (!r.ok) return render(h('h1', {}, 'Endpoints'), h('p', { class: 'error' }, problemText(r)));
  const rows = r.data.data;
  const head = h('div', { class: 'titlebar' }, h('h1', {}, 'Endpoints'),
    canChange() ? h('button', { type: 'button', onclick: () => formView(null) }, 'Add endpoint') : null);
  if (rows.length === 0) {
    return render(head, h('section', { class: 'card empty' }, h('p', {}, 'No endpoints yet.'),
      h('p', { class: 'muted' }, canChange() ? 'Add an endpoint to receive events at a URL of yours.' : 'This session is read-only.')));
  }
  const table = h('table', { class: 'list' },
    h('caption', { class: 'sr-only' }, 'Your webhook endpoints'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Endpoint'), h('th', { scope: 'col' }, 'Status'),
      h('th', { scope: 'col' }, 'Success rate'), h('th', { scope: 'col' }, 'Events'), h('th', { scope: 'col' }, 'Created'))),
    h('tbody', {}, rows.map(s => h('tr', {},
      h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => endpointView(s.id) }, s.url),
        s.description ? h('div', { class: 'muted small' }, s.description) : null),
      h('td', {}, status(s)),
      h('td', {}, percent(s.statistics.success_rate), h('div', { class: 'muted small' }, `${s.statistics.total_deliveries} delivered or failed`)),
      h('td', {}, h('span', { title: s.event_types.join(', ') }, `${s.event_types.length} type${s.event_types.length === 1 ? '' : 's'}`)),
      h('td', {}, when(s.created_at))))));
  render(head, h('section', { class: 'card flush' }, table));
}

const disabledReasons = {
  endpoint_gone: 'Disabled: the endpoint answered 410 Gone',
  failing: 'Disabled: every delivery failed for days',
  owner: 'Disabled by you',
};

function status(s) {
  return s.is_active ? badge('Active', 'ok') : badge(disabledReasons[s.disabled_reason] || 'Disabled', 'bad');
}

async function endpointView(id, notice) {
  setView('Endpoints');
  state.expanded.clear();
  state.payloads.clear();
  state.payloadOpen.clear();
  const r = await api('GET', `api/webhooks/${id}`);
  if (!r.ok) return render(h('h1', {}, 'Endpoint'), h('p', { class: 'error', role: 'alert' }, problemText(r)));
  const s = r.data;
  const result = h('div', { id: 'action-result', 'aria-live': 'polite' }, notice || null);
  const actions = canChange() ? h('div', { class: 'actions', role: 'group', 'aria-label': 'Endpoint actions' },
    h('button', { type: 'button', onclick: () => sendTest(s, result) }, 'Send test event'),
    h('button', { type: 'button', class: 'secondary', onclick: () => formView(s) }, 'Edit'),
    h('button', { type: 'button', class: 'secondary', onclick: () => setActive(s, !s.is_active) }, s.is_active ? 'Disable' : 'Enable'),
    h('button', { type: 'button', class: 'secondary', onclick: () => rotate(s, result) }, 'Rotate secret'),
    h('button', { type: 'button', class: 'danger', onclick: () => remove(s) }, 'Delete')) : null;
  const facts = h('dl', { class: 'facts' },
    h('dt', {}, 'Status'), h('dd', {}, status(s), s.disabled_at ? h('span', { class: 'muted small' }, ` since ${when(s.disabled_at)}`) : null),
    h('dt', {}, 'Events'), h('dd', {}, s.event_types.join(', ')),
    h('dt', {}, 'Success rate'), h('dd', {}, percent(s.statistics.success_rate),
      h('span', { class: 'muted small' }, ` · ${s.statistics.successful_deliveries} succeeded, ${s.statistics.failed_deliveries} failed`)),
    h('dt', {}, 'Retries'), h('dd', {}, `${s.retry_count} after the first attempt · timeout ${s.timeout_seconds} s`),
    h('dt', {}, 'Rate limit'), h('dd', {}, s.rate_limit_per_second ? `${s.rate_limit_per_second} per second` : 'none'),
    s.description ? [h('dt', {}, 'Description'), h('dd', {}, s.description)] : null);
  render(
    h('p', {}, h('button', { type: 'button', class: 'link', onclick: () => endpointsView() }, '← All endpoints')),
    h('div', { class: 'titlebar' }, h('h1', { class: 'url' }, s.url)),
    h('section', { class: 'card' }, facts, actions, result),
    deliveryLog(s));
}

async function sendTest(s, out) {
  out.replaceChildren(h('p', { class: 'muted' }, 'Sending a webhook.test event…'));
  const r = await api('POST', `api/webhooks/${s.id}/test`);
  if (!r.ok) return out.replaceChildren(h('p', { class: 'error', role: 'alert' }, problemText(r)));
  const t = r.data;
  out.replaceChildren(h('div', { class: `result ${t.success ? 'ok' : 'bad'}`, 'data-testid': 'test-result' },
    h('strong', {}, t.success ? `Test delivered: HTTP ${t.status_code}` : 'Test failed'),
    ` in ${t.response_time_ms} ms`, t.error ? h('div', {}, t.error) : null));
}

async function setActive(s, active) {
  const r = await api('PATCH', `api/webhooks/${s.id}`, { is_active: active });
  if (!r.ok) return toast(problemText(r));
  toast(active ? 'Endpoint enabled' : 'Endpoint disabled');
  endpointView(s.id);
}

function secretPanel(title, secret, note) {
  const code = h('code', { class: 'secret', 'data-testid': 'secret' }, secret);
  const panel = h('div', { class: 'result secretbox', role: 'alert' },
    h('strong', {}, title), h('p', {}, 'Copy it now: it is shown this once and cannot be read again.'), code,
    note ? h('p', { class: 'muted small' }, note) : null,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'secondary', onclick: () => navigator.clipboard?.writeText(secret).then(() => toast('Secret copied')) }, 'Copy'),
      h('button', { type: 'button', onclick: () => { code.textContent = ''; panel.remove(); } }, 'I have saved it')));
  return panel;
}

async function rotate(s, out) {
  if (!await confirmDialog('Rotate the signing secret?',
    'A new secret signs from now on. The old one keeps signing beside it for the grace period, so receivers can switch without gaps.', 'Rotate')) return;
  const r = await api('POST', `api/webhooks/${s.id}/rotate-secret`);
  if (!r.ok) return out.replaceChildren(h('p', { class: 'error', role: 'alert' }, problemText(r)));
  out.replaceChildren(secretPanel('New signing secret', r.data.secret, `The previous secret keeps signing until ${when(r.data.previous_secret_expires_at)}.`));
}

async function remove(s) {
  if (!await confirmDialog('Delete this endpoint?', `${s.url} will stop receiving events and its waiting deliveries are cancelled. This cannot be undone.`, 'Delete')) return;
  const r = await api('DELETE', `api/webhooks/${s.id}`);
  if (!r.ok) return toast(problemText(r));
  toast('Endpoint deleted');
  endpointsView();
}

function confirmDialog(title, text, okLabel) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  const ok = document.getElementById('confirm-ok');
  const cancel = document.getElementById('confirm-cancel');
  ok.textContent = okLabel;
  return new Promise(resolve => {
    const done = value => { dialog.close(); ok.onclick = cancel.onclick = dialog.oncancel = null; resolve(value); };
    ok.onclick = () => done(true);
    cancel.onclick = () => done(false);
    dialog.oncancel = () => done(false);
    dialog.showModal();
  });
}

// ---- create / edit ---------------------------------------------------------------------------

function formView(s) {
  setView('Endpoints');
  const field = (id, label, input, hint) => h('div', { class: 'field' }, h('label', { for: id }, label), input,
    hint ? h('div', { class: 'muted small', id: `${id}-hint` }, hint) : null, h('div', { class: 'field-error', id: `${id}-error` }));
  const url = h('input', { id: 'f-url', name: 'url', type: 'url', required: true, value: s?.url ?? '', 'aria-describedby': 'f-url-hint f-url-error', placeholder: 'https://example.com/webhooks' });
  const description = h('input', { id: 'f-description', name: 'description', maxlength: 1024, value: s?.description ?? '', 'aria-describedby': 'f-description-error' });
  const retries = h('input', { id: 'f-retry', type: 'number', min: 0, max: 10, value: s?.retry_count ?? 3, 'aria-describedby': 'f-retry-hint f-retry-error' });
  const timeout = h('input', { id: 'f-timeout', type: 'number', min: 1, max: 60, value: s?.timeout_seconds ?? 10, 'aria-describedby': 'f-timeout-error' });
  const rate = h('input', { id: 'f-rate', type: 'number', min: 1, max: 10000, value: s?.rate_limit_per_second ?? '', 'aria-describedby': 'f-rate-hint f-rate-error' });
  const chosen = new Set(s?.event_types ?? []);
  const boxes = state.events.map(e => h('label', { class: 'check' },
    h('input', { type: 'checkbox', name: 'event_types', value: e.name, checked: chosen.has(e.name) }), ` ${e.name}`,
    h('span', { class: 'muted small' }, ` — ${e.description}`)));
  const errors = h('div', { role: 'alert', class: 'error' });
  const form = h('form', { class: 'card form', novalidate: true, 'aria-labelledby': 'form-title' },
    field('f-url', 'URL', url, 'Where the dispatcher POSTs signed events (https in production).'),
    h('fieldset', { 'aria-describedby': 'f-events-error' }, h('legend', {}, 'Event types'), h('div', { class: 'checks' }, boxes),
      h('div', { class: 'field-error', id: 'f-events-error' })),
    field('f-description', 'Description (optional)', description),
    h('div', { class: 'row' },
      field('f-retry', 'Retries', retries, '0–10 after the first attempt; waits 2, 4, 8 … s.'),
      field('f-timeout', 'Timeout (seconds)', timeout),
      field('f-rate', 'Rate limit per second (optional)', rate, 'Empty: no limit.')),
    errors,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, s ? 'Save changes' : 'Create endpoint'),
      h('button', { type: 'button', class: 'secondary', onclick: () => (s ? endpointView(s.id) : endpointsView()) }, 'Cancel')));
  form.addEventListener('submit', async e => {
    e.preventDefault();
    for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
    errors.textContent = '';
    const body = {
      url: url.value.trim(),
      event_types: [...form.querySelectorAll('input[name=event_types]:checked')].map(b => b.value),
      description: description.value === '' ? null : description.value,
      retry_count: Number(retries.value),
      timeout_seconds: Number(timeout.value),
      rate_limit_per_second: rate.value === '' ? null : Number(rate.value),
    };
    const r = s ? await api('PATCH', `api/webhooks/${s.id}`, body) : await api('POST', 'api/webhooks', body);
    if (!r.ok) {
      const map = { url: 'f-url', event_types: 'f-events', description: 'f-description', retry_count: 'f-retry', timeout_seconds: 'f-timeout', rate_limit_per_second: 'f-rate' };
      for (const [k, v] of Object.entries(r.data?.errors ?? {})) {
        const el = document.getElementById(`${map[k]}-error`);
        if (el) el.textContent = v.join(' ');
      }
      errors.textContent = problemText(r);
      return;
    }
    if (s) { toast('Changes saved'); return endpointView(s.id); }
    endpointView(r.data.id, secretPanel('Endpoint created. Its signing secret', r.data.secret,
      'Receivers verify the X-Webhook-Signature and webhook-signature headers with it (see the receiver guide).'));
  });
  render(h('p', {}, h('button', { type: 'button', class: 'link', onclick: () => (s ? endpointView(s.id) : endpointsView()) }, '← Back')),
    h('h1', { id: 'form-title' }, s ? 'Edit endpoint' : 'Add an endpoint'), form);
}

// ---- delivery log ----------------------------------------------------------------------------

const outcomes = {
  success: a => `Delivered: the endpoint answered HTTP ${a.status_code}.`,
  http_status: a => `The endpoint answered HTTP ${a.status_code}, which is not a success (only 2xx is).`,
  redirect: a => `The endpoint answered a redirect (HTTP ${a.status_code}); redirects are not followed.`,
  timeout: () => 'No complete answer arrived within the endpoint\'s timeout.',
  connection_refused: () => 'The connection was refused: nothing accepted connections at that address and port.',
  dns_failure: () => 'The host name could not be resolved.',
  tls_error: () => 'The secure (TLS) connection could not be set up: check the certificate.',
  connection_error: () => 'The connection failed or was cut before an answer arrived.',
  blocked_address: () => 'The URL leads to an address webhooks may not be sent to (loopback, private or link-local).',
  lost: () => 'The dispatcher stopped during this attempt, so it was made again.',
};

function cause(a) { return (outcomes[a.outcome] || (() => a.outcome))(a); }

function deliveryLog(s) {
  const section = h('section', { class: 'card flush', 'aria-labelledby': 'log-title' });
  const statusSel = h('select', { id: 'flt-status' }, h('option', { value: '' }, 'Any status'),
    ['pending', 'retrying', 'success', 'failed', 'cancelled'].map(v => h('option', { value: v }, v)));
  const typeSel = h('select', { id: 'flt-type' }, h('option', { value: '' }, 'Any event type'), s.event_types.map(v => h('option', { value: v }, v)));
  const since = h('input', { id: 'flt-since', type: 'datetime-local' });
  const body = h('div', {});
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter deliveries' },
    h('label', { for: 'flt-status' }, 'Status'), statusSel,
    h('label', { for: 'flt-type' }, 'Event type'), typeSel,
    h('label', { for: 'flt-since' }, 'Created after'), since,
    h('button', { type: 'submit', class: 'secondary' }, 'Apply'));
  const query = () => {
    const p = new URLSearchParams({ limit: '25', include_attempts: 'true' });
    if (statusSel.value) p.set('status', statusSel.value);
    if (typeSel.value) p.set('event_type', typeSel.value);
    if (since.value) p.set('since', new Date(since.value).toISOString());
    return p;
  };
  const view = `log:${s.id}`;
  const load = async (cursor, append) => {
    const p = query();
    if (cursor) p.set('cursor', cursor);
    const r = await api('GET', `api/webhooks/${s.id}/deliveries?${p}`);
    if (state.view !== view) return;
    if (!r.ok) return body.replaceChildren(h('p', { class: 'error', role: 'alert' }, problemText(r)));
    const rows = r.data.data;
    let table = body.querySelector('table');
    if (!append || !table) {
      table = h('table', { class: 'list deliveries' }, h('caption', { class: 'sr-only' }, 'Deliveries, newest first'),
        h('thead', {}, h('tr', {}, ['Status', 'Event', 'Created', 'Attempts', 'Last answer', ''].map(t => h('th', { scope: 'col' }, t)))),
        h('tbody', {}));
      body.replaceChildren(rows.length ? table
        : h('p', { class: 'empty' }, r.data.has_more ? 'None of the most recent deliveries match; look further back with the button below.' : 'No deliveries match.'));
    }
    const tbody = table.querySelector('tbody');
    for (const d of rows) tbody.append(...deliveryRows(d, s, () => load(null, false)));
    body.querySelector('.more')?.remove();
    if (r.data.has_more) {
      body.append(h('div', { class: 'more' }, h('button', { type: 'button', class: 'secondary', onclick: () => load(r.data.next_cursor, true) }, 'Load older deliveries')));
    }
    // While deliveries on the first page are still under way, look again shortly.
    clearTimeout(state.timer);
    if (!append && rows.some(d => d.status === 'pending' || d.status === 'retrying')) state.timer = setTimeout(() => { if (state.view === view) load(null, false); }, 2000);
  };
  filters.addEventListener('submit', e => { e.preventDefault(); load(null, false); });
  const recover = canChange() ? recoverForm(s, () => load(null, false)) : null;
  section.append(h('div', { class: 'titlebar pad' }, h('h2', { id: 'log-title' }, 'Delivery log'),
    h('button', { type: 'button', class: 'secondary', onclick: () => load(null, false) }, 'Refresh')), filters, body);
  if (recover) section.append(recover);
  state.view = view;
  load(null, false);
  return section;
}

function deliveryRows(d, s, reload) {
  const open = state.expanded.has(d.id);
  const detailsId = `d-${d.id}`;
  const last = d.attempts?.length ? d.attempts[d.attempts.length - 1] : null;
  const toggle = h('button', { type: 'button', class: 'link', 'aria-expanded': open ? 'true' : 'false', 'aria-controls': detailsId }, open ? 'Hide attempts' : 'Show attempts');
  const kind = { success: 'ok', failed: 'bad', cancelled: 'muted', retrying: 'warn', pending: 'info' }[d.status] || 'info';
  const row = h('tr', { 'data-delivery': d.id, 'data-event': d.event_id },
    h('td', {}, badge(d.status, kind)),
    h('td', {}, d.event_type, h('div', { class: 'muted small mono' }, d.event_id)),
    h('td', {}, when(d.created_at)),
    h('td', {}, `${d.attempt_count} of ${d.max_attempts}`),
    h('td', {}, last ? cause(last) : (d.next_retry_at ? `Next attempt ${when(d.next_retry_at)}` : '—')),
    h('td', { class: 'nowrap' }, toggle,
      canChange() && (d.status === 'failed' || d.status === 'cancelled')
        ? h('button', { type: 'button', class: 'small', onclick: async () => {
          const r = await api('POST', `api/webhooks/${s.id}/deliveries/${d.id}/retry`);
          toast(r.ok ? 'Retry accepted: a new round of attempts starts now' : problemText(r));
          reload();
        } }, 'Retry') : null));
  const payload = h('div', { class: 'payload-slot' });
  const details = h('tr', { id: detailsId, class: 'details', hidden: !open }, h('td', { colspan: 6 }, attemptsTable(d), payload));
  if (open) loadPayload(s, d, payload);
  toggle.addEventListener('click', () => {
    const shown = details.hidden;
    details.hidden = !shown;
    toggle.setAttribute('aria-expanded', String(shown));
    toggle.textContent = shown ? 'Hide attempts' : 'Show attempts';
    if (shown) { state.expanded.add(d.id); loadPayload(s, d, payload); } else state.expanded.delete(d.id);
  });
  return [row, details];
}

function attemptsTable(d) {
  if (!d.attempts?.length) return h('p', { class: 'muted' }, 'No attempt has been made yet.');
  return h('div', {},
    h('table', { class: 'attempts' }, h('caption', {}, `Attempts of delivery ${d.id}`),
      h('thead', {}, h('tr', {}, ['#', 'Time', 'Duration', 'Status', 'What happened', 'Response excerpt'].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, d.attempts.map(a => h('tr', { class: a.outcome === 'success' ? 'ok' : 'bad' },
        h('td', {}, a.attempt_number), h('td', {}, when(a.attempted_at)), h('td', {}, `${a.duration_ms} ms`),
        h('td', {}, a.status_code ?? '—'),
        h('td', {}, cause(a), a.error_message ? h('div', { class: 'muted small' }, a.error_message) : null),
        h('td', {}, a.response_excerpt ? h('pre', { class: 'excerpt' }, a.response_excerpt) : '—'))))),
    h('details', { class: 'headers' }, h('summary', {}, 'Request headers sent'),
      h('pre', {}, [
        'Content-Type: application/json; charset=utf-8',
        `X-Webhook-Event: ${d.event_type}`,
        `X-Webhook-Delivery: ${d.id}`,
        `webhook-id: ${d.event_id}`,
        // The signature's timestamp is the attempt's start, stored as its time.
        ...d.attempts.map(a => `webhook-timestamp: ${Math.floor(Date.parse(a.attempted_at) / 1000)}   (attempt ${a.attempt_number})`),
        'X-Webhook-Signature, webhook-signature: computed with your secret (never shown here)',
      ].join('\n'))));
}

/** Fills slot with the delivery's payload, read once from GET …/deliveries/{id} (the list leaves payloads out). */
async function loadPayload(s, d, slot) {
  let p = state.payloads.get(d.id);
  if (!p) {
    slot.replaceChildren(h('p', { class: 'muted small' }, 'Loading the payload…'));
    const r = await api('GET', `api/webhooks/${s.id}/deliveries/${d.id}`);
    if (!r.ok) return slot.replaceChildren(h('p', { class: 'error', role: 'alert' }, `The payload could not be read: ${problemText(r)}`));
    p = { payload: r.data.payload, unavailable: r.data.payload_unavailable };
    state.payloads.set(d.id, p);
  }
  slot.replaceChildren(payloadBlock(d.id, p.payload, p.unavailable));
}

/** The exact body sent on every attempt (shown indented), or why it is not shown. */
function payloadBlock(id, payload, unavailable) {
  if (payload === null || payload === undefined) {
    return h('p', { class: 'result bad payload-gone', 'data-testid': 'payload-gone' }, h('strong', {}, 'Payload not available. '), unavailable || '');
  }
  let shown = payload;
  try { shown = JSON.stringify(JSON.parse(payload), null, 2); } catch { /* shown as stored */ }
  const bytes = new TextEncoder().encode(payload).length;
  const details = h('details', { class: 'headers payload', open: state.payloadOpen.has(id) },
    h('summary', {}, `Payload sent (${bytes.toLocaleString('en')} bytes)`),
    h('p', { class: 'muted small' }, 'The same bytes on every attempt, signed; shown indented here.'),
    h('pre', { 'data-testid': 'payload', tabindex: '0', 'aria-label': `Payload of delivery ${id}` }, shown));
  details.addEventListener('toggle', () => { if (details.open) state.payloadOpen.add(id); else state.payloadOpen.delete(id); });
  return details;
}

function recoverForm(s, reload) {
  const input = h('input', { id: 'recover-since', type: 'datetime-local', required: true });
  const form = h('form', { class: 'filters recover', 'aria-label': 'Recover failed deliveries' },
    h('label', { for: 'recover-since' }, 'Retry every failed delivery created after'), input,
    h('button', { type: 'submit', class: 'secondary' }, 'Recover'));
  form.addEventListener('submit', async e => {
    e.preventDefault();
    if (!input.value) return toast('Choose a time first');
    const r = await api('POST', `api/webhooks/${s.id}/recover`, { since: new Date(input.value).toISOString() });
    toast(r.ok ? `${r.data.recovered} failed deliveries get a new round of attempts${r.data.has_more ? ' (more are left: recover again)' : ''}` : problemText(r));
    reload();
  });
  return form;
}

// ---- event catalog ---------------------------------------------------------------------------

async function catalogView() {
  setView('Event catalog');
  const r = await api('GET', 'api/webhooks/event-types');
  if (!r.ok) return render(h('h1', {}, 'Event catalog'), h('p', { class: 'error' }, problemText(r)));
  render(h('h1', {}, 'Event catalog'),
    h('p', { class: 'muted' }, 'Every event type an endpoint can subscribe to, with the JSON Schema of its payload and an example.'),
    h('div', { class: 'catalog' }, r.data.event_types.map(e => h('section', { class: 'card', 'aria-labelledby': `ev-${e.name}` },
      h('h2', { id: `ev-${e.name}`, class: 'mono' }, e.name), h('p', {}, e.description),
      h('details', {}, h('summary', {}, 'Example payload'), h('pre', {}, JSON.stringify(e.example, null, 2))),
      h('details', {}, h('summary', {}, 'JSON Schema'), h('pre', {}, JSON.stringify(e.schema, null, 2)))))));
}

// ---- statistics ------------------------------------------------------------------------------

async function statsView(window = '24h') {
  setView('Statistics');
  const [r, t] = await Promise.all([api('GET', `api/webhooks/stats?window=${encodeURIComponent(window)}`),
    api('GET', `api/webhooks/stats/timeline?window=${encodeURIComponent(window)}`)]);
  const select = h('select', { id: 'stats-window', onchange: e => statsView(e.target.value) },
    [['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days']].map(([v, l]) => h('option', { value: v, selected: v === window }, l)));
  const head = h('div', { class: 'titlebar' }, h('h1', {}, 'Statistics'), h('div', {}, h('label', { for: 'stats-window' }, 'Window '), select));
  if (!r.ok) return render(head, h('p', { class: 'error' }, problemText(r)));
  const s = r.data;
  const numbers = h('div', { class: 'tiles' },
    tile('Success rate', percent(s.success_rate)),
    tile('Average delivery time', s.average_delivery_time_ms === null ? '—' : `${Math.round(s.average_delivery_time_ms)} ms`),
    tile('Deliveries', s.deliveries.total),
    tile('Waiting now', s.waiting.pending + s.waiting.retrying, `${s.waiting.pending} pending · ${s.waiting.retrying} retrying`));
  const bars = [
    ['Succeeded', s.deliveries.succeeded, 'ok'], ['Failed', s.deliveries.failed, 'bad'], ['Cancelled', s.deliveries.cancelled, 'muted'],
    ['In progress', s.deliveries.in_progress, 'info'], ['Waiting: pending', s.waiting.pending, 'info'], ['Waiting: retrying', s.waiting.retrying, 'warn'],
  ];
  const failing = s.most_failing.length ? h('section', { class: 'card flush' }, h('h2', { class: 'pad' }, 'Most failing endpoints'),
    h('table', { class: 'list' }, h('thead', {}, h('tr', {}, ['Endpoint', 'Failed', 'Of', 'Last failure'].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, s.most_failing.map(f => h('tr', {},
        h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => endpointView(f.id) }, f.url)),
        h('td', {}, f.failed_deliveries), h('td', {}, f.total_deliveries), h('td', {}, when(f.last_failure_at))))))) : null;
  const timeline = t.ok ? h('section', { class: 'card' }, h('h2', {}, 'Over the window'), timelineCharts(t.data)) : null;
  render(head, numbers, timeline,
    h('section', { class: 'card' }, h('h2', { id: 'chart-title' }, `Deliveries created in the window (${s.window}), and waiting now`), chart(bars)), failing);
}

/** Two charts over the window's 24 slices: deliveries by outcome (stacked), and success rate with average delivery time. */
function timelineCharts(t) {
  const ns = 'http://www.w3.org/2000/svg';
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const b = t.buckets;
  const W = 720, H = 170, left = 46, bottom = 24, top = 8, bw = (W - left - 8) / b.length;
  const label = x => new Date(x).toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  const axis = (svg, max, unit) => {
    for (const f of [0, 0.5, 1]) {
      const y = top + (H - top - bottom) * (1 - f);
      svg.append(el('line', { x1: left, x2: W - 8, y1: y, y2: y, class: 'grid' }), el('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', class: 'tick' }, `${Math.round(max * f)}${unit}`));
    }
    for (const [i, anchor] of [[0, 'start'], [Math.floor(b.length / 2), 'middle'], [b.length - 1, 'end']]) {
      svg.append(el('text', { x: left + i * bw + (anchor === 'end' ? bw : 0), y: H - 6, class: 'tick', 'text-anchor': anchor }, label(b[i].start)));
    }
  };
  // Deliveries per slice, stacked: succeeded, failed, other.
  const counts = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'chart timeline',
    'aria-label': `Deliveries per ${Math.round(t.bucket_seconds / 60)} minutes: ${b.reduce((a, x) => a + x.succeeded, 0)} succeeded, ${b.reduce((a, x) => a + x.failed, 0)} failed` });
  const most = Math.max(...b.map(x => x.succeeded + x.failed + x.other));
  const maxCount = Math.max(2, Math.ceil(most / 2) * 2); // even, so the middle tick is a whole number
  axis(counts, maxCount, '');
  b.forEach((x, i) => {
    let y = H - bottom;
    for (const [v, kind] of [[x.succeeded, 'ok'], [x.failed, 'bad'], [x.other, 'muted']]) {
      if (!v) continue;
      const hgt = (H - top - bottom) * v / maxCount;
      y -= hgt;
      const r = el('rect', { x: left + i * bw + 1, y, width: Math.max(1, bw - 2), height: hgt, class: `bar ${kind}` });
      r.append(el('title', {}, `${label(x.start)}: ${x.succeeded} succeeded, ${x.failed} failed, ${x.other} other`));
      counts.append(r);
    }
  });
  // Success rate (line, 0–100 %) and average delivery time (bars, own scale).
  const rate = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'chart timeline',
    'aria-label': 'Success rate and average delivery time per slice; the table below has the numbers' });
  axis(rate, 100, ' %');
  const maxMs = Math.max(1, ...b.map(x => x.average_delivery_time_ms ?? 0));
  b.forEach((x, i) => {
    if (x.average_delivery_time_ms === null) return;
    const hgt = (H - top - bottom) * x.average_delivery_time_ms / maxMs;
    const r = el('rect', { x: left + i * bw + bw * 0.3, y: H - bottom - hgt, width: bw * 0.4, height: hgt, class: 'bar time' });
    r.append(el('title', {}, `${label(x.start)}: average ${Math.round(x.average_delivery_time_ms)} ms`));
    rate.append(r);
  });
  const points = b.map((x, i) => x.success_rate === null ? null : `${left + i * bw + bw / 2},${top + (H - top - bottom) * (1 - x.success_rate)}`).filter(Boolean);
  if (points.length) rate.append(el('polyline', { points: points.join(' '), class: 'rate' }));
  b.forEach((x, i) => { if (x.success_rate !== null) rate.append(el('circle', { cx: left + i * bw + bw / 2, cy: top + (H - top - bottom) * (1 - x.success_rate), r: 3, class: 'rate' })); });
  const legend = h('p', { class: 'legend small muted' }, h('span', { class: 'key ok' }), 'succeeded ', h('span', { class: 'key bad' }), 'failed ',
    h('span', { class: 'key muted' }, ), 'pending, retrying or cancelled · ', h('span', { class: 'key rate' }), 'success rate ',
    h('span', { class: 'key time' }), `average delivery time (up to ${Math.round(maxMs)} ms)`);
  const table = h('table', { class: 'sr-only' }, h('caption', {}, 'Deliveries per slice of the window'),
    h('thead', {}, h('tr', {}, ['Slice start', 'Succeeded', 'Failed', 'Other', 'Success rate', 'Average delivery time'].map(c => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, b.map(x => h('tr', {}, h('td', {}, label(x.start)), h('td', {}, x.succeeded), h('td', {}, x.failed), h('td', {}, x.other),
      h('td', {}, percent(x.success_rate)), h('td', {}, x.average_delivery_time_ms === null ? '—' : `${Math.round(x.average_delivery_time_ms)} ms`)))));
  return h('div', {}, counts, rate, legend, table);
}

function tile(label, value, note) {
  return h('div', { class: 'card tile' }, h('div', { class: 'muted small' }, label), h('div', { class: 'big' }, String(value)), note ? h('div', { class: 'muted small' }, note) : null);
}

/** A horizontal bar chart in SVG, described for screen readers by its label and a table of the same numbers. */
function chart(bars) {
  const ns = 'http://www.w3.org/2000/svg';
  const max = Math.max(1, ...bars.map(b => b[1]));
  const width = 640, row = 34, labelW = 150;
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${bars.length * row + 8}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', bars.map(([l, v]) => `${l}: ${v}`).join(', '));
  svg.setAttribute('class', 'chart');
  bars.forEach(([label, value, kind], i) => {
    const y = i * row + 4;
    const text = document.createElementNS(ns, 'text');
    text.setAttribute('x', '0'); text.setAttribute('y', String(y + 20)); text.textContent = label;
    const rect = document.createElementNS(ns, 'rect');
    const w = Math.max(2, (width - labelW - 60) * value / max);
    rect.setAttribute('x', String(labelW)); rect.setAttribute('y', String(y + 4)); rect.setAttribute('height', '22');
    rect.setAttribute('width', String(w)); rect.setAttribute('rx', '4'); rect.setAttribute('class', `bar ${kind}`);
    const num = document.createElementNS(ns, 'text');
    num.setAttribute('x', String(labelW + w + 8)); num.setAttribute('y', String(y + 20)); num.textContent = String(value);
    svg.append(text, rect, num);
  });
  return svg;
}

// ---- operator view ---------------------------------------------------------------------------

function operatorEndpointsView() {
  setView('Find endpoints');
  const kind = h('select', { id: 'ope-kind' }, [['user_id', 'User id'], ['host', 'URL host']].map(([v, l]) => h('option', { value: v }, l)));
  const value = h('input', { id: 'ope-value', required: true, size: 40 });
  const results = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'filters card', role: 'search', 'aria-label': 'Find endpoints' },
    h('label', { for: 'ope-kind' }, 'Find by'), kind, h('label', { for: 'ope-value', class: 'sr-only' }, 'Value'), value,
    h('button', { type: 'submit' }, 'Find'));
  form.addEventListener('submit', async e => {
    e.preventDefault();
    const r = await api('GET', `api/operator/webhooks?${new URLSearchParams({ [kind.value]: value.value.trim() })}`);
    if (!r.ok) return results.replaceChildren(h('p', { class: 'error', role: 'alert' }, problemText(r)));
    if (!r.data.data.length) return results.replaceChildren(h('p', { class: 'empty' }, 'No endpoint matches.'));
    results.replaceChildren(h('section', { class: 'card flush' }, h('table', { class: 'list' },
      h('caption', { class: 'sr-only' }, 'Matching endpoints'),
      h('thead', {}, h('tr', {}, ['Endpoint', 'User', 'Status', 'Success rate', ''].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, r.data.data.map(o => h('tr', { 'data-webhook': o.webhook.id },
        h('td', { class: 'url' }, o.webhook.url), h('td', {}, o.user_id), h('td', {}, status(o.webhook)),
        h('td', {}, percent(o.webhook.statistics.success_rate)),
        h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => operatorEndpoint(o) }, 'Open'))))))));
  });
  render(h('h1', {}, 'Find endpoints'),
    h('p', { class: 'muted' }, 'Every user\'s endpoints. Recoveries you start here are logged with your name.'), form, results);
}

async function operatorEndpoint(o) {
  setView('Find endpoints');
  const w = o.webhook;
  const since = h('input', { id: 'op-recover-since', type: 'datetime-local', required: true });
  const recover = h('form', { class: 'filters', 'aria-label': 'Recover failed deliveries' },
    h('label', { for: 'op-recover-since' }, 'Retry every failed delivery created after'), since, h('button', { type: 'submit' }, 'Recover'));
  recover.addEventListener('submit', async e => {
    e.preventDefault();
    if (!since.value) return toast('Choose a time first');
    const r = await api('POST', `api/operator/webhooks/${w.id}/recover`, { since: new Date(since.value).toISOString() });
    toast(r.ok ? `${r.data.recovered} failed deliveries get a new round of attempts${r.data.has_more ? ' (more are left: recover again)' : ''}` : problemText(r));
    list();
  });
  const deliveries = h('div', {});
  const list = async () => {
    const r = await api('GET', `api/operator/deliveries?${new URLSearchParams({ subscription_id: w.id, limit: '25' })}`);
    if (!r.ok) return deliveries.replaceChildren(h('p', { class: 'error', role: 'alert' }, problemText(r)));
    if (!r.data.data.length) return deliveries.replaceChildren(h('p', { class: 'empty' }, 'No deliveries yet.'));
    deliveries.replaceChildren(h('table', { class: 'list' }, h('caption', { class: 'sr-only' }, 'Latest deliveries'),
      h('thead', {}, h('tr', {}, ['Status', 'Event', 'Created', 'Attempts', ''].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, r.data.data.map(x => h('tr', { 'data-delivery': x.delivery.id, 'data-event': x.delivery.event_id },
        h('td', {}, badge(x.delivery.status, x.delivery.status === 'success' ? 'ok' : x.delivery.status === 'failed' ? 'bad' : 'info')),
        h('td', {}, x.delivery.event_type, h('div', { class: 'muted small mono' }, x.delivery.event_id)),
        h('td', {}, when(x.delivery.created_at)), h('td', {}, `${x.delivery.attempt_count} of ${x.delivery.max_attempts}`),
        h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => operatorDelivery(x.delivery.id) }, 'Open')))))));
    clearTimeout(state.timer);
    if (r.data.data.some(x => x.delivery.status === 'pending' || x.delivery.status === 'retrying')) state.timer = setTimeout(() => { if (state.view === 'Find endpoints') list(); }, 2000);
  };
  render(h('p', {}, h('button', { type: 'button', class: 'link', onclick: () => operatorEndpointsView() }, '← Search')),
    h('h1', { class: 'url' }, w.url),
    h('section', { class: 'card' }, h('dl', { class: 'facts' },
      h('dt', {}, 'User'), h('dd', {}, o.user_id), h('dt', {}, 'Status'), h('dd', {}, status(w)),
      h('dt', {}, 'Events'), h('dd', {}, w.event_types.join(', ')), h('dt', {}, 'Success rate'), h('dd', {}, percent(w.statistics.success_rate)))),
    h('section', { class: 'card flush' }, h('h2', { class: 'pad' }, 'Latest deliveries'), state.session.read_only ? null : recover, deliveries));
  list();
}

function operatorView() {
  setView('Find deliveries');
  const kind = h('select', { id: 'op-kind' }, [['event_id', 'Event id'], ['delivery_id', 'Delivery id'], ['user_id', 'User id'], ['host', 'URL host']]
    .map(([v, l]) => h('option', { value: v }, l)));
  const value = h('input', { id: 'op-value', required: true, size: 40 });
  const results = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'filters card', role: 'search', 'aria-label': 'Find deliveries' },
    h('label', { for: 'op-kind' }, 'Find by'), kind, h('label', { for: 'op-value', class: 'sr-only' }, 'Value'), value,
    h('button', { type: 'submit' }, 'Find'));
  const search = async () => {
    const r = await api('GET', `api/operator/deliveries?${new URLSearchParams({ [kind.value]: value.value.trim() })}`);
    if (!r.ok) return results.replaceChildren(h('p', { class: 'error', role: 'alert' }, problemText(r)));
    if (!r.data.data.length) return results.replaceChildren(h('p', { class: 'empty' }, 'No delivery matches.'));
    results.replaceChildren(h('section', { class: 'card flush' }, h('table', { class: 'list' },
      h('caption', { class: 'sr-only' }, 'Matching deliveries'),
      h('thead', {}, h('tr', {}, ['Status', 'Event', 'User', 'Endpoint', 'Created', ''].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, r.data.data.map(o => h('tr', { 'data-delivery': o.delivery.id },
        h('td', {}, badge(o.delivery.status, o.delivery.status === 'success' ? 'ok' : o.delivery.status === 'failed' ? 'bad' : 'info')),
        h('td', {}, o.delivery.event_type, h('div', { class: 'muted small mono' }, o.delivery.event_id)),
        h('td', {}, o.user_id), h('td', { class: 'url' }, o.url), h('td', {}, when(o.delivery.created_at)),
        h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => operatorDelivery(o.delivery.id) }, 'Open'))))))));
  };
  form.addEventListener('submit', e => { e.preventDefault(); search(); });
  render(h('h1', {}, 'Find deliveries'),
    h('p', { class: 'muted' }, 'Search every user\'s deliveries. Retries you make here are logged with your name.'), form, results);
}

async function operatorDelivery(id) {
  setView('Find deliveries');
  const r = await api('GET', `api/operator/deliveries/${id}`);
  if (!r.ok) return render(h('h1', {}, 'Delivery'), h('p', { class: 'error', role: 'alert' }, problemText(r)));
  const o = r.data, d = o.delivery;
  const actions = !state.session.read_only && (d.status === 'failed' || d.status === 'cancelled')
    ? h('div', { class: 'actions' }, h('button', { type: 'button', onclick: async () => {
      const x = await api('POST', `api/operator/deliveries/${d.id}/retry`);
      toast(x.ok ? 'Retry accepted: a new round of attempts starts now' : problemText(x));
      operatorDelivery(d.id);
    } }, 'Retry delivery')) : null;
  render(h('p', {}, h('button', { type: 'button', class: 'link', onclick: () => operatorView() }, '← Search')),
    h('h1', {}, `Delivery ${d.id}`),
    h('section', { class: 'card' }, h('dl', { class: 'facts' },
      h('dt', {}, 'Status'), h('dd', { 'data-testid': 'operator-status' }, badge(d.status, d.status === 'success' ? 'ok' : d.status === 'failed' ? 'bad' : 'info')),
      h('dt', {}, 'User'), h('dd', {}, o.user_id), h('dt', {}, 'Endpoint'), h('dd', { class: 'url' }, o.url),
      h('dt', {}, 'Event'), h('dd', {}, `${d.event_type} · ${d.event_id}`), h('dt', {}, 'Attempts'), h('dd', {}, `${d.attempt_count} of ${d.max_attempts}`)),
    actions),
    h('section', { class: 'card' }, attemptsTable(d), payloadBlock(d.id, d.payload, d.payload_unavailable)));
  if (d.status === 'pending' || d.status === 'retrying') state.timer = setTimeout(() => { if (state.view === 'Find deliveries') operatorDelivery(id); }, 2000);
}

const auditActions = { retry_delivery: 'Retried a delivery', recover_deliveries: 'Recovered failed deliveries' };

/** The operator audit trail: every retry and recovery asked for in the operator view, newest first. */
function auditView() {
  setView('Audit log');
  const who = h('input', { id: 'audit-operator', size: 24 });
  const whose = h('input', { id: 'audit-user', size: 24 });
  const results = h('div', { 'aria-live': 'polite' });
  const load = async () => {
    const p = new URLSearchParams({ limit: '100' });
    if (who.value.trim()) p.set('operator', who.value.trim());
    if (whose.value.trim()) p.set('user_id', whose.value.trim());
    const r = await api('GET', `api/operator/audit?${p}`);
    if (!r.ok) return results.replaceChildren(h('p', { class: 'error', role: 'alert' }, problemText(r)));
    if (!r.data.data.length) return results.replaceChildren(h('p', { class: 'empty' }, 'No change recorded.'));
    results.replaceChildren(h('section', { class: 'card flush' }, h('table', { class: 'list audit' },
      h('caption', { class: 'sr-only' }, 'Changes made in the operator view, newest first'),
      h('thead', {}, h('tr', {}, ['Time', 'Operator', 'Change', 'User', 'Endpoint and delivery', 'Answer'].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, r.data.data.map(e => h('tr', { 'data-audit': e.id },
        h('td', {}, when(e.created_at)), h('td', {}, e.operator),
        h('td', {}, auditActions[e.action] || e.action, e.since ? h('div', { class: 'muted small' }, `created after ${when(e.since)}`) : null),
        h('td', {}, e.user_id),
        h('td', { class: 'mono small' }, `webhook ${e.subscription_id}`, e.delivery_id ? h('div', {}, `delivery ${e.delivery_id}`) : null),
        h('td', {}, badge(String(e.status_code), e.status_code === 202 ? 'ok' : 'bad'), ' ', e.result))))),
      r.data.has_more ? h('p', { class: 'muted small pad' }, `The newest ${r.data.limit} shown; narrow by operator or user to see older ones.`) : null));
  };
  const form = h('form', { class: 'filters card', role: 'search', 'aria-label': 'Filter the audit log' },
    h('label', { for: 'audit-operator' }, 'Operator'), who, h('label', { for: 'audit-user' }, 'User id'), whose,
    h('button', { type: 'submit' }, 'Show'));
  form.addEventListener('submit', e => { e.preventDefault(); load(); });
  render(h('h1', {}, 'Audit log'),
    h('p', { class: 'muted' }, 'Every retry and recovery asked for in the operator view, with who asked and the answer given.'), form, results);
  load();
}

start().catch(err => render(h('section', { class: 'card narrow' }, h('h1', {}, 'Something went wrong'), h('p', {}, String(err)))));
