#!/usr/bin/env node
// Publish Notely events on RabbitMQ from Node with amqplib, the way the webhook dispatcher reads them.
//
// The wire contract is docs/publishing.md: a MassTransit JSON envelope, content type
// application/vnd.masstransit+json, published to the fanout exchange "Notely.Events:<EventName>".
//
//   npm ci
//   AMQP_URL=amqp://guest:guest@127.0.0.1:55672/ node publish-event.js            # one sample EmailReceived
//   node publish-event.js --stdin < events.jsonl   # one {"type": "EmailReceived", "message": {...}} per line
//
// Exits non-zero if the broker did not take a message (no exchange, no queue bound, nack).
'use strict';
const amqp = require('amqplib');
const { randomUUID } = require('node:crypto');

const NAMESPACE = 'Notely.Events';
const CONTENT_TYPE = 'application/vnd.masstransit+json';

/** The MassTransit envelope: messageType names the contract, message holds its camelCase fields. */
function envelope(eventName, message, messageId) {
  return { messageId, messageType: [`urn:message:${NAMESPACE}:${eventName}`], message };
}

/** Publishes one event on a confirm channel; resolves once the broker has it, rejects if it could not route or store it. */
function publish(channel, eventName, message, returned) {
  const messageId = randomUUID();
  const body = Buffer.from(JSON.stringify(envelope(eventName, message, messageId)), 'utf8');
  return new Promise((resolve, reject) => {
    channel.publish(`${NAMESPACE}:${eventName}`, '', body,
      // mandatory: an event no queue is bound to comes back (see 'return') instead of vanishing
      { contentType: CONTENT_TYPE, persistent: true, messageId, mandatory: true },
      (err) => {
        if (err) return reject(new Error(`broker refused ${eventName} ${messageId}`));
        if (returned.has(messageId)) return reject(new Error(`no queue is bound to ${NAMESPACE}:${eventName}; is the dispatcher deployed?`));
        resolve();
      });
  });
}

function sampleEmailReceived(userId) {
  const now = new Date().toISOString(); // always send an offset ("Z" here); a timestamp without one is read as UTC
  return {
    eventId: randomUUID(), // the idempotency key: publishing the same id twice delivers once
    userId,
    occurredAt: now,
    emailId: 'em_1001',
    subject: 'Lunch on Friday?',
    from: 'alice@example.com',
    to: ['you@example.com'],
    date: now,
    bodyPreview: 'Are you free at noon?',
  };
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}

async function main() {
  const url = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:55672/';
  const events = process.argv.includes('--stdin')
    ? await readStdin()
    : [{ type: 'EmailReceived', message: sampleEmailReceived(process.env.USER_ID || 'demo-user') }];

  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    const returned = new Set();
    // The broker returns an unroutable mandatory message before it confirms it.
    channel.on('return', (msg) => returned.add(msg.properties.messageId));
    for (const event of events) {
      await publish(channel, event.type, event.message, returned);
      console.log(`published ${event.type} ${event.message.eventId}`);
    }
    await channel.close();
  } finally {
    await connection.close();
  }
}

main().catch((err) => {
  console.error(err.message || err);
  process.exit(1);
});
