// What every view of the delivery portal shares: the session's state, DOM helpers (values go in
// as text, never as HTML), the API call, and the parts of a delivery both views show.

// payloads: a delivery's payload once read (by delivery id), for the deliveries shown; payloadOpen: whose payload is unfolded.
export const state = { token: null, session: null, view: null, events: [], expanded: new Set(), payloads: new Map(), payloadOpen: new Set(), timer: null };

const main = document.getElementById('main');

/** Creates an element; attrs may hold on* handlers, children are nodes or text. */
export function h(tag, attrs = {}, ...children) {
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

export function render(...nodes) {
  main.replaceChildren(...nodes.flat().filter(n => n !== null && n !== undefined && n !== false));
  const heading = main.querySelector('h1');
  if (heading) { heading.tabIndex = -1; heading.focus(); }
}

export function toast(text) {
  const t = document.getElementById('toast');
  t.textContent = text;
  t.classList.add('shown');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('shown'), 6000);
}

export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function percent(rate) { return rate === null || rate === undefined ? '—' : `${(rate * 100).toFixed(1)} %`; }

export function badge(text, kind) { return h('span', { class: `badge ${kind}` }, text); }

export const canChange = () => state.session && !state.session.read_only;

/** Calls the dispatcher's API with the session token; returns { ok, status, data }. */
export async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${state.token}` }, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
  if (body !== undefined) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (res.status === 401) sessionEnded();
  return { ok: res.ok, status: res.status, data };
}

export function problemText(r) {
  const d = r.data || {};
  const fields = d.errors ? Object.entries(d.errors).map(([k, v]) => `${k}: ${v.join(' ')}`).join(' · ') : '';
  return [d.title, d.detail, fields].filter(Boolean).join(' — ') || `HTTP ${r.status}`;
}

export function sessionEnded() {
  clearTimeout(state.timer);
  state.token = null;
  state.payloads.clear();
  document.getElementById('nav').replaceChildren();
  document.getElementById('session').replaceChildren();
  render(h('section', { class: 'card narrow' }, h('h1', {}, 'Your portal session has ended'),
    h('p', {}, 'For your security, portal links work once and sessions are short. Open the portal again from your app to get a new link.')));
}

export function setView(label) {
  clearTimeout(state.timer);
  state.view = label;
  for (const b of document.querySelectorAll('#nav button')) {
    if (b.dataset.view === label) b.setAttribute('aria-current', 'page'); else b.removeAttribute('aria-current');
  }
}

export const disabledReasons = {
  endpoint_gone: 'Disabled: the endpoint answered 410 Gone',
  failing: 'Disabled: every delivery failed for days',
  owner: 'Disabled by you',
};

export function status(s) {
  return s.is_active ? badge('Active', 'ok') : badge(disabledReasons[s.disabled_reason] || 'Disabled', 'bad');
}

export const outcomes = {
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
  template_error: () => 'The endpoint\'s template failed to render this event, so nothing was sent and it is not retried: fix the template, then retry.',
};

export function cause(a) { return (outcomes[a.outcome] || (() => a.outcome))(a); }

/**
 * The attempts of a delivery and the headers they carried. With the endpoint s (as it is set now):
 * its custom headers (credentials masked, as the API shows them), its template's content type and
 * its signature scheme.
 */
export function attemptsTable(d, s = null) {
  if (!d.attempts?.length && d.batch_id) return h('p', { class: 'muted' }, `This event is sent in batch ${d.batch_id}: its attempts are that delivery's.`);
  if (!d.attempts?.length) return h('p', { class: 'muted' }, d.status === 'batched' ? 'Waiting to go into a batch.' : 'No attempt has been made yet.');
  return h('div', {},
    h('table', { class: 'attempts' }, h('caption', {}, `Attempts of delivery ${d.id}`),
      h('thead', {}, h('tr', {}, ['#', 'Time', 'Duration', 'Status', 'What happened', 'Response excerpt'].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, d.attempts.map(a => h('tr', { class: a.outcome === 'success' ? 'ok' : 'bad' },
        h('td', {}, a.attempt_number), h('td', {}, when(a.attempted_at)), h('td', {}, `${a.duration_ms} ms`),
        h('td', {}, a.status_code ?? '—'),
        h('td', {}, cause(a), a.error_message ? h('div', { class: 'muted small' }, a.error_message) : null),
        h('td', {}, a.response_excerpt ? h('pre', { class: 'excerpt' }, a.response_excerpt) : '—'))))),
    h('details', { class: 'headers' }, h('summary', {}, 'Request headers sent'),
      s ? h('p', { class: 'muted small' }, 'As the endpoint is set now; an attempt made before a change carried what was set then.') : null,
      h('pre', {}, [
        s?.template ? 'Content-Type: as the endpoint\'s template sets it (Preview on its form shows it)' : 'Content-Type: application/json; charset=utf-8',
        ...Object.entries(s?.headers ?? {}).map(([name, value]) => `${name}: ${value}`),
        `X-Webhook-Event: ${d.event_type}`,
        `X-Webhook-Delivery: ${d.id}`,
        `webhook-id: ${d.event_id}`,
        // The signature's timestamp is the attempt's start, stored as its time.
        ...d.attempts.map(a => `webhook-timestamp: ${Math.floor(Date.parse(a.attempted_at) / 1000)}   (attempt ${a.attempt_number})`),
        s?.signature_scheme === 'ed25519' ? 'webhook-signature: v1a, computed with the endpoint\'s private key (never shown here)'
          : s?.signature_scheme === 'both' ? 'X-Webhook-Signature, webhook-signature: v1 with your secret and v1a with the private key (never shown here)'
            : 'X-Webhook-Signature, webhook-signature: computed with your secret (never shown here)',
      ].join('\n'))));
}

/** The exact body sent on every attempt (shown indented), or why it is not shown. */
export function payloadBlock(id, payload, unavailable, templated = false) {
  if (payload === null || payload === undefined) {
    return h('p', { class: 'result bad payload-gone', 'data-testid': 'payload-gone' }, h('strong', {}, 'Payload not available. '), unavailable || '');
  }
  let shown = payload;
  try { shown = JSON.stringify(JSON.parse(payload), null, 2); } catch { /* shown as stored */ }
  const bytes = new TextEncoder().encode(payload).length;
  const details = h('details', { class: 'headers payload', open: state.payloadOpen.has(id) },
    h('summary', {}, templated ? `Event payload (${bytes.toLocaleString('en')} bytes), sent through the endpoint's template` : `Payload sent (${bytes.toLocaleString('en')} bytes)`),
    h('p', { class: 'muted small' }, templated
      ? 'The endpoint\'s template renders the body sent from this payload, the same bytes on every attempt; Preview on its form shows it.'
      : 'The same bytes on every attempt, signed; shown indented here.'),
    h('pre', { 'data-testid': 'payload', tabindex: '0', 'aria-label': `Payload of delivery ${id}` }, shown));
  details.addEventListener('toggle', () => { if (details.open) state.payloadOpen.add(id); else state.payloadOpen.delete(id); });
  return details;
}
