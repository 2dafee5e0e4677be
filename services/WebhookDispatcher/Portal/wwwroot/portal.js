// The delivery portal: a page served by the dispatcher that talks only to the dispatcher's own
// API with a session token kept in memory (never in storage, a cookie or the URL). No framework,
// no build step, no inline script (the CSP forbids it); every value from the API is put into the
// page as text, never as HTML. docs/portal.md describes the flow. This module opens the session,
// draws the navigation and the event catalog; core.js, endpoints.js, endpoint-form.js,
// deliveries.js, statistics.js and operator.js the rest.

import { api, badge, h, problemText, render, setView, state, toast, when } from './core.js';
import { endpointsView, endpointView } from './endpoints.js';
import { auditView, operatorEndpointsView, operatorView } from './operator.js';
import { statsView } from './statistics.js';

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
