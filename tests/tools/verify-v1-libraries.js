#!/usr/bin/env node
// The published Standard Webhooks verifiers, for the tests: reads {secret, headers, body} as JSON
// on stdin and prints {"standardwebhooks": true|false, "svix": true|false}, whether each library
// accepts the request (they check the v1 entries of webhook-signature and skip the others).
'use strict';
const { Webhook: StandardWebhook } = require('standardwebhooks');
const { Webhook: SvixWebhook } = require('svix');

let input = '';
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', () => {
  const { secret, headers, body } = JSON.parse(input);
  const verdict = (verify) => { try { verify(); return true; } catch { return false; } };
  console.log(JSON.stringify({
    standardwebhooks: verdict(() => new StandardWebhook(secret.slice('whsec_'.length)).verify(body, headers)),
    svix: verdict(() => new SvixWebhook(secret).verify(body, headers)),
  }));
});
