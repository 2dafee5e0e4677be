// The operator view, for Notely's support staff: any user's deliveries and endpoints, retries and
// recoveries (each stored in the audit trail), and the audit log.

import { api, attemptsTable, badge, h, payloadBlock, percent, problemText, render, setView, state, status, toast, when } from './core.js';

// A list's older entries, paged by the cursor each answer gives (same query, newest first): a
// "Load older" button under the table while there are more; its rows are appended to body.
function olderPager(more, body, path, query, row, label) {
  const older = cursor => cursor ? more.replaceChildren(h('p', { class: 'pad' }, h('button', { type: 'button', class: 'secondary', onclick: async e => {
    e.currentTarget.disabled = true; // one page per click: a second click would append the same page again
    const next = await api('GET', `${path}?${new URLSearchParams({ ...query, cursor })}`);
    if (!next.ok) return more.replaceChildren(h('p', { class: 'error pad', role: 'alert' }, problemText(next)));
    body.append(...next.data.data.map(row));
    older(next.data.next_cursor);
  } }, label))) : more.replaceChildren();
  return older;
}

export function operatorEndpointsView() {
  setView('Find endpoints');
  const kind = h('select', { id: 'ope-kind' }, [['user_id', 'User id'], ['host', 'URL host']].map(([v, l]) => h('option', { value: v }, l)));
  const value = h('input', { id: 'ope-value', required: true, size: 40 });
  const results = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'filters card', role: 'search', 'aria-label': 'Find endpoints' },
    h('label', { for: 'ope-kind' }, 'Find by'), kind, h('label', { for: 'ope-value', class: 'sr-only' }, 'Value'), value,
    h('button', { type: 'submit' }, 'Find'));
  form.addEventListener('submit', async e => {
    e.preventDefault();
    const query = { [kind.value]: value.value.trim() };
    const r = await api('GET', `api/operator/webhooks?${new URLSearchParams(query)}`);
    if (!r.ok) return results.replaceChildren(h('p', { class: 'error', role: 'alert' }, problemText(r)));
    if (!r.data.data.length) return results.replaceChildren(h('p', { class: 'empty' }, 'No endpoint matches.'));
    const row = o => h('tr', { 'data-webhook': o.webhook.id },
      h('td', { class: 'url' }, o.webhook.url), h('td', {}, o.user_id), h('td', {}, status(o.webhook)),
      h('td', {}, percent(o.webhook.statistics.success_rate)),
      h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => operatorEndpoint(o) }, 'Open')));
    const body = h('tbody', {}, r.data.data.map(row));
    const more = h('div', {});
    olderPager(more, body, 'api/operator/webhooks', query, row, 'Load older endpoints')(r.data.next_cursor);
    results.replaceChildren(h('section', { class: 'card flush' }, h('table', { class: 'list' },
      h('caption', { class: 'sr-only' }, 'Matching endpoints'),
      h('thead', {}, h('tr', {}, ['Endpoint', 'User', 'Status', 'Success rate', ''].map(t => h('th', { scope: 'col' }, t)))),
      body), more));
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

export function operatorView() {
  setView('Find deliveries');
  const kind = h('select', { id: 'op-kind' }, [['event_id', 'Event id'], ['delivery_id', 'Delivery id'], ['user_id', 'User id'], ['host', 'URL host']]
    .map(([v, l]) => h('option', { value: v }, l)));
  const value = h('input', { id: 'op-value', required: true, size: 40 });
  const status = h('select', { id: 'op-status' }, [['', 'Any status'], ['failed', 'Failed'], ['retrying', 'Retrying'], ['pending', 'Pending'],
    ['success', 'Success'], ['cancelled', 'Cancelled']].map(([v, l]) => h('option', { value: v }, l)));
  const results = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'filters card', role: 'search', 'aria-label': 'Find deliveries' },
    h('label', { for: 'op-kind' }, 'Find by'), kind, h('label', { for: 'op-value', class: 'sr-only' }, 'Value'), value,
    h('label', { for: 'op-status' }, 'Status'), status, h('button', { type: 'submit' }, 'Find'));
  const row = o => h('tr', { 'data-delivery': o.delivery.id },
    h('td', {}, badge(o.delivery.status, o.delivery.status === 'success' ? 'ok' : o.delivery.status === 'failed' ? 'bad' : 'info')),
    h('td', {}, o.delivery.event_type, h('div', { class: 'muted small mono' }, o.delivery.event_id)),
    h('td', {}, o.user_id), h('td', { class: 'url' }, o.url), h('td', {}, when(o.delivery.created_at)),
    h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => operatorDelivery(o.delivery.id) }, 'Open')));
  const search = async () => {
    const query = { [kind.value]: value.value.trim() };
    if (status.value) query.status = status.value;
    const r = await api('GET', `api/operator/deliveries?${new URLSearchParams(query)}`);
    if (!r.ok) return results.replaceChildren(h('p', { class: 'error', role: 'alert' }, problemText(r)));
    if (!r.data.data.length) return results.replaceChildren(h('p', { class: 'empty' }, 'No delivery matches.'));
    const body = h('tbody', {}, r.data.data.map(row));
    const more = h('div', {});
    olderPager(more, body, 'api/operator/deliveries', query, row, 'Load older deliveries')(r.data.next_cursor);
    results.replaceChildren(h('section', { class: 'card flush' }, h('table', { class: 'list' },
      h('caption', { class: 'sr-only' }, 'Matching deliveries'),
      h('thead', {}, h('tr', {}, ['Status', 'Event', 'User', 'Endpoint', 'Created', ''].map(t => h('th', { scope: 'col' }, t)))),
      body), more));
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
  // An event sent in a batch is retried with its batch (the API answers 409 for the event itself).
  const actions = !state.session.read_only && (d.status === 'failed' || d.status === 'cancelled') && !d.batch_id
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
  if (d.status === 'pending' || d.status === 'retrying' || d.status === 'batched') state.timer = setTimeout(() => { if (state.view === 'Find deliveries') operatorDelivery(id); }, 2000);
}

const auditActions = { retry_delivery: 'Retried a delivery', recover_deliveries: 'Recovered failed deliveries' };

/** The operator audit trail: every retry and recovery asked for in the operator view, newest first. */
export function auditView(pageSize = '100') {
  setView('Audit log');
  const who = h('input', { id: 'audit-operator', size: 24 });
  const whose = h('input', { id: 'audit-user', size: 24 });
  const results = h('div', { 'aria-live': 'polite' });
  let latest = 0; // only the answer to the latest load is shown: an earlier one may arrive after it
  const load = async () => {
    const query = { limit: pageSize };
    if (who.value.trim()) query.operator = who.value.trim();
    if (whose.value.trim()) query.user_id = whose.value.trim();
    const mine = ++latest;
    const r = await api('GET', `api/operator/audit?${new URLSearchParams(query)}`);
    if (mine !== latest || state.view !== 'Audit log') return;
    if (!r.ok) return results.replaceChildren(h('p', { class: 'error', role: 'alert' }, problemText(r)));
    if (!r.data.data.length) return results.replaceChildren(h('p', { class: 'empty' }, 'No change recorded.'));
    const row = e => h('tr', { 'data-audit': e.id },
      h('td', {}, when(e.created_at)), h('td', {}, e.operator),
      h('td', {}, auditActions[e.action] || e.action, e.since ? h('div', { class: 'muted small' }, `created after ${when(e.since)}`) : null),
      h('td', {}, e.user_id),
      h('td', { class: 'mono small' }, `webhook ${e.subscription_id}`, e.delivery_id ? h('div', {}, `delivery ${e.delivery_id}`) : null),
      h('td', {}, badge(String(e.status_code), e.status_code === 202 ? 'ok' : 'bad'), ' ', e.result));
    const body = h('tbody', {}, r.data.data.map(row));
    const more = h('div', {});
    olderPager(more, body, 'api/operator/audit', query, row, 'Load older changes')(r.data.next_cursor);
    results.replaceChildren(h('section', { class: 'card flush' }, h('table', { class: 'list audit' },
      h('caption', { class: 'sr-only' }, 'Changes made in the operator view, newest first'),
      h('thead', {}, h('tr', {}, ['Time', 'Operator', 'Change', 'User', 'Endpoint and delivery', 'Answer'].map(t => h('th', { scope: 'col' }, t)))),
      body), more));
  };
  const form = h('form', { class: 'filters card', role: 'search', 'aria-label': 'Filter the audit log' },
    h('label', { for: 'audit-operator' }, 'Operator'), who, h('label', { for: 'audit-user' }, 'User id'), whose,
    h('button', { type: 'submit' }, 'Show'));
  form.addEventListener('submit', e => { e.preventDefault(); load(); });
  render(h('h1', {}, 'Audit log'),
    h('p', { class: 'muted' }, 'Every retry and recovery asked for in the operator view, with who asked and the answer given.'), form, results);
  load();
}
