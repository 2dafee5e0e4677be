#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: starts (installing if needed) a private PostgreSQL
# and RabbitMQ on loopback, gives the run its own database and RabbitMQ virtual host, runs
# `dotnet test`, and ends with the totals alone on a line: "N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(deploy/infra.sh start)"

# A clean database and virtual host per run, so leftovers of an earlier run cannot interfere.
DB=webhooks_tests
VHOST=webhooks-tests
PG_PORT=${WEBHOOKS_PG_PORT:-55432}
runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
deploy/infra.sh rabbitmqctl delete_vhost "$VHOST" >/dev/null 2>&1 || true
deploy/infra.sh rabbitmqctl add_vhost "$VHOST" >/dev/null
deploy/infra.sh rabbitmqctl set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null
export ConnectionStrings__Postgres="${ConnectionStrings__Postgres/Database=webhooks;/Database=$DB;}"
export ConnectionStrings__RabbitMq="${ConnectionStrings__RabbitMq%/}/$VHOST"

log=$(mktemp)
set +e
dotnet test WebhookDispatcher.sln --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# VSTest ends each test project's run with "Total tests: N", then "Passed: N", "Failed: N",
# "Skipped: N" lines (the ones present); add them up over the projects.
read -r passed failed skipped < <(awk '
  /^Total tests: / { inside = 1; next }
  inside && /^ +Passed: / { p += $2; next }
  inside && /^ +Failed: / { f += $2; next }
  inside && /^ +Skipped: / { s += $2; next }
  inside && /^ +Total time: / { inside = 0 }
  END { print p + 0, f + 0, s + 0 }' "$log")
rm -f "$log"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi  # build or host failure: not green
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
