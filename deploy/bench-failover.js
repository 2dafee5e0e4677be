#!/usr/bin/env node
// The failover benchmark's publisher, receiver and clock (deploy/bench-failover.sh runs it; see
// docs/benchmarks/failover.md). Publishes EmailReceived events at a fixed rate for a fixed time
// with publisher confirms (an event not confirmed is published again, on the next node: its id
// makes a repeat harmless), receives the webhooks of the subscriptions on one HTTP port, runs the
// fault commands at their times, then waits for every delivery and writes a JSON report:
// deliveries lost, POSTs repeated, and each fault's slowest delivery.
//
//   node deploy/bench-failover.js CONFIG.json > report.json
//
// CONFIG: {"amqp": ["amqp://guest:guest@127.0.0.1:53672/vhost", …], "userId", "paths": ["/a", "/b"],
//          "receiverPort", "rate", "seconds", "drainSeconds",
//          "faults": [{"at": seconds, "name": "…", "command": ["deploy/cluster.sh", "rabbit-kill-leader", …]}]}
'use strict';
const path = require('node:path');
const http = require('node:http');
const { execFile } = require('node:child_process');
const { randomUUID } = require('node:crypto');
const amqp = require(path.join(__dirname, '../docs/examples/node/node_modules/amqplib'));

const config = JSON.parse(require('node:fs').readFileSync(process.argv[2], 'utf8'));
const log = (...a) => process.stderr.write(`[bench ${clock().toFixed(1)}s] ${a.join(' ')}\n`);
const t0 = process.hrtime.bigint();
const clock = () => Number(process.hrtime.bigint() - t0) / 1e9;

// ---------------------------------------------------------------- receiver
const published = new Map(); // eventId -> first publish time (s)
const arrivals = new Map();  // `${path} ${eventId}` -> first arrival (s)
const repeats = [];          // a repeated POST: how long after the first, and when
let posts = 0;
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    posts++;
    try {
      const id = JSON.parse(Buffer.concat(chunks).toString('utf8')).id;
      const key = `${req.url} ${id}`;
      const now = clock();
      if (!arrivals.has(key)) arrivals.set(key, now);
      else repeats.push({ at: +now.toFixed(2), afterFirst: +(now - arrivals.get(key)).toFixed(2) });
    } catch { /* not ours */ }
    // An answer that takes a while keeps attempts in flight, so a replica killed has some.
    setTimeout(() => res.writeHead(200).end(), config.answerDelayMs ?? 0);
  });
});

// ---------------------------------------------------------------- publisher
let nodeIndex = 0;
let channel = null;
let connecting = null;
let republished = 0;

async function connect() {
  for (;;) {
    const url = config.amqp[nodeIndex % config.amqp.length];
    nodeIndex++;
    try {
      const connection = await amqp.connect(url);
      connection.on('error', () => {});
      connection.on('close', () => { channel = null; });
      const ch = await connection.createConfirmChannel();
      ch.on('error', () => {});
      ch.on('close', () => { if (channel === ch) channel = null; });
      log(`publisher connected to ${url.replace(/\/\/[^@]*@/, '//')}`);
      return ch;
    } catch (e) {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function ensureChannel() {
  if (channel) return channel;
  connecting ??= connect().then((ch) => { channel = ch; connecting = null; return ch; });
  return connecting;
}

function body(eventId) {
  const now = new Date().toISOString();
  return Buffer.from(JSON.stringify({
    messageId: randomUUID(),
    messageType: ['urn:message:Notely.Events:EmailReceived'],
    message: {
      eventId, userId: config.userId, occurredAt: now, emailId: 'em_bench', subject: 'failover benchmark',
      from: 'bench@example.com', to: ['you@example.com'], date: now, bodyPreview: 'x',
    },
  }), 'utf8');
}

/** Publishes until the broker confirms (a nack, a lost channel or a 5 s silence: again, on a fresh channel). */
async function publishConfirmed(eventId) {
  for (let attempt = 0; ; attempt++) {
    if (attempt > 0) republished++;
    let ch;
    try {
      ch = await ensureChannel();
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no confirm within 5 s')), 5000);
        ch.publish('Notely.Events:EmailReceived', '', body(eventId),
          { contentType: 'application/vnd.masstransit+json', persistent: true },
          (err) => { clearTimeout(timer); err ? reject(err) : resolve(); });
      });
      return;
    } catch (e) {
      // A channel that nacks or stays silent is replaced, not retried (it can keep refusing after a leader change).
      if (ch && channel === ch) { channel = null; try { await ch.connection.close(); } catch { /* gone */ } }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

// ---------------------------------------------------------------- faults
const faultTimes = [];
function runFault(fault) {
  const started = clock();
  faultTimes.push({ name: fault.name, at: started });
  log(`fault: ${fault.name}`);
  execFile(fault.command[0], fault.command.slice(1), { cwd: path.join(__dirname, '..') }, (err, stdout, stderr) => {
    const f = faultTimes.find((x) => x.at === started);
    f.done = clock();
    if (err) { f.error = String(stderr || err.message).trim().split('\n').slice(-2).join(' '); log(`fault ${fault.name} failed: ${f.error}`); }
  });
}

// ---------------------------------------------------------------- run
async function main() {
  await new Promise((r) => server.listen(config.receiverPort, '127.0.0.1', r));
  await ensureChannel();
  for (const fault of config.faults) setTimeout(() => runFault(fault), fault.at * 1000);

  const total = config.rate * config.seconds;
  const inFlight = new Set();
  const start = clock();
  for (let i = 0; i < total; i++) {
    const due = start + i / config.rate;
    const wait = due - clock();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait * 1000));
    const eventId = randomUUID();
    published.set(eventId, clock());
    const p = publishConfirmed(eventId).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size > 5000) await Promise.race(inFlight); // bounded memory while the broker is away
  }
  await Promise.all(inFlight);
  const publishEnd = clock();
  log(`published ${total} events (${republished} publishes repeated)`);

  const expected = total * config.paths.length;
  const deadline = clock() + config.drainSeconds;
  while (arrivals.size < expected && clock() < deadline) await new Promise((r) => setTimeout(r, 500));
  await new Promise((r) => setTimeout(r, 3000)); // late repeats
  log(`received ${arrivals.size} of ${expected} deliveries, ${posts} POSTs`);

  // Latency of each delivery, and per fault the slowest one it delayed: arrival minus the later of
  // its publish and the fault, over deliveries published from 10 s before the fault up to the next fault.
  const rows = [];
  for (const [eventId, at] of published)
    for (const p of config.paths) {
      const arrived = arrivals.get(`${p} ${eventId}`);
      rows.push({ at, arrived, latency: arrived === undefined ? null : arrived - at });
    }
  const faults = faultTimes.sort((a, b) => a.at - b.at).map((f, i, all) => {
    const until = i + 1 < all.length ? all[i + 1].at : Infinity;
    const window = rows.filter((r) => r.at >= f.at - 10 && r.at < until && r.arrived !== undefined);
    // A fault that lasts (a broker stopped and started): also from its end, when the command returned.
    const end = f.done ?? f.at;
    let slowest = 0, slowestLatency = 0, slowestAfterEnd = 0;
    for (const r of window) {
      slowest = Math.max(slowest, r.arrived - Math.max(r.at, f.at));
      slowestLatency = Math.max(slowestLatency, r.latency);
      slowestAfterEnd = Math.max(slowestAfterEnd, r.arrived - Math.max(r.at, end));
    }
    const late = (s) => window.filter((r) => r.arrived - Math.max(r.at, f.at) > s).length;
    return { ...f, deliveries: window.length, slowestLateness: +slowest.toFixed(2), slowestAfterFaultEnd: +slowestAfterEnd.toFixed(2),
             slowestLatency: +slowestLatency.toFixed(2),
             laterThan5s: late(5), laterThan10s: late(10) };
  });
  const latencies = rows.filter((r) => r.latency !== null).map((r) => r.latency).sort((a, b) => a - b);
  const pct = (q) => +latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))].toFixed(3);
  // Over time: the slowest and median latency of deliveries published in each 5 s.
  const buckets = [];
  for (let s = 0; s < publishEnd; s += 5) {
    const b = rows.filter((r) => r.at >= s && r.at < s + 5 && r.latency !== null).map((r) => r.latency).sort((a, c) => a - c);
    if (b.length) buckets.push({ from: s, p50: +b[Math.floor(b.length / 2)].toFixed(3), max: +b[b.length - 1].toFixed(3) });
  }
  const report = {
    rate: config.rate, seconds: config.seconds, events: total, expectedDeliveries: expected,
    delivered: arrivals.size, lost: expected - arrivals.size, posts, repeatedPosts: posts - arrivals.size,
    republishedEvents: republished, repeats, answerDelayMs: config.answerDelayMs ?? 0, p50: pct(0.5), p99: pct(0.99), max: pct(1), faults, overTime: buckets,
  };
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  process.exit(0);
}

main().catch((e) => { log(e.stack || e); process.exit(1); });
