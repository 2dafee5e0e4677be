// An endpoint's delivery log: filters, cursor pages, each delivery's attempts, headers and payload
// (read when unfolded), retry and recover.

import { api, attemptsTable, badge, canChange, cause, h, payloadBlock, problemText, state, toast, when } from './core.js';

export function deliveryLog(s) {
  const section = h('section', { class: 'card flush', 'aria-labelledby': 'log-title' });
  const statusSel = h('select', { id: 'flt-status' }, h('option', { value: '' }, 'Any status'),
    ['pending', 'retrying', 'batched', 'success', 'failed', 'cancelled'].map(v => h('option', { value: v }, v)));
  // A batched endpoint's batches are deliveries of their own, of event type "batch".
  const typeSel = h('select', { id: 'flt-type' }, h('option', { value: '' }, 'Any event type'),
    [...s.event_types, ...(s.batch ? ['batch'] : [])].map(v => h('option', { value: v }, v)));
  const since = h('input', { id: 'flt-since', type: 'datetime-local' });
  const until = h('input', { id: 'flt-until', type: 'datetime-local' });
  const body = h('div', {});
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter deliveries' },
    h('label', { for: 'flt-status' }, 'Status'), statusSel,
    h('label', { for: 'flt-type' }, 'Event type'), typeSel,
    h('label', { for: 'flt-since' }, 'Created after'), since,
    h('label', { for: 'flt-until' }, 'Created before'), until,
    h('button', { type: 'submit', class: 'secondary' }, 'Apply'));
  const query = () => {
    const p = new URLSearchParams({ limit: '25', include_attempts: 'true' });
    if (statusSel.value) p.set('status', statusSel.value);
    if (typeSel.value) p.set('event_type', typeSel.value);
    if (since.value) p.set('since', new Date(since.value).toISOString());
    if (until.value) p.set('until', new Date(until.value).toISOString());
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
      body.append(h('div', { class: 'more' }, h('button', { type: 'button', class: 'secondary', onclick: e => { e.currentTarget.disabled = true; load(r.data.next_cursor, true); } }, 'Load older deliveries')));
    }
    // While deliveries on the first page are still under way, look again shortly; not once older
    // pages were added, which a refresh of the first page would drop (docs/portal.md).
    clearTimeout(state.timer);
    // Under way: waiting for an attempt, or (an event of a batch) for its batch to be formed and sent.
    if (!append && rows.some(d => d.status === 'pending' || d.status === 'retrying' || d.status === 'batched')) state.timer = setTimeout(() => { if (state.view === view) load(null, false); }, 2000);
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
    h('td', {}, d.event_type, h('div', { class: 'muted small mono' }, d.event_id),
      d.ordering_key != null ? h('div', { class: 'muted small mono', 'data-testid': 'ordering-key' }, d.ordering_key === '' ? 'ordered: strict' : `key ${d.ordering_key}`) : null,
      // Batched deliveries: an event names its batch (none yet while it waits); a batch says how many events it carries.
      d.batch_id ? h('div', { class: 'muted small' }, 'in batch ', h('span', { class: 'mono' }, d.batch_id)) : null,
      d.batch_size ? h('div', { class: 'muted small' }, `batch of ${d.batch_size} event${d.batch_size === 1 ? '' : 's'}`) : null),
    h('td', {}, when(d.created_at)),
    h('td', {}, `${d.attempt_count} of ${d.max_attempts}`),
    h('td', {}, last ? cause(last) : (d.next_retry_at ? `Next attempt ${when(d.next_retry_at)}` : '—')),
    h('td', { class: 'nowrap' }, toggle,
      canChange() && (d.status === 'failed' || d.status === 'cancelled') && !d.batch_id
        ? h('button', { type: 'button', class: 'small', onclick: async () => {
          const r = await api('POST', `api/webhooks/${s.id}/deliveries/${d.id}/retry`);
          toast(r.ok ? 'Retry accepted: a new round of attempts starts now' : problemText(r));
          reload();
        } }, 'Retry') : null));
  const payload = h('div', { class: 'payload-slot' });
  const details = h('tr', { id: detailsId, class: 'details', hidden: !open }, h('td', { colspan: 6 }, attemptsTable(d, s), payload));
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
  slot.replaceChildren(payloadBlock(d.id, p.payload, p.unavailable, Boolean(s.template)));
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
