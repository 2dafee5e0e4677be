#!/usr/bin/env python3
"""Verify Notely webhooks in Python with the standard library only.

Two signatures come with every request (docs/webhooks.md):
  * webhook-id / webhook-timestamp / webhook-signature (Standard Webhooks): HMAC-SHA256 over
    "{id}.{timestamp}.{body}" keyed with the base64-decoded part of the secret after "whsec_",
    sent as one or more space-separated "v1,<base64>" entries (several during a secret rotation);
    the timestamp must be within 5 minutes of now. Verify this one: it also stops replays.
  * X-Webhook-Signature: "sha256=" + hex HMAC-SHA256 of the body keyed with the UTF-8 bytes of the
    whole secret (the original Notely scheme). It carries the newest secret only.
A webhook whose signature_scheme is "ed25519" or "both" also signs "{id}.{timestamp}.{body}" with
Ed25519: "v1a,<base64>" entries in webhook-signature, verified with the webhook's public key
"whpk_<base64 of 32 bytes>" (PyNaCl: pip install pynacl, or Debian's python3-nacl). Give the public
key where a secret goes; with only public keys, no HMAC is checked.

Run as a receiver:  WEBHOOK_SECRET=whsec_... PORT=5099 python3 verify_webhook.py
(WEBHOOK_SECRET may hold several secrets or whpk_ public keys separated by spaces or commas, e.g.
old and new during a rotation.) It answers 200 {"ok": true, ...} to a verified POST and 401 {"ok": false, "reason": ...}
otherwise, and prints "listening on http://127.0.0.1:<port>" once ready.
"""
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 5 * 60


class WebhookVerificationError(Exception):
    """The request is not a genuine, fresh Notely webhook; str(error) says why."""


def _standard_key(secret):
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):], validate=True)
    return secret.encode("utf-8")


def verify_standard(secrets, headers, body, now=None, tolerance=TOLERANCE_SECONDS):
    """Checks the Standard Webhooks headers against the raw body bytes; raises WebhookVerificationError.

    headers: a mapping with lower-case names. Returns the webhook-id (use it to drop duplicates).
    """
    webhook_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signature_header = headers.get("webhook-signature")
    if not webhook_id or not timestamp or not signature_header:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        raise WebhookVerificationError("webhook-timestamp is not unix seconds")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance (stale or replayed request)")
    signed = f"{webhook_id}.{timestamp}.".encode("utf-8") + body
    candidates = [entry[3:] for entry in signature_header.split() if entry.startswith("v1,")]
    asymmetric = [entry[4:] for entry in signature_header.split() if entry.startswith("v1a,")]
    for key in (s for s in secrets if s.startswith("whpk_")):
        if any(_ed25519_verifies(key, signed, candidate) for candidate in asymmetric):
            return webhook_id
    for secret in (s for s in secrets if not s.startswith("whpk_")):
        expected = base64.b64encode(hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()).decode("ascii")
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return webhook_id
    raise WebhookVerificationError("no webhook-signature entry matches (wrong secret or changed body)")


def _ed25519_verifies(public_key, signed, signature):
    """Whether signature (base64) is public_key's ("whpk_<base64>") Ed25519 signature of signed."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey
    try:
        VerifyKey(base64.b64decode(public_key[len("whpk_"):], validate=True)).verify(
            signed, base64.b64decode(signature, validate=True))
        return True
    except (BadSignatureError, binascii.Error, ValueError):
        return False


def verify_legacy(secrets, headers, body):
    """Checks X-Webhook-Signature (sha256=<hex>); raises WebhookVerificationError."""
    header = headers.get("x-webhook-signature", "")
    for secret in (s for s in secrets if not s.startswith("whpk_")):
        expected = "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, header):
            return
    raise WebhookVerificationError("X-Webhook-Signature does not match (wrong secret or changed body)")


def secrets_from_env():
    return [s for s in re.split(r"[\s,]+", os.environ.get("WEBHOOK_SECRET", "")) if s]


class Handler(BaseHTTPRequestHandler):
    secrets = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))  # the raw bytes: verify before parsing
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            webhook_id = verify_standard(self.secrets, headers, body)
        except (WebhookVerificationError, binascii.Error) as error:
            return self._answer(401, {"ok": False, "reason": str(error)})
        try:
            verify_legacy(self.secrets, headers, body)
            legacy = True
        except WebhookVerificationError:
            legacy = False  # expected while a rotation is under way and this receiver has the old secret only
        # Verified: the body is ours. A subscription with a template may send something other than
        # the event's JSON (plain text, a Slack message), so parse only a JSON body; the event type
        # is in X-Webhook-Event whatever the body.
        event = None
        if re.match(r"application/([\w.+-]+\+)?json\b", headers.get("content-type", ""), re.IGNORECASE):
            try:
                event = json.loads(body)
            except ValueError:
                event = None  # a template's own JSON that does not parse: still a verified delivery
        event_type = event.get("event_type") if isinstance(event, dict) else None
        self._answer(200, {"ok": True, "webhook_id": webhook_id, "event_type": event_type or headers.get("x-webhook-event"),
                           "webhook_signature": True, "x_webhook_signature": legacy})

    def _answer(self, status, document):
        data = json.dumps(document).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    Handler.secrets = secrets_from_env()
    if not Handler.secrets:
        sys.exit("set WEBHOOK_SECRET to the subscription's secret (whsec_...)")
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "5099"))), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
