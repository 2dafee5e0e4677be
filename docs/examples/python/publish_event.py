#!/usr/bin/env python3
"""Publish Notely events on RabbitMQ from Python with pika, the way the webhook dispatcher reads them.

The wire contract is docs/publishing.md: a MassTransit JSON envelope, content type
application/vnd.masstransit+json, published to the fanout exchange "Notely.Events:<EventName>".

    AMQP_URL=amqp://guest:guest@127.0.0.1:55672/ python3 publish_event.py            # one sample EmailReceived
    python3 publish_event.py --stdin < events.jsonl   # one {"type": "EmailReceived", "message": {...}} per line

Needs pika (Debian: apt-get install python3-pika; elsewhere: pip install pika).
Exits non-zero if the broker did not take a message (no exchange, no queue bound, nack).
"""
import json
import os
import sys
import uuid
from datetime import datetime, timezone

import pika

NAMESPACE = "Notely.Events"
CONTENT_TYPE = "application/vnd.masstransit+json"


def envelope(event_name, message, message_id):
    """The MassTransit envelope: messageType names the contract, message holds its camelCase fields."""
    return {
        "messageId": message_id,
        "messageType": [f"urn:message:{NAMESPACE}:{event_name}"],
        "message": message,
    }


def publish(channel, event_name, message):
    """Publishes one event; raises if the broker could not route or store it (confirms are on)."""
    message_id = str(uuid.uuid4())
    channel.basic_publish(
        exchange=f"{NAMESPACE}:{event_name}",
        routing_key="",
        body=json.dumps(envelope(event_name, message, message_id), ensure_ascii=False).encode("utf-8"),
        properties=pika.BasicProperties(content_type=CONTENT_TYPE, delivery_mode=2, message_id=message_id),
        mandatory=True,  # an event no queue is bound to comes back as UnroutableError instead of vanishing
    )


def sample_email_received(user_id):
    now = datetime.now(timezone.utc).isoformat()  # always send an offset; a timestamp without one is read as UTC
    return {
        "eventId": str(uuid.uuid4()),  # the idempotency key: publishing the same id twice delivers once
        "userId": user_id,
        "occurredAt": now,
        "emailId": "em_1001",
        "subject": "Lunch on Friday?",
        "from": "alice@example.com",
        "to": ["you@example.com"],
        "date": now,
        "bodyPreview": "Are you free at noon?",
    }


def main():
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:55672/")
    if "--stdin" in sys.argv[1:]:
        events = [json.loads(line) for line in sys.stdin if line.strip()]
    else:
        events = [{"type": "EmailReceived", "message": sample_email_received(os.environ.get("USER_ID", "demo-user"))}]

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()  # basic_publish now waits for the broker's ack and raises on nack
        for event in events:
            publish(channel, event["type"], event["message"])
            print(f"published {event['type']} {event['message']['eventId']}", flush=True)
    finally:
        connection.close()


if __name__ == "__main__":
    main()
