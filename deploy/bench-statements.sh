#!/usr/bin/env bash
# What PostgreSQL spends on one delivery's rows, statement shape by statement shape, without the
# rest of the pipeline: pgbench runs each variant in deploy/bench-statements/ (one transaction =
# 20 deliveries of one subscription: fan-out insert, claim, record of a 200) for --seconds with
# two clients, on a fresh copy of a database that a pipeline run left (the real schema, its
# partitions and indexes, about 27,500 rows). Prints per run: deliveries/s, PostgreSQL's CPU-µs
# per delivery (every postgres process, and what the postmaster reaped from ended backends),
# WAL bytes per delivery, and updates / HOT updates. Variants alternate round by round.
# docs/benchmarks/pipeline.md ("What one delivery's rows cost PostgreSQL") explains the variants.
#
#   deploy/bench-statements.sh                                  makes its source database with a short pipeline run
#   deploy/bench-statements.sh --source webhooks_load_…         a database kept by WEBHOOKS_KEEP_DB=1 deploy/bench-pipeline.sh
#   deploy/bench-statements.sh --variants current,noclaim --rounds 5 --seconds 30
set -euo pipefail
cd "$(dirname "$0")/.."
VARIANTS=current,hotclaim,nolock,noclaim,split
ROUNDS=3
SECONDS_PER_RUN=20
SOURCE=
while [ $# -gt 0 ]; do
  case "$1" in
    --variants) VARIANTS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --source) SOURCE=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
infra_env=$(deploy/infra.sh start)  # not inside eval: its failure must stop the script
eval "$infra_env"
PG_PORT=${WEBHOOKS_PG_PORT:-55432}
PG_DATA=${WEBHOOKS_INFRA_DIR:-/tmp/webhook-dispatcher-infra}/pg/data
export PGPASSWORD=webhooks
psql_() { psql -h 127.0.0.1 -p "$PG_PORT" -U webhooks -v ON_ERROR_STOP=1 -q "$@"; }
if [ -z "$SOURCE" ]; then
  SOURCE=$(WEBHOOKS_KEEP_DB=1 deploy/bench-pipeline.sh --scenarios warmup,1to1 --runs 1 --calibrations none 2>&1 >/dev/null \
    | sed -n 's/^kept database \([^ ]*\) and vhost \(.*\)$/\1 \2/p')
  VHOST=${SOURCE#* }; SOURCE=${SOURCE% *}
  [ -n "$SOURCE" ] || { echo "the pipeline run kept no database" >&2; exit 1; }
  deploy/infra.sh rabbitmqctl delete_vhost "$VHOST" >/dev/null 2>&1 || true
  echo "source database: $SOURCE (made now; dropped at the end)"
  trap 'runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "DROP DATABASE IF EXISTS $SOURCE WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
fi
SUB=$(psql_ -d "$SOURCE" -Atc "SELECT id FROM webhook_subscriptions WHERE is_active AND deleted_at IS NULL ORDER BY created_at LIMIT 1")
PAYLOAD=$(psql_ -d "$SOURCE" -Atc "SELECT payload FROM webhook_deliveries WHERE payload IS NOT NULL LIMIT 1")
POSTMASTER=$(head -1 "$PG_DATA/postmaster.pid")
cpu_ticks() {
  local t=0 p f
  for p in $(pgrep -u postgres -x postgres); do
    f=$(cut -d' ' -f14-17 "/proc/$p/stat" 2>/dev/null) || continue
    set -- $f
    t=$((t + $1 + $2))
    [ "$p" = "$POSTMASTER" ] && t=$((t + $3 + $4))
  done
  echo "$t"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))
echo "| round | variant | deliveries/s | PostgreSQL CPU-µs/delivery | WAL bytes/delivery | updates / HOT |"
echo "|---|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
  for v in ${VARIANTS//,/ }; do
    db="bench_statements_$v"
    psql_ -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db TEMPLATE $SOURCE"
    [ -f "deploy/bench-statements/$v.ddl" ] && psql_ -d "$db" -f "deploy/bench-statements/$v.ddl"
    psql_ -d "$db" -c "VACUUM ANALYZE" -c "CHECKPOINT"
    lsn0=$(psql_ -d "$db" -Atc "SELECT pg_current_wal_lsn()"); c0=$(cpu_ticks)
    out=$(pgbench -h 127.0.0.1 -p "$PG_PORT" -U webhooks -n -M extended -c 2 -j 2 -T "$SECONDS_PER_RUN" \
      -f "deploy/bench-statements/$v.sql" -D "sub=$SUB" -D "dispatcher=$(cat /proc/sys/kernel/random/uuid)" -D "pay=$PAYLOAD" "$db" 2>&1) \
      || { echo "$out" >&2; exit 1; }
    sleep 1; c1=$(cpu_ticks)
    lsn1=$(psql_ -d "$db" -Atc "SELECT pg_current_wal_lsn()")
    tx=$(echo "$out" | awk '/number of transactions actually processed/ {split($NF, a, "/"); print a[1]}')
    n=$((tx * 20))
    wal=$(psql_ -d "$db" -Atc "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint")
    upd=$(psql_ -d "$db" -Atc "SELECT sum(n_tup_upd) || ' / ' || sum(n_tup_hot_upd) FROM pg_stat_user_tables
                               WHERE relname LIKE 'webhook_deliveries_2%' OR relname = 'webhook_work'")
    echo "| $round | $v | $((n / SECONDS_PER_RUN)) | $(((c1 - c0) * TICK_US / (n > 0 ? n : 1))) | $((wal / (n > 0 ? n : 1))) | $upd |"
    psql_ -d postgres -c "DROP DATABASE $db"
  done
done
