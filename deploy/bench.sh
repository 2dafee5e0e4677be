#!/usr/bin/env bash
# Management API latency benchmark (BenchmarkDotNet): create, get and list-100 over loopback
# against the whole service on a private PostgreSQL and RabbitMQ. Writes the BenchmarkDotNet
# report to BenchmarkDotNet.Artifacts/results/; docs/benchmarks/api.md holds the last recorded run.
set -euo pipefail
cd "$(dirname "$0")/.."
infra_env=$(deploy/infra.sh start)  # not inside eval: its failure must stop the script
eval "$infra_env"
PG_PORT=${WEBHOOKS_PG_PORT:-55432}
runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "DROP DATABASE IF EXISTS webhooks_bench WITH (FORCE)"
export ConnectionStrings__Postgres="${ConnectionStrings__Postgres/Database=webhooks;/Database=webhooks_bench;}"
[ $# -gt 0 ] || set -- --filter '*'
dotnet run -c Release --project tests/WebhookDispatcher.Benchmarks -- "$@"
