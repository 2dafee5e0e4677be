#!/usr/bin/env node
// Verify Notely webhooks in Node with node:crypto only (no packages).
//
// Two signatures come with every request (docs/webhooks.md):
//  * webhook-id / webhook-timestamp / webhook-signature (Standard Webhooks): HMAC-SHA256 over
//    "{id}.{timestamp}.{body}" keyed with the base64-decoded part of the secret after "whsec_",
//    sent as one or more space-separated "v1,<base64>" entries (several during a secret rotation);
//    the timestamp must be within 5 minutes of now. Verify this one: it also stops replays.
//  * X-Webhook-Signature: "sha256=" + hex HMAC-SHA256 of the body keyed with the UTF-8 bytes of the
//    whole secret (the original Notely scheme). It carries the newest secret only.
// A webhook whose signature_scheme is "ed25519" or "both" also signs "{id}.{timestamp}.{body}" with
// Ed25519: "v1a,<base64>" entries in webhook-signature, verified with the webhook's public key
// "whpk_<base64 of 32 bytes>" (node:crypto, no package). Give the public key where a secret goes;
// with only public keys, no HMAC is checked.
//
// Run as a receiver:  WEBHOOK_SECRET=whsec_... PORT=5099 node verify-webhook.js
// (WEBHOOK_SECRET may hold several secrets or whpk_ public keys separated by spaces or commas, e.g.
// old and new during a rotation.) It answers 200 {"ok": true, ...} to a verified POST and 401 {"ok": false, "reason": ...}
// otherwise, and prints "listening on http://127.0.0.1:<port>" once ready.
'use strict';
const crypto = require('node:crypto');
const http = require('node:http');

const TOLERANCE_SECONDS = 5 * 60;

class WebhookVerificationError extends Error {}

function standardKey(secret) {
  return secret.startsWith('whsec_') ? Buffer.from(secret.slice('whsec_'.length), 'base64') : Buffer.from(secret, 'utf8');
}

// An Ed25519 public key as DER (SubjectPublicKeyInfo): this fixed prefix, then the 32 raw bytes.
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Whether signature (base64) is publicKey's ("whpk_<base64>") Ed25519 signature of signed (a Buffer). */
function ed25519Verifies(publicKey, signed, signature) {
  const raw = Buffer.from(publicKey.slice('whpk_'.length), 'base64');
  if (raw.length !== 32) return false;
  const key = crypto.createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
  return crypto.verify(null, signed, key, Buffer.from(signature, 'base64'));
}

function safeEqual(a, b) {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

/**
 * Checks the Standard Webhooks headers against the raw body bytes (a Buffer); throws
 * WebhookVerificationError. headers: lower-case names (Node's req.headers). Returns the webhook-id.
 */
function verifyStandard(secrets, headers, body, nowSeconds = Date.now() / 1000, tolerance = TOLERANCE_SECONDS) {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatureHeader = headers['webhook-signature'];
  if (!id || !timestamp || !signatureHeader) throw new WebhookVerificationError('missing webhook-id, webhook-timestamp or webhook-signature');
  if (!/^[0-9]{1,12}$/.test(timestamp)) throw new WebhookVerificationError('webhook-timestamp is not unix seconds');
  if (Math.abs(nowSeconds - Number(timestamp)) > tolerance) {
    throw new WebhookVerificationError('webhook-timestamp is outside the tolerance (stale or replayed request)');
  }
  const signed = Buffer.concat([Buffer.from(`${id}.${timestamp}.`, 'utf8'), body]);
  const candidates = signatureHeader.split(' ').filter((e) => e.startsWith('v1,')).map((e) => e.slice(3));
  const asymmetric = signatureHeader.split(' ').filter((e) => e.startsWith('v1a,')).map((e) => e.slice(4));
  for (const publicKey of secrets.filter((s) => s.startsWith('whpk_'))) {
    if (asymmetric.some((c) => ed25519Verifies(publicKey, signed, c))) return id;
  }
  for (const secret of secrets.filter((s) => !s.startsWith('whpk_'))) {
    const expected = crypto.createHmac('sha256', standardKey(secret)).update(signed).digest('base64');
    if (candidates.some((c) => safeEqual(expected, c))) return id;
  }
  throw new WebhookVerificationError('no webhook-signature entry matches (wrong secret or changed body)');
}

/** Checks X-Webhook-Signature (sha256=<hex>); throws WebhookVerificationError. */
function verifyLegacy(secrets, headers, body) {
  const header = headers['x-webhook-signature'] || '';
  for (const secret of secrets.filter((s) => !s.startsWith('whpk_'))) {
    const expected = 'sha256=' + crypto.createHmac('sha256', Buffer.from(secret, 'utf8')).update(body).digest('hex');
    if (safeEqual(expected, header)) return;
  }
  throw new WebhookVerificationError('X-Webhook-Signature does not match (wrong secret or changed body)');
}

function serve(secrets, port) {
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks); // the raw bytes: verify before parsing
      const answer = (status, doc) => {
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(doc));
      };
      let webhookId;
      try {
        webhookId = verifyStandard(secrets, req.headers, body);
      } catch (err) {
        if (err instanceof WebhookVerificationError) return answer(401, { ok: false, reason: err.message });
        throw err;
      }
      let legacy = true;
      try {
        verifyLegacy(secrets, req.headers, body);
      } catch {
        legacy = false; // expected while a rotation is under way and this receiver has the old secret only
      }
      // Verified: the body is ours. A subscription with a template may send something other than
      // the event's JSON (plain text, a Slack message), so parse only a JSON body; the event type
      // is in X-Webhook-Event whatever the body.
      let event = null;
      if (/^application\/([\w.+-]+\+)?json\b/i.test(req.headers['content-type'] || '')) {
        try {
          event = JSON.parse(body.toString('utf8'));
        } catch {
          event = null; // a template's own JSON that does not parse: still a verified delivery
        }
      }
      answer(200, {
        ok: true, webhook_id: webhookId, event_type: event?.event_type ?? req.headers['x-webhook-event'],
        webhook_signature: true, x_webhook_signature: legacy,
      });
    });
  });
  server.listen(port, '127.0.0.1', () => console.log(`listening on http://127.0.0.1:${server.address().port}`));
  return server;
}

module.exports = { verifyStandard, verifyLegacy, WebhookVerificationError };

if (require.main === module) {
  const secrets = (process.env.WEBHOOK_SECRET || '').split(/[\s,]+/).filter(Boolean);
  if (secrets.length === 0) {
    console.error("set WEBHOOK_SECRET to the subscription's secret (whsec_...)");
    process.exit(2);
  }
  serve(secrets, Number(process.env.PORT || 5099));
}
