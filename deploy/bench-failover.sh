#!/usr/bin/env bash
# The failover benchmark (docs/benchmarks/failover.md): two dispatcher replicas deliver events
# published at a fixed rate to two subscriptions while, one after another, a replica is killed
# with -9 (and started again), the broker loses a node, and the database fails over; then it
# reports deliveries lost, POSTs repeated, and each fault's slowest delivery (deploy/bench-failover.js).
#
#   deploy/bench-failover.sh [cluster|single] [--rate N] [--seconds N] [--answer-delay-ms N] [--quick]
#
#   cluster  (default) on deploy/cluster.sh: the RabbitMQ node leading webhook-fan-out is killed
#            with -9 and started again 25 s later; the PostgreSQL primary is stopped and the standby
#            promoted. The cluster is put back in order afterwards (node started, standby rebuilt).
#   single   on deploy/infra.sh (one node of each): RabbitMQ's application is stopped and started
#            (3 s away); PostgreSQL is restarted.
#   --answer-delay-ms N   the receiver answers N ms after the request (default 0), so attempts are
#            in flight when the replica is killed
#   --quick  60 s at the given rate, faults at 15/30/45 s (a smoke run, not a figure for the report).
#
# Defaults: 200 events/s for 180 s; faults at 30 s (replica 1 killed, started again at 40 s),
# 75 s (broker) and 130 s (database). The replicas listen on 127.0.0.1:$WEBHOOKS_BENCH_PORT and +1
# (5281, 5282), the receiver on +10 (5291); the run's files go to $WEBHOOKS_BENCH_DIR
# (/tmp/webhook-dispatcher-bench-failover/<time>). Each run has a database and a virtual host of
# its own, removed at the end. Needs root (deploy/cluster.sh, deploy/infra.sh), .NET and Node.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=cluster RATE=200 SECONDS_=180 QUICK= ANSWER_DELAY_MS=0
while [ $# -gt 0 ]; do
  case "$1" in
    cluster|single) MODE=$1 ;;
    --rate) RATE=$2; shift ;;
    --seconds) SECONDS_=$2; shift ;;
    --answer-delay-ms) ANSWER_DELAY_MS=$2; shift ;;
    --quick) QUICK=1; SECONDS_=60 ;;
    *) echo "usage: $0 [cluster|single] [--rate N] [--seconds N] [--answer-delay-ms N] [--quick]" >&2; exit 2 ;;
  esac
  shift
done
PORT=${WEBHOOKS_BENCH_PORT:-5281}
RECEIVER_PORT=$((PORT + 10))
STAMP=$(date +%Y%m%d-%H%M%S)
RUN=${WEBHOOKS_BENCH_DIR:-/tmp/webhook-dispatcher-bench-failover}/$MODE-$STAMP
mkdir -p "$RUN"
log() { echo "[bench-failover] $*" >&2; }

if [ "$MODE" = cluster ]; then
  eval "$(deploy/cluster.sh start)"
  ctl() { deploy/cluster.sh rabbitmqctl 1 "$@" 2>/dev/null || deploy/cluster.sh rabbitmqctl 2 "$@"; }
else
  eval "$(deploy/infra.sh start)"
  ctl() { deploy/infra.sh rabbitmqctl "$@"; }
fi
DB="webhooks_bench_${STAMP//-/_}"
VHOST="bench-failover-$STAMP"
export ConnectionStrings__Postgres="${ConnectionStrings__Postgres/Database=webhooks;/Database=$DB;}"
BROKER="${ConnectionStrings__RabbitMq%/}"
export ConnectionStrings__RabbitMq="$BROKER/$VHOST"
export ASPNETCORE_ENVIRONMENT=Production Delivery__AllowPrivateNetworks=true
export Auth__SigningKey="bench-failover-signing-key-0123456789abcdef"
export Sealing__MainKey="YmVuY2gtZmFpbG92ZXItbWFpbi1rZXktMzItYnl0ZXM="
export Logging__LogLevel__Default=Warning

psql_primary() {
  if [ "$MODE" = cluster ]; then
    runuser -u postgres -- psql -h 127.0.0.1 -p "$(deploy/cluster.sh pg-primary)" -U postgres "$@"
  else
    runuser -u postgres -- psql -h 127.0.0.1 -p "${WEBHOOKS_PG_PORT:-55432}" -U postgres "$@"
  fi
}
psql_primary -qc "CREATE DATABASE $DB" >/dev/null
ctl -q add_vhost "$VHOST" >/dev/null
ctl -q set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null

log "building (Release)"
dotnet build -c Release services/WebhookDispatcher -o "$RUN/bin" -v q -nologo >"$RUN/build.log" 2>&1 || { tail -20 "$RUN/build.log"; exit 1; }
# Run from its own directory: its appsettings.json is read from there.
svc() { (cd "$RUN/bin" && dotnet WebhookDispatcher.dll "$@"); }
svc migrate >"$RUN/migrate.log" 2>&1
svc topology >"$RUN/topology.log" 2>&1

# replica.sh N: starts replica N (1 or 2) in the background with the run's settings; its pid in replicaN.pid.
cat >"$RUN/replica.sh" <<SH
#!/usr/bin/env bash
n=\$1
$(export -p | grep -E 'ConnectionStrings__|ASPNETCORE_ENVIRONMENT|Delivery__|Auth__|Sealing__|Logging__')
cd "$RUN/bin"
nohup dotnet WebhookDispatcher.dll --urls "http://127.0.0.1:\$(( $PORT + n - 1 ))" >>"$RUN/replica\$n.log" 2>&1 &
echo \$! >"$RUN/replica\$n.pid"
SH
chmod +x "$RUN/replica.sh"
"$RUN/replica.sh" 1
"$RUN/replica.sh" 2
cleanup() {
  for n in 1 2; do
    pid=$(cat "$RUN/replica$n.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  sleep 2
  if [ "$MODE" = cluster ]; then
    deploy/cluster.sh start >/dev/null 2>&1 || true
    [ "$(deploy/cluster.sh status 2>&1 | grep -c 'running, standby')" = 1 ] || deploy/cluster.sh pg-rebuild-standby >/dev/null 2>&1 || true
  fi
  psql_primary -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  ctl -q delete_vhost "$VHOST" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for n in 1 2; do
  until curl -sf "http://127.0.0.1:$((PORT + n - 1))/health/ready" >/dev/null; do
    kill -0 "$(cat "$RUN/replica$n.pid")" 2>/dev/null || { log "replica $n did not start:"; tail -20 "$RUN/replica$n.log" >&2; exit 1; }
    sleep 0.5
  done
done
log "replicas ready on 127.0.0.1:$PORT and :$((PORT + 1))"

USER_ID="bench-$STAMP"
TOKEN=$(svc token "$USER_ID" 2>/dev/null | tail -1)
for p in a b; do
  curl -sf -X POST "http://127.0.0.1:$PORT/api/webhooks" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"url\": \"http://127.0.0.1:$RECEIVER_PORT/$p\", \"event_types\": [\"email.received\"], \"description\": \"failover bench $p\"}" >/dev/null
done

# The faults, by time after the first publish.
if [ -n "$QUICK" ]; then T1=15 T2=30 T3=45; else T1=30 T2=75 T3=130; fi
KILL_REPLICA="[\"bash\", \"-c\", \"kill -9 \$(cat $RUN/replica1.pid)\"]"
START_REPLICA="[\"$RUN/replica.sh\", \"1\"]"
if [ "$MODE" = cluster ]; then
  BROKER_FAULT="{\"at\": $T2, \"name\": \"RabbitMQ node leading webhook-fan-out killed -9\", \"command\": [\"bash\", \"-c\", \"deploy/cluster.sh rabbit-kill-leader webhook-fan-out $VHOST > $RUN/killed-node\"]},
    {\"at\": $((T2 + 25)), \"name\": \"that node started again\", \"command\": [\"bash\", \"-c\", \"deploy/cluster.sh rabbit-start \$(tail -1 $RUN/killed-node)\"]}"
  DB_FAULT="{\"at\": $T3, \"name\": \"PostgreSQL primary stopped, standby promoted\", \"command\": [\"deploy/cluster.sh\", \"pg-failover\"]}"
  AMQP=$(echo "$BROKER" | sed -E 's#^amqp://([^@]*)@(.*)$#\1 \2#' | { read -r cred hosts; for h in ${hosts//,/ }; do printf '"amqp://%s@%s/%s",' "$cred" "$h" "$VHOST"; done; } | sed 's/,$//')
else
  BROKER_FAULT="{\"at\": $T2, \"name\": \"RabbitMQ application stopped and started (3 s away)\", \"command\": [\"bash\", \"-c\", \"deploy/infra.sh rabbitmqctl stop_app && sleep 3 && deploy/infra.sh rabbitmqctl start_app\"]}"
  DB_FAULT="{\"at\": $T3, \"name\": \"PostgreSQL restarted\", \"command\": [\"runuser\", \"-u\", \"postgres\", \"--\", \"/usr/lib/postgresql/15/bin/pg_ctl\", \"-D\", \"${WEBHOOKS_INFRA_DIR:-/tmp/webhook-dispatcher-infra}/pg/data\", \"-m\", \"fast\", \"-w\", \"restart\"]}"
  AMQP="\"$BROKER/$VHOST\""
fi
cat >"$RUN/config.json" <<JSON
{
  "amqp": [$AMQP],
  "userId": "$USER_ID", "paths": ["/a", "/b"], "receiverPort": $RECEIVER_PORT,
  "rate": $RATE, "seconds": $SECONDS_, "drainSeconds": 180, "answerDelayMs": $ANSWER_DELAY_MS,
  "faults": [
    {"at": $T1, "name": "dispatcher replica 1 killed -9", "command": $KILL_REPLICA},
    {"at": $((T1 + 10)), "name": "replica 1 started again", "command": $START_REPLICA},
    $BROKER_FAULT,
    $DB_FAULT
  ]
}
JSON
log "publishing $RATE events/s for $SECONDS_ s ($MODE); files in $RUN"
node deploy/bench-failover.js "$RUN/config.json" >"$RUN/report.json" 2> >(tee "$RUN/bench.log" >&2)
cat "$RUN/report.json"
