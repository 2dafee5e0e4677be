#!/usr/bin/env bash
# Quick start: shows the main job on real input. Starts PostgreSQL and RabbitMQ (installing them
# if missing), runs the dispatcher (Development: migrates the schema, allows 127.0.0.1 receivers),
# then the demo in docs/examples/QuickStartDemo: it subscribes a local receiver through the
# management API, publishes sample Notely events on RabbitMQ and prints each POST with the verdict
# on both signatures.
# The dispatcher's log is in $WEBHOOKS_INFRA_DIR/dispatcher.log (default /tmp/webhook-dispatcher-infra).
set -euo pipefail
cd "$(dirname "$0")/.."

infra_env=$(deploy/infra.sh start)  # not inside eval: its failure must stop the script
eval "$infra_env"
dotnet build WebhookDispatcher.sln -v quiet -nologo -clp:ErrorsOnly

log="${WEBHOOKS_INFRA_DIR:-/tmp/webhook-dispatcher-infra}/dispatcher.log"
ASPNETCORE_ENVIRONMENT=Development dotnet run --no-build --project services/WebhookDispatcher \
  --urls http://127.0.0.1:5080 >"$log" 2>&1 &
dispatcher=$!
trap 'kill $dispatcher 2>/dev/null; wait $dispatcher 2>/dev/null || true' EXIT

# Kestrel listens once migrations ran and the bus is connected.
up=false
for _ in $(seq 1 240); do
  if (exec 3<>/dev/tcp/127.0.0.1/5080) 2>/dev/null; then up=true; break; fi
  kill -0 "$dispatcher" 2>/dev/null || break
  sleep 0.5
done
if [ "$up" != true ]; then
  echo "The dispatcher did not start; last lines of $log:" >&2
  tail -20 "$log" >&2
  exit 1
fi
echo "Dispatcher running on http://127.0.0.1:5080 (log: $log)"

# A development token for the demo user (signed with the Development key; see README).
export DEMO_USER_ID="demo-$(date +%s)"
DEMO_TOKEN=$(ASPNETCORE_ENVIRONMENT=Development dotnet run --no-build --project services/WebhookDispatcher -- token "$DEMO_USER_ID")
export DEMO_TOKEN
dotnet run --no-build --project docs/examples/QuickStartDemo
