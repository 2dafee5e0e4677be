// The form that creates or edits an endpoint, with its filter and template preview.

import { api, h, problemText, render, setView, state, toast } from './core.js';
import { endpointsView, endpointView, ORDERINGS, secretPanel } from './endpoints.js';

export function formView(s) {
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
