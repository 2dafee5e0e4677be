// Statistics: numbers and charts (SVG, each with a text alternative and a table of its numbers).

import { api, h, percent, problemText, render, setView, when } from './core.js';

/** Shows the statistics of the window; openEndpoint(id) opens an endpoint from the most failing list. */
export async function statsView(openEndpoint, window = '24h') {
  setView('Statistics');
  const [r, t] = await Promise.all([api('GET', `api/webhooks/stats?window=${encodeURIComponent(window)}`),
    api('GET', `api/webhooks/stats/timeline?window=${encodeURIComponent(window)}`)]);
  const select = h('select', { id: 'stats-window', onchange: e => statsView(openEndpoint, e.target.value) },
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
        h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => openEndpoint(f.id) }, f.url)),
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
