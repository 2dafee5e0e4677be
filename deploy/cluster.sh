#!/usr/bin/env bash
# A local cluster on loopback, without Docker: three RabbitMQ nodes clustered together and a
# PostgreSQL 15 primary with a streaming standby (pg_basebackup -R). The same conventions as
# deploy/infra.sh (root, runuser for PostgreSQL, Debian packages installed when missing), on ports
# of its own, so both can run at once. For failover tests, benchmarks and the runbook.
#
#   deploy/cluster.sh start                  install if needed, start everything (idempotent), print connection settings
#   deploy/cluster.sh install                install PostgreSQL 15 and RabbitMQ from Debian's packages if missing
#   deploy/cluster.sh status                 each server and its role; exit 0 when all answer
#   deploy/cluster.sh stop                   stop everything (the data stays; `start` brings it back)
#   deploy/cluster.sh destroy                stop everything and delete the data directory
#   deploy/cluster.sh env                    print the export lines the service and the tests read
#   deploy/cluster.sh rabbit-kill N          kill -9 RabbitMQ node N (1-3)
#   deploy/cluster.sh rabbit-start N         start node N again (it rejoins the cluster by itself)
#   deploy/cluster.sh rabbit-leader QUEUE [VHOST]       print the number of the node leading quorum queue QUEUE
#   deploy/cluster.sh rabbit-kill-leader QUEUE [VHOST]  kill -9 that node; prints its number
#   deploy/cluster.sh rabbitmqctl N ARGS     run rabbitmqctl against node N
#   deploy/cluster.sh pg-stop-primary        stop the primary (fast shutdown); the standby keeps waiting
#   deploy/cluster.sh pg-kill-primary        kill -9 the primary's postmaster
#   deploy/cluster.sh pg-promote             promote the standby (pg_ctl promote): it becomes the primary
#   deploy/cluster.sh pg-failover            pg-stop-primary then pg-promote
#   deploy/cluster.sh pg-rebuild-standby     make the stopped server a fresh standby of the current primary
#   deploy/cluster.sh pg-primary             print the port of the current primary
#
# Must run as root (PostgreSQL runs as the postgres user through runuser). Everything is
# overridable; defaults keep clear of deploy/infra.sh's (55432, 55672-55674, 54369):
#   WEBHOOKS_CLUSTER_DIR            /tmp/webhook-dispatcher-cluster
#   WEBHOOKS_CLUSTER_PG_PORT        53432   the first PostgreSQL server (the primary at first)
#   WEBHOOKS_CLUSTER_PG_PORT2       53433   the second (the standby at first)
#   WEBHOOKS_CLUSTER_AMQP_PORT      53672   node N listens on AMQP_PORT + N - 1 (53672-53674)
#   WEBHOOKS_CLUSTER_MGMT_PORT      53682   node N's management console on MGMT_PORT + N - 1
#   WEBHOOKS_CLUSTER_DIST_PORT      53692   node N's Erlang distribution port on DIST_PORT + N - 1
#   WEBHOOKS_CLUSTER_EPMD_PORT      53369   the nodes' shared epmd
#   RABBITMQ_CTL_DIST_PORT_MIN/MAX  53700/53710  rabbitmqctl's own distribution ports
# The nodes are named webhooks1@localhost … webhooks3@localhost.
set -euo pipefail

DIR=${WEBHOOKS_CLUSTER_DIR:-/tmp/webhook-dispatcher-cluster}
PG_PORTS=("${WEBHOOKS_CLUSTER_PG_PORT:-53432}" "${WEBHOOKS_CLUSTER_PG_PORT2:-53433}")
AMQP_BASE=${WEBHOOKS_CLUSTER_AMQP_PORT:-53672}
MGMT_BASE=${WEBHOOKS_CLUSTER_MGMT_PORT:-53682}
DIST_BASE=${WEBHOOKS_CLUSTER_DIST_PORT:-53692}
EPMD_PORT=${WEBHOOKS_CLUSTER_EPMD_PORT:-53369}
export RABBITMQ_CTL_DIST_PORT_MIN=${RABBITMQ_CTL_DIST_PORT_MIN:-53700}
export RABBITMQ_CTL_DIST_PORT_MAX=${RABBITMQ_CTL_DIST_PORT_MAX:-53710}
NODES=(1 2 3)
PG_BIN=/usr/lib/postgresql/15/bin
RABBIT_BIN=/usr/lib/rabbitmq/bin
PLUGINS="rabbitmq_management rabbitmq_shovel rabbitmq_shovel_management"

log() { echo "[cluster] $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "deploy/cluster.sh must run as root (it starts PostgreSQL as the postgres user)"

install_missing() {
  local pkgs=()
  [ -x "$PG_BIN/postgres" ] || pkgs+=(postgresql-15)
  [ -x "$RABBIT_BIN/rabbitmq-server" ] || pkgs+=(rabbitmq-server)
  if [ ${#pkgs[@]} -gt 0 ]; then
    log "installing ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
}

# ---------------------------------------------------------------- RabbitMQ

amqp_port() { echo $((AMQP_BASE + $1 - 1)); }
mgmt_port() { echo $((MGMT_BASE + $1 - 1)); }

check_node() { case "${1:-}" in 1|2|3) ;; *) die "node must be 1, 2 or 3 (got '${1:-}')" ;; esac; }

# The environment of node $1, for the server and for rabbitmqctl. One HOME (one .erlang.cookie) for all.
rabbit_env() {
  local n=$1 base="$DIR/rabbitmq/node$1"
  export HOME="$DIR/rabbitmq"
  export RABBITMQ_NODENAME="webhooks$n@localhost"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT; RABBITMQ_NODE_PORT=$(amqp_port "$n")
  export RABBITMQ_DIST_PORT=$((DIST_BASE + n - 1))
  export ERL_EPMD_ADDRESS=127.0.0.1
  export ERL_EPMD_PORT=$EPMD_PORT
  export RABBITMQ_MNESIA_BASE="$base/mnesia"
  export RABBITMQ_LOG_BASE="$base/log"
  export RABBITMQ_PID_FILE="$base/rabbit.pid"
  export RABBITMQ_CONFIG_FILE="$base/rabbitmq.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins"
  export ERL_CRASH_DUMP="$base/erl_crash.dump"
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

ctl() { local n=$1; shift; (rabbit_env "$n"; "$RABBIT_BIN/rabbitmqctl" "$@"); }
rabbit_running() { ctl "$1" -q ping >/dev/null 2>&1; }

# Starts node $1 in the background (no wait). Writes its configuration on first start.
launch_rabbit() {
  local n=$1
  (
    rabbit_env "$n"
    mkdir -p "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
    if [ ! -f "$HOME/.erlang.cookie" ]; then
      head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$HOME/.erlang.cookie"
      chmod 400 "$HOME/.erlang.cookie"
    fi
    cat >"$RABBITMQ_CONFIG_FILE" <<CONF
listeners.tcp.default = 127.0.0.1:$(amqp_port "$n")
management.tcp.ip = 127.0.0.1
management.tcp.port = $(mgmt_port "$n")
loopback_users = none
cluster_partition_handling = pause_minority
CONF
    echo "[${PLUGINS// /,}]." >"$RABBITMQ_ENABLED_PLUGINS_FILE"
    rm -f "$RABBITMQ_PID_FILE"  # left behind by a node that was killed
    # 9>&-: the server must not inherit the command lock (it would hold it for its lifetime).
    nohup "$RABBIT_BIN/rabbitmq-server" >>"$RABBITMQ_LOG_BASE/stdout.log" 2>&1 9>&- &
  )
}

wait_rabbit() {
  local n=$1
  if ! (rabbit_env "$n"; "$RABBIT_BIN/rabbitmqctl" -q wait --timeout 120 "$RABBITMQ_PID_FILE" >/dev/null 2>&1); then
    log "RabbitMQ node $n did not start; last lines of $DIR/rabbitmq/node$n/log/stdout.log:"
    tail -n 15 "$DIR/rabbitmq/node$n/log/stdout.log" >&2
    exit 1
  fi
}

start_rabbit_node() {
  local n=$1
  if rabbit_running "$n"; then return; fi
  launch_rabbit "$n"
  wait_rabbit "$n"
  log "RabbitMQ node $n (webhooks$n@localhost) on 127.0.0.1:$(amqp_port "$n"), console http://127.0.0.1:$(mgmt_port "$n")"
}

in_cluster() { ctl 1 -q cluster_status --formatter json 2>/dev/null | grep -q "\"webhooks$1@localhost\""; }

start_rabbit() {
  mkdir -p "$DIR/rabbitmq"
  # Nodes that were clustered before wait for each other at boot: launch them all, then wait.
  local n
  for n in "${NODES[@]}"; do rabbit_running "$n" || launch_rabbit "$n"; done
  for n in "${NODES[@]}"; do wait_rabbit "$n"; done
  for n in 2 3; do
    if ! in_cluster "$n"; then
      log "joining webhooks$n@localhost to webhooks1@localhost"
      ctl "$n" -q stop_app >/dev/null
      ctl "$n" -q join_cluster webhooks1@localhost >/dev/null
      ctl "$n" -q start_app >/dev/null
    fi
  done
  for n in "${NODES[@]}"; do
    log "RabbitMQ node $n (webhooks$n@localhost) on 127.0.0.1:$(amqp_port "$n"), console http://127.0.0.1:$(mgmt_port "$n") (guest/guest)"
  done
}

rabbit_pid() { cat "$DIR/rabbitmq/node$1/rabbit.pid" 2>/dev/null || true; }

kill_rabbit() {
  local n=$1 pid
  pid=$(rabbit_pid "$n")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || die "RabbitMQ node $n is not running"
  kill -9 "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  log "RabbitMQ node $n killed (pid $pid)"
}

# The node number leading quorum queue $1 in virtual host $2, asked of any node that answers.
queue_leader() {
  local queue=$1 vhost=${2:-/} n leader
  for n in "${NODES[@]}"; do
    rabbit_running "$n" || continue
    leader=$(ctl "$n" -q list_queues -p "$vhost" name leader --no-table-headers 2>/dev/null |
      awk -F'\t' -v q="$queue" '$1 == q { print $2 }')
    if [[ "$leader" =~ ^webhooks([0-9])@ ]]; then echo "${BASH_REMATCH[1]}"; return; fi
  done
  die "no node knows a leader of queue '$queue' in virtual host '$vhost'"
}

stop_rabbit() {
  local n pid
  for n in "${NODES[@]}"; do
    if rabbit_running "$n"; then
      ctl "$n" -q shutdown >/dev/null 2>&1 || true
      log "RabbitMQ node $n stopped"
    else
      # A node killed or hung: end it by its own pid file, nothing else.
      pid=$(rabbit_pid "$n")
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; log "RabbitMQ node $n killed (did not answer)"; fi
    fi
  done
  # The epmd on this cluster's own port, which the first node started.
  epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- PostgreSQL

# The two servers: data directories a (PG_PORTS[0]) and b (PG_PORTS[1]); whichever has no
# standby.signal is the primary.
pg_dir() { echo "$DIR/pg/$1"; }
pg_port() { case "$1" in a) echo "${PG_PORTS[0]}" ;; b) echo "${PG_PORTS[1]}" ;; esac; }
pg_ctl() { runuser -u postgres -- "$PG_BIN/pg_ctl" "$@"; }
pg_running() { [ -f "$(pg_dir "$1")/postmaster.pid" ] && pg_ctl -D "$(pg_dir "$1")" status >/dev/null 2>&1; }
pg_is_standby() { [ -f "$(pg_dir "$1")/standby.signal" ]; }
psql_at() { local port=$1; shift; runuser -u postgres -- psql -h 127.0.0.1 -p "$port" -U postgres "$@"; }

pg_start() {
  local s=$1
  pg_running "$s" && return
  pg_ctl -D "$(pg_dir "$s")" -l "$DIR/pg/$s.log" -w start >/dev/null 9>&-  # not the command lock (see launch_rabbit)
}

# The server that is (or will be) the primary: the one without standby.signal.
pg_primary() {
  local s
  for s in a b; do
    if [ -f "$(pg_dir "$s")/PG_VERSION" ] && ! pg_is_standby "$s"; then echo "$s"; return; fi
  done
}
pg_other() { [ "$1" = a ] && echo b || echo a; }

# Settings of server $1 that differ between the two (a base backup copies postgresql.conf).
pg_own_conf() {
  local s=$1
  cat >"$(pg_dir "$s")/conf.d.local" <<CONF
port = $(pg_port "$s")
unix_socket_directories = '$DIR/pg/$s.sock'
CONF
  mkdir -p "$DIR/pg/$s.sock"
  chown postgres "$(pg_dir "$s")/conf.d.local" "$DIR/pg/$s.sock"
}

init_primary() {
  local s=a d
  d=$(pg_dir "$s")
  runuser -u postgres -- "$PG_BIN/initdb" -D "$d" -U postgres --auth=trust -E UTF8 >/dev/null
  cat >>"$d/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
max_connections = 200
fsync = on
wal_level = replica
max_wal_senders = 10
wal_keep_size = '256MB'
hot_standby = on
include_if_exists = 'conf.d.local'
CONF
  pg_own_conf "$s"
  pg_start "$s"
  psql_at "$(pg_port "$s")" -qc "CREATE ROLE webhooks LOGIN SUPERUSER PASSWORD 'webhooks'"
}

# Makes server $1 a fresh standby of the running primary: pg_basebackup -R (standby.signal and
# primary_conninfo written for it), then starts it.
make_standby() {
  local s=$1 primary d
  primary=$(pg_primary)
  [ -n "$primary" ] && [ "$primary" != "$s" ] && pg_running "$primary" || die "no running primary to copy"
  d=$(pg_dir "$s")
  pg_running "$s" && die "server $s (port $(pg_port "$s")) is running; stop it first"
  rm -rf "$d"
  runuser -u postgres -- "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$(pg_port "$primary")" -U postgres -D "$d" -R -X stream -c fast
  pg_own_conf "$s"
  pg_start "$s"
  log "PostgreSQL standby on 127.0.0.1:$(pg_port "$s"), streaming from 127.0.0.1:$(pg_port "$primary")"
}

start_pg() {
  mkdir -p "$DIR/pg"
  chown postgres "$DIR/pg"
  [ -f "$(pg_dir a)/PG_VERSION" ] || init_primary
  local primary standby
  primary=$(pg_primary)
  [ -n "$primary" ] || die "neither server is a primary (both have standby.signal); promote one: deploy/cluster.sh pg-promote"
  standby=$(pg_other "$primary")
  pg_start "$primary"
  log "PostgreSQL primary on 127.0.0.1:$(pg_port "$primary")"
  if [ ! -f "$(pg_dir "$standby")/PG_VERSION" ] || [ -f "$(pg_dir "$standby")/needs.rebuild" ]; then
    # Never made, or an old primary whose timeline ended at a promotion: a fresh copy.
    make_standby "$standby"
  elif pg_is_standby "$standby"; then
    pg_start "$standby"
    log "PostgreSQL standby on 127.0.0.1:$(pg_port "$standby")"
  else
    # Two primaries: the standby was promoted while the old primary was away. The old one's
    # timeline has ended; it comes back as a standby of the new one only when rebuilt.
    log "PostgreSQL 127.0.0.1:$(pg_port "$standby") is an old primary; not started (deploy/cluster.sh pg-rebuild-standby)"
  fi
}

# The running primary's server letter, or nothing.
running_primary() {
  local s
  for s in a b; do
    pg_running "$s" || continue
    [ "$(psql_at "$(pg_port "$s")" -tAc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ] && { echo "$s"; return; }
  done
}

pg_stop_primary() {
  local s
  s=$(running_primary)
  [ -n "$s" ] || die "no primary is running"
  pg_ctl -D "$(pg_dir "$s")" -m "${1:-fast}" -w stop >/dev/null
  log "PostgreSQL primary 127.0.0.1:$(pg_port "$s") stopped"
}

pg_kill_primary() {
  local s pid
  s=$(running_primary)
  [ -n "$s" ] || die "no primary is running"
  pid=$(head -n 1 "$(pg_dir "$s")/postmaster.pid")
  kill -9 "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  log "PostgreSQL primary 127.0.0.1:$(pg_port "$s") killed (pid $pid)"
}

pg_promote() {
  local s
  for s in a b; do
    if pg_running "$s" && pg_is_standby "$s"; then
      pg_ctl -D "$(pg_dir "$s")" -w promote >/dev/null
      log "PostgreSQL 127.0.0.1:$(pg_port "$s") promoted: it is the primary"
      # The stopped old primary must never start as a second primary: mark it to be rebuilt.
      local old; old=$(pg_other "$s")
      if ! pg_running "$old" && [ -f "$(pg_dir "$old")/PG_VERSION" ]; then
        touch "$(pg_dir "$old")/standby.signal"
        touch "$(pg_dir "$old")/needs.rebuild"
      fi
      return
    fi
  done
  die "no running standby to promote"
}

pg_rebuild_standby() {
  local s primary
  primary=$(running_primary)
  [ -n "$primary" ] || die "no primary is running"
  s=$(pg_other "$primary")
  pg_running "$s" && pg_ctl -D "$(pg_dir "$s")" -m fast -w stop >/dev/null
  make_standby "$s"
}

stop_pg() {
  local s
  for s in a b; do
    if pg_running "$s"; then
      pg_ctl -D "$(pg_dir "$s")" -m fast -w stop >/dev/null
      log "PostgreSQL 127.0.0.1:$(pg_port "$s") stopped"
    fi
  done
}

# ---------------------------------------------------------------- commands

print_env() {
  local hosts="127.0.0.1:${PG_PORTS[0]},127.0.0.1:${PG_PORTS[1]}" nodes=""
  local n
  for n in "${NODES[@]}"; do nodes+="${nodes:+,}127.0.0.1:$(amqp_port "$n")"; done
  cat <<ENV
export ConnectionStrings__Postgres="Host=$hosts;Database=webhooks;Username=webhooks;Password=webhooks;Target Session Attributes=primary;Host Recheck Seconds=1"
export ConnectionStrings__RabbitMq="amqp://guest:guest@$nodes/"
export WEBHOOKS_CLUSTER_DIR="$DIR"
ENV
}

status() {
  local ok=0 n s role
  for n in "${NODES[@]}"; do
    if rabbit_running "$n"; then log "RabbitMQ node $n: running on 127.0.0.1:$(amqp_port "$n")"; else log "RabbitMQ node $n: down"; ok=1; fi
  done
  for s in a b; do
    if pg_running "$s"; then
      role=$([ "$(psql_at "$(pg_port "$s")" -tAc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ] && echo primary || echo standby)
      log "PostgreSQL 127.0.0.1:$(pg_port "$s"): running, $role"
    else
      log "PostgreSQL 127.0.0.1:$(pg_port "$s"): down"; ok=1
    fi
  done
  return $ok
}

# One command that changes the cluster at a time (a test may call `start` while .ci/run's runs).
case "${1:-start}" in
  env|status|rabbitmqctl|rabbit-leader|pg-primary|install) ;;
  *) exec 9>"$DIR.lock"; flock 9 ;;
esac

case "${1:-start}" in
  install) install_missing ;;
  start)
    install_missing
    start_pg
    start_rabbit
    print_env
    ;;
  status) status ;;
  stop) stop_rabbit; stop_pg ;;
  destroy) stop_rabbit; stop_pg; rm -rf "$DIR"; log "removed $DIR" ;;
  env) print_env ;;
  rabbit-kill) check_node "${2:-}"; kill_rabbit "$2" ;;
  rabbit-start) check_node "${2:-}"; start_rabbit_node "$2" ;;
  rabbit-leader) [ -n "${2:-}" ] || die "usage: $0 rabbit-leader QUEUE [VHOST]"; queue_leader "$2" "${3:-/}" ;;
  rabbit-kill-leader)
    [ -n "${2:-}" ] || die "usage: $0 rabbit-kill-leader QUEUE [VHOST]"
    leader=$(queue_leader "$2" "${3:-/}")
    kill_rabbit "$leader"
    echo "$leader"
    ;;
  rabbitmqctl) check_node "${2:-}"; n=$2; shift 2; rabbit_env "$n"; exec "$RABBIT_BIN/rabbitmqctl" "$@" ;;
  pg-stop-primary) pg_stop_primary fast ;;
  pg-kill-primary) pg_kill_primary ;;
  pg-promote) pg_promote ;;
  pg-failover) pg_stop_primary fast; pg_promote ;;
  pg-rebuild-standby) pg_rebuild_standby ;;
  pg-primary) s=$(running_primary); [ -n "$s" ] || die "no primary is running"; pg_port "$s" ;;
  *)
    echo "usage: $0 install|start|status|stop|destroy|env|rabbit-kill N|rabbit-start N|rabbit-leader QUEUE [VHOST]|rabbit-kill-leader QUEUE [VHOST]|rabbitmqctl N ARGS|pg-stop-primary|pg-kill-primary|pg-promote|pg-failover|pg-rebuild-standby|pg-primary" >&2
    exit 2
    ;;
esac
