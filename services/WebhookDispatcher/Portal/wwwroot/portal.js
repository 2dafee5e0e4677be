// The delivery portal: a page served by the dispatcher that talks only to the dispatcher's own
// API with a session token kept in memory (never in storage, a cookie or the URL). No framework,
// no build step, no inline script (the CSP forbids it); every value from the API is put into the
// page as text, never as HTML. docs/portal.md describes the flow. This module opens the session and
// holds the user's endpoint pages; core.js, deliveries.js, statistics.js and operator.js the rest.

import { api, badge, canChange, h, percent, problemText, render, setView, state, status, toast, when } from './core.js';
import { deliveryLog } from './deliveries.js';
import { auditView, operatorEndpointsView, operatorView } from './operator.js';
import { statsView } from './statistics.js';

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
    nav([['Endpoints', endpointsView], ['Event catalog', catalogView], ['Statistics', () => statsView(endpointView)]]);
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
    h('dt', {}, 'Filter'), h('dd', {}, s.filter ? h('code', { 'data-testid': 'filter' }, JSON.stringify(s.filter)) : 'none: every event of its types'),
    h('dt', {}, 'Template'), h('dd', {}, s.template ? h('code', { 'data-testid': 'template' }, s.template.builtin ?? 'custom Liquid') : 'none: the JSON payload'),
    s.description ? [h('dt', {}, 'Description'), h('dd', {}, s.description)] : null,
    ...optionFacts(s));
  render(
    h('p', {}, h('button', { type: 'button', class: 'link', onclick: () => endpointsView() }, '← All endpoints')),
    h('div', { class: 'titlebar' }, h('h1', { class: 'url' }, s.url)),
    h('section', { class: 'card' }, facts, actions, result),
    deliveryLog(s));
}

// docs/webhooks.md#ordered-delivery
const ORDERINGS = {
  none: 'none: independent deliveries',
  per_key: 'per key: one at a time per task, email, calendar event …, in the order events occurred',
  strict: 'strict: one at a time, in the order events occurred',
};

// Custom headers (credential values come masked from the API), the signature scheme with its public key, the ordering and the batching.
function optionFacts(s) {
  const headers = Object.entries(s.headers ?? {});
  return [
    h('dt', {}, 'Headers'), h('dd', { 'data-testid': 'headers' }, headers.length === 0 ? 'none'
      : h('ul', { class: 'plain mono small' }, headers.map(([name, value]) => h('li', {}, `${name}: ${value}`)))),
    h('dt', {}, 'Signatures'), h('dd', { 'data-testid': 'signature-scheme' },
      { hmac: 'HMAC-SHA256 (v1)', ed25519: 'Ed25519 (v1a)', both: 'HMAC-SHA256 (v1) and Ed25519 (v1a)' }[s.signature_scheme] ?? s.signature_scheme,
      s.public_key ? h('div', {}, h('span', { class: 'muted small' }, 'Public key: '), h('code', { 'data-testid': 'public-key' }, s.public_key)) : null),
    h('dt', {}, 'Ordering'), h('dd', { 'data-testid': 'ordering' }, ORDERINGS[s.ordering ?? 'none'] ?? s.ordering),
    // docs/webhooks.md#batched-deliveries
    h('dt', {}, 'Batching'), h('dd', { 'data-testid': 'batch' }, s.batch
      ? `up to ${s.batch.max_events} events a POST, sent ${s.batch.max_wait_ms} ms after the first at the latest, bodies up to ${s.batch.max_bytes} bytes`
      : 'off: one POST per event'),
  ];
}

// "Name: value" lines as the API's headers object (the masked value of a credential sent back keeps it).
function parseHeaders(text) {
  const headers = {};
  for (const line of text.split('\n').map(l => l.trim()).filter(Boolean)) {
    const colon = line.indexOf(':');
    if (colon < 0) headers[line] = '';
    else headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  return headers;
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
  out.replaceChildren(secretPanel('New signing secret', r.data.secret, `The previous secret keeps signing until ${when(r.data.previous_secret_expires_at)}.` +
    (r.data.public_key ? ` New Ed25519 public key: ${r.data.public_key} (the previous key signs v1a beside it until then).` : '')));
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

function formView(s) {
  setView('Endpoints');
  const field = (id, label, input, hint) => h('div', { class: 'field' }, h('label', { for: id }, label), input,
    hint ? h('div', { class: 'muted small', id: `${id}-hint` }, hint) : null, h('div', { class: 'field-error', id: `${id}-error` }));
  const url = h('input', { id: 'f-url', name: 'url', type: 'url', required: true, value: s?.url ?? '', 'aria-describedby': 'f-url-hint f-url-error', placeholder: 'https://example.com/webhooks' });
  const description = h('input', { id: 'f-description', name: 'description', maxlength: 1024, value: s?.description ?? '', 'aria-describedby': 'f-description-error' });
  const retries = h('input', { id: 'f-retry', type: 'number', min: 0, max: 10, value: s?.retry_count ?? 3, 'aria-describedby': 'f-retry-hint f-retry-error' });
  const timeout = h('input', { id: 'f-timeout', type: 'number', min: 1, max: 60, value: s?.timeout_seconds ?? 10, 'aria-describedby': 'f-timeout-error' });
  const rate = h('input', { id: 'f-rate', type: 'number', min: 1, max: 10000, value: s?.rate_limit_per_second ?? '', 'aria-describedby': 'f-rate-hint f-rate-error' });
  // Filter and template as JSON text (docs/webhooks.md#filters, #templates); empty: none.
  const filter = h('textarea', { id: 'f-filter', rows: 3, spellcheck: 'false', class: 'mono', 'aria-describedby': 'f-filter-hint f-filter-error',
    placeholder: '{"data.from": {"$prefix": "alice@"}}' });
  filter.value = s?.filter ? JSON.stringify(s.filter, null, 2) : '';
  const template = h('textarea', { id: 'f-template', rows: 4, spellcheck: 'false', class: 'mono', 'aria-describedby': 'f-template-hint f-template-error',
    placeholder: '{"builtin": "slack"}' });
  template.value = s?.template ? JSON.stringify(s.template, null, 2) : '';
  const previewOut = h('div', { id: 'preview-result', 'aria-live': 'polite' });
  const headers = h('textarea', { id: 'f-headers', rows: 3, 'aria-describedby': 'f-headers-hint f-headers-error', placeholder: 'Authorization: Bearer …' },
    Object.entries(s?.headers ?? {}).map(([name, value]) => `${name}: ${value}`).join('\n'));
  const scheme = h('select', { id: 'f-scheme', 'aria-describedby': 'f-scheme-hint f-scheme-error' },
    [['hmac', 'HMAC-SHA256 (v1)'], ['ed25519', 'Ed25519 (v1a)'], ['both', 'Both']].map(([value, label]) =>
      h('option', { value, selected: (s?.signature_scheme ?? 'hmac') === value }, label)));
  const ordering = h('select', { id: 'f-ordering', 'aria-describedby': 'f-ordering-hint f-ordering-error' },
    Object.entries(ORDERINGS).map(([value, label]) => h('option', { value, selected: (s?.ordering ?? 'none') === value }, label)));
  // Batching (docs/webhooks.md#batched-deliveries): empty max events turns it off; empty wait or bytes take the API's defaults.
  const batchEvents = h('input', { id: 'f-batch-events', type: 'number', min: 1, max: 100, value: s?.batch?.max_events ?? '',
    'aria-describedby': 'f-batch-events-hint f-batch-events-error' });
  const batchWait = h('input', { id: 'f-batch-wait', type: 'number', min: 0, max: 10000, value: s?.batch?.max_wait_ms ?? '',
    'aria-describedby': 'f-batch-wait-hint f-batch-wait-error', placeholder: '1000' });
  const batchBytes = h('input', { id: 'f-batch-bytes', type: 'number', min: 1024, value: s?.batch?.max_bytes ?? '',
    'aria-describedby': 'f-batch-bytes-hint f-batch-bytes-error', placeholder: '262144' });
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
    field('f-headers', 'Custom headers (optional)', headers,
      'One "Name: value" a line, sent with every attempt. Credential values (Authorization, …key, …token, …secret) are stored encrypted and shown masked; leave a masked value as it is to keep it.'),
    field('f-scheme', 'Signatures', scheme, 'Ed25519 (v1a) lets receivers verify with a public key; Both while receivers move over.'),
    field('f-ordering', 'Ordering', ordering, 'A failed delivery is skipped once its retries are over; the next of its key goes on.'),
    h('div', { class: 'row' },
      field('f-batch-events', 'Batch: max events (optional)', batchEvents, '1–100 events in one POST. Empty: no batching, one POST per event. Not with a template.'),
      field('f-batch-wait', 'Batch: max wait (ms)', batchWait, '0–10,000: how long the first event waits for more. Empty: 1,000.'),
      field('f-batch-bytes', 'Batch: max bytes', batchBytes, 'Largest body, from 1,024. Empty: the payload cap.')),
    field('f-filter', 'Filter (optional, JSON)', filter, 'Only events it selects are delivered, e.g. {"data.to[]": {"$contains": "@example.com"}}. Empty: every event.'),
    field('f-template', 'Template (optional, JSON)', template,
      'The body sent: {"builtin": "slack"} (or discord, teams, text), or {"liquid": "…", "content_type": "application/json"}. Empty: the JSON payload.'),
    s ? h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', onclick: () => preview(s, filter, template, previewOut, errors) }, 'Preview')) : null,
    previewOut,
    errors,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, s ? 'Save changes' : 'Create endpoint'),
      h('button', { type: 'button', class: 'secondary', onclick: () => (s ? endpointView(s.id) : endpointsView()) }, 'Cancel')));
  form.addEventListener('submit', async e => {
    e.preventDefault();
    for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
    errors.textContent = '';
    const shaping = readShaping(filter, template);
    if (!shaping) return;
    const body = {
      ...shaping,
      url: url.value.trim(),
      event_types: [...form.querySelectorAll('input[name=event_types]:checked')].map(b => b.value),
      description: description.value === '' ? null : description.value,
      retry_count: Number(retries.value),
      timeout_seconds: Number(timeout.value),
      rate_limit_per_second: rate.value === '' ? null : Number(rate.value),
      headers: parseHeaders(headers.value),
      signature_scheme: scheme.value,
      ordering: ordering.value,
      batch: batchEvents.value === '' ? null : {
        max_events: Number(batchEvents.value),
        ...(batchWait.value === '' ? {} : { max_wait_ms: Number(batchWait.value) }),
        ...(batchBytes.value === '' ? {} : { max_bytes: Number(batchBytes.value) }),
      },
    };
    const r = s ? await api('PATCH', `api/webhooks/${s.id}`, body) : await api('POST', 'api/webhooks', body);
    if (!r.ok) {
      const map = { url: 'f-url', event_types: 'f-events', description: 'f-description', retry_count: 'f-retry', timeout_seconds: 'f-timeout',
        rate_limit_per_second: 'f-rate', headers: 'f-headers', signature_scheme: 'f-scheme', ordering: 'f-ordering', filter: 'f-filter', template: 'f-template',
        batch: 'f-batch-events', 'batch.max_events': 'f-batch-events', 'batch.max_wait_ms': 'f-batch-wait', 'batch.max_bytes': 'f-batch-bytes' };
      for (const [k, v] of Object.entries(r.data?.errors ?? {})) {
        // Nested parts (filter.$and[1].data.x.$gt, template.liquid) go to their field, named.
        const root = k.split('.')[0];
        const el = document.getElementById(`${map[k] ?? map[root]}-error`);
        if (el) el.textContent = (el.textContent ? el.textContent + ' ' : '') + (k === root ? v.join(' ') : `${k}: ${v.join(' ')}`);
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

/** The filter and template textareas as request fields; null (and the field's error shown) when one is not JSON. */
function readShaping(filter, template) {
  const out = {};
  for (const [key, el] of [['filter', filter], ['template', template]]) {
    const text = el.value.trim();
    if (text === '') { out[key] = null; continue; }
    try { out[key] = JSON.parse(text); } catch (err) {
      document.getElementById(`${el.id}-error`).textContent = `Not JSON: ${err.message}`;
      return null;
    }
  }
  return out;
}

/** Renders the first event type's example with the form's filter and template, as a delivery would send it; stores nothing. */
async function preview(s, filter, template, out, errors) {
  errors.textContent = '';
  for (const el of [filter, template]) document.getElementById(`${el.id}-error`).textContent = '';
  const shaping = readShaping(filter, template);
  if (!shaping) return;
  const r = await api('POST', `api/webhooks/${s.id}/preview`, shaping);
  if (!r.ok) return out.replaceChildren(h('p', { class: 'error', role: 'alert', 'data-testid': 'preview-error' },
    r.data?.errors ? Object.entries(r.data.errors).map(([k, v]) => `${k}: ${v.join(' ')}`).join(' ') : problemText(r)));
  const p = r.data;
  out.replaceChildren(h('div', { class: 'result', 'data-testid': 'preview' },
    h('strong', {}, `${p.event_type} example: `, p.filter_matches ? 'the filter selects it' : 'the filter does not select it (no delivery)'),
    h('div', { class: 'muted small' }, `Content-Type: ${p.content_type}`),
    h('pre', { 'data-testid': 'preview-body', class: 'wrap' }, p.body)));
}

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

// A new link opened where the portal already is (an embedding app sets the iframe's src to a fresh
// link, or a tab follows one) changes only the fragment, which loads nothing: load the page again,
// so the new token is traded and leaves the address bar (the old session ends as the page goes).
addEventListener('hashchange', () => { if (/(?:^#|&)token=/.test(location.hash)) location.reload(); });
start().catch(err => render(h('section', { class: 'card narrow' }, h('h1', {}, 'Something went wrong'), h('p', {}, String(err)))));
