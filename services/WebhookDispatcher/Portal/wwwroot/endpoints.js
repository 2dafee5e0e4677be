// A user's endpoints: the list, one endpoint's page with its actions (test, enable or disable,
// rotate the secret, delete) and its delivery log.

import { api, canChange, h, percent, problemText, render, setView, state, status, toast, when } from './core.js';
import { deliveryLog } from './deliveries.js';
import { formView } from './endpoint-form.js';

export async function endpointsView() {
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

export async function endpointView(id, notice) {
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
export const ORDERINGS = {
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

export function secretPanel(title, secret, note) {
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
