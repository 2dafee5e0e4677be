#!/usr/bin/env bash
# End-to-end pipeline load test (tests/WebhookDispatcher.LoadTest): the dispatcher's Release
# build runs as its own process(es) on the private PostgreSQL and RabbitMQ of deploy/infra.sh,
# with a fresh database and vhost; the load test publishes EmailReceived events with MassTransit
# and receives the webhooks on a local Kestrel. In the same run it calibrates the machine: a
# RabbitMQ quorum queue's messages/s, signed POSTs/s from HttpClient to the receiver, PostgreSQL
# rows/s in 50-row statements. Each scenario and calibration runs --runs times (default 3);
# prints markdown tables: every run, then medians (min–max) and the pipeline's rates as a share
# of the calibrations. docs/benchmarks/pipeline.md explains the method and how to read it.
#
#   deploy/bench-pipeline.sh                          all scenarios, 3 runs each, one dispatcher (about 40 minutes)
#   deploy/bench-pipeline.sh --quick                  warmup, 1to1, 1to10, rate500 with short runs: a smoke test (a few minutes)
#   deploy/bench-pipeline.sh --scenarios warmup,1to1,rate500 --runs 5 --stages
#   deploy/bench-pipeline.sh --scenarios warmup,1to1 --events 20000 --replicas 2 --out results.jsonl
#   WEBHOOKS_KEEP_DB=1 deploy/bench-pipeline.sh …   keep the database and vhost afterwards, to inspect them
#   WEBHOOKS_BENCH_DISPATCHER=/tmp/other/WebhookDispatcher.dll deploy/bench-pipeline.sh …   run another build of
#                                                     the dispatcher (a publish, an older tree) against this load generator
# Options: --runs N, --calibrations queue,post,rows|none, --rate-seconds S (20), --warmup-seconds S (15),
# --stages (after each fixed-rate scenario, where its latency went second by second), --dispatcher-env
# NAME=VALUE; besides the scenarios run by default: first, restart, rate500again, rate500newhost, and issue 14's
# hostile, hostileA, hostileB, backlog1 (docs/benchmarks/tenants.md).
set -euo pipefail
cd "$(dirname "$0")/.."
infra_env=$(deploy/infra.sh start)  # not inside eval: its failure must stop the script
eval "$infra_env"

RUN_ID="$(date +%s)_$$"
DB="webhooks_load_$RUN_ID"
VHOST="webhooks-load-$RUN_ID"
PG_PORT=${WEBHOOKS_PG_PORT:-55432}
cleanup() {
  [ -n "${WEBHOOKS_KEEP_DB:-}" ] && { echo "kept database $DB and vhost $VHOST" >&2; return; }
  runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  deploy/infra.sh rabbitmqctl delete_vhost "$VHOST" >/dev/null 2>&1 || true
}
trap cleanup EXIT
deploy/infra.sh rabbitmqctl add_vhost "$VHOST" >/dev/null
deploy/infra.sh rabbitmqctl set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null
export ConnectionStrings__Postgres="${ConnectionStrings__Postgres/Database=webhooks;/Database=$DB;}"
export ConnectionStrings__RabbitMq="${ConnectionStrings__RabbitMq%/}/$VHOST"

dotnet build -c Release -v quiet -nologo -clp:ErrorsOnly tests/WebhookDispatcher.LoadTest  # builds the service too
dotnet tests/WebhookDispatcher.LoadTest/bin/Release/net10.0/WebhookDispatcher.LoadTest.dll \
  --dispatcher "${WEBHOOKS_BENCH_DISPATCHER:-services/WebhookDispatcher/bin/Release/net10.0/WebhookDispatcher.dll}" \
  --logs "${WEBHOOKS_INFRA_DIR:-/tmp/webhook-dispatcher-infra}" "$@"
