#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: starts (installing if needed) a private PostgreSQL
# and RabbitMQ on loopback, gives the run its own database and RabbitMQ virtual host, runs
# `dotnet test`, and ends with the totals alone on a line: "N passed, N failed, N skipped".
#
# The run fails (exit status not 0) when a server cannot start, when the build fails, when any
# test fails, when fewer than MIN_TESTS tests ran (a renamed or missing test project, a filter
# that matches nothing), and, under CI=true, when any test was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# The number of tests this repository holds, less a little room; raise it as tests are added.
# A filter (`deploy/test.sh --filter …`) runs a subset on purpose, so it disables the floor.
MIN_TESTS=965
for arg in "$@"; do case "$arg" in --filter|--filter=*) MIN_TESTS=1 ;; esac; done

# What the tests run besides .NET: the Python and Node examples under docs/examples (pika from
# Debian, amqplib from npm) and the OpenAPI linter (tests/tools). Installed when missing, from the
# committed package-lock.json files.
# Debian's interpreter, where python3-pika installs (a pyenv python3 earlier on PATH would not see it).
export WEBHOOKS_PYTHON=/usr/bin/python3
missing=()
[ -x "$WEBHOOKS_PYTHON" ] || missing+=(python3)
"$WEBHOOKS_PYTHON" -c 'import pika' 2>/dev/null || missing+=(python3-pika)
command -v node >/dev/null || missing+=(nodejs npm)
[ -f /usr/share/zoneinfo/America/New_York ] || missing+=(tzdata)
# The portal's browser tests drive Debian's Chromium through Playwright (its own browser download
# needs the internet); Playwright's driver and its Node come inside the NuGet package.
[ -x "${WEBHOOKS_CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[test] installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# @redocly/cli (tests/tools) needs Node >= 20.19 and a fresh Debian 12 has Node 18. The Playwright
# NuGet package the browser tests use ships a Node of its own (24), so when the system's is older
# it goes first on PATH for npm and the npm tools (restoring the test project fetches it).
node_recent() { node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null; }
if [ -n "${WEBHOOKS_BUNDLED_NODE:-}" ] || ! node_recent; then
  dotnet restore tests/WebhookDispatcher.Tests/WebhookDispatcher.Tests.csproj --verbosity quiet >/dev/null
  bundled=$(ls -d "${NUGET_PACKAGES:-$HOME/.nuget/packages}"/microsoft.playwright/*/.playwright/node/linux-x64 2>/dev/null | sort -V | tail -1)
  [ -x "$bundled/node" ] || { echo "[test] Node is older than 20.19 and no bundled Node was found" >&2; exit 1; }
  export PATH="$bundled:$PATH"
  echo "[test] using Node $(node --version) from $bundled" >&2
fi
for dir in docs/examples/node tests/tools; do
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
done

# Not `eval "$(deploy/infra.sh start)"`: the exit status of a command substitution inside eval's
# argument is lost, so a server that failed to start would go unnoticed.
infra_env=$(deploy/infra.sh start)
eval "$infra_env"

# A database and virtual host of this run's own, so two runs on one machine never share state;
# both are removed when the run ends.
RUN_ID="$(date +%s)_$$"
DB="webhooks_tests_$RUN_ID"
VHOST="webhooks-tests-$RUN_ID"
PG_PORT=${WEBHOOKS_PG_PORT:-55432}
cleanup() {
  runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  # Tests that need a database of their own name it "${DB}_…" and drop it; a killed run leaves them.
  { runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
      "SELECT datname FROM pg_database WHERE starts_with(datname, '${DB}_')" 2>/dev/null || true; } | while read -r extra; do
    runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "DROP DATABASE IF EXISTS \"$extra\" WITH (FORCE)" >/dev/null 2>&1 || true
  done
  deploy/infra.sh rabbitmqctl delete_vhost "$VHOST" >/dev/null 2>&1 || true
  # Tests that run a dispatcher of their own give it "$VHOST-…" and remove it; a killed run leaves them.
  { deploy/infra.sh rabbitmqctl -q list_vhosts name 2>/dev/null | grep -F -- "$VHOST-" || true; } | while read -r extra; do
    deploy/infra.sh rabbitmqctl delete_vhost "$extra" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
deploy/infra.sh rabbitmqctl add_vhost "$VHOST" >/dev/null
deploy/infra.sh rabbitmqctl set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null
export ConnectionStrings__Postgres="${ConnectionStrings__Postgres/Database=webhooks;/Database=$DB;}"
export ConnectionStrings__RabbitMq="${ConnectionStrings__RabbitMq%/}/$VHOST"
# The management API of the same broker, for tests that act as an operator in the console.
export WEBHOOKS_RABBIT_MGMT_URL="http://127.0.0.1:${WEBHOOKS_RABBIT_MGMT_PORT:-55673}"
export WEBHOOKS_RABBIT_VHOST="$VHOST"
# Where infra.sh keeps the servers: the outage tests stop and start this PostgreSQL (as the
# postgres user, with pg_ctl, after checking that its port is the one in the connection string)
# and the broker's application (through deploy/infra.sh).
export WEBHOOKS_INFRA_DIR="${WEBHOOKS_INFRA_DIR:-/tmp/webhook-dispatcher-infra}"

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
total=$((passed + failed + skipped))
if [ "$total" -lt "$MIN_TESTS" ]; then
  echo "Only $total test(s) ran; this repository has at least $MIN_TESTS (deploy/test.sh MIN_TESTS)." >&2
  status=1
fi
if [ "${CI:-}" = true ] && [ "$skipped" -gt 0 ]; then
  echo "$skipped test(s) were skipped; under CI=true every test must run." >&2
  status=1
fi
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
