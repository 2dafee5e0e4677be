#!/usr/bin/env bash
# Starts, checks and stops a private PostgreSQL 15 and RabbitMQ on loopback, without Docker.
# Installs what a fresh Debian 12 machine lacks (postgresql-15, rabbitmq-server) on first use.
#
#   deploy/infra.sh start    install if needed, start both (idempotent), print connection settings
#   deploy/infra.sh status   exit 0 when both answer
#   deploy/infra.sh stop     stop both
#   deploy/infra.sh env      print the export lines the service and the tests read
#   deploy/infra.sh rabbitmqctl ARGS   run rabbitmqctl against the private node
#
# Must run as root (PostgreSQL is run as the postgres user through runuser).
# Ports and the data directory can be overridden: WEBHOOKS_INFRA_DIR (/tmp/webhook-dispatcher-infra),
# WEBHOOKS_PG_PORT (55432), WEBHOOKS_AMQP_PORT (55672), WEBHOOKS_RABBIT_MGMT_PORT (55673),
# WEBHOOKS_RABBIT_DIST_PORT (55674), WEBHOOKS_EPMD_PORT (54369).
set -euo pipefail

DIR=${WEBHOOKS_INFRA_DIR:-/tmp/webhook-dispatcher-infra}
PG_PORT=${WEBHOOKS_PG_PORT:-55432}
AMQP_PORT=${WEBHOOKS_AMQP_PORT:-55672}
MGMT_PORT=${WEBHOOKS_RABBIT_MGMT_PORT:-55673}
DIST_PORT=${WEBHOOKS_RABBIT_DIST_PORT:-55674}
EPMD_PORT=${WEBHOOKS_EPMD_PORT:-54369}
PG_BIN=/usr/lib/postgresql/15/bin
RABBIT_BIN=/usr/lib/rabbitmq/bin

log() { echo "[infra] $*" >&2; }

[ "$(id -u)" = 0 ] || { echo "deploy/infra.sh must run as root (it starts PostgreSQL as the postgres user)" >&2; exit 1; }

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

rabbit_env() {
  export HOME="$DIR/rabbitmq"
  export RABBITMQ_NODENAME="webhooks@localhost"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=$AMQP_PORT
  export RABBITMQ_DIST_PORT=$DIST_PORT
  export ERL_EPMD_ADDRESS=127.0.0.1
  export ERL_EPMD_PORT=$EPMD_PORT
  export RABBITMQ_MNESIA_BASE="$DIR/rabbitmq/mnesia"
  export RABBITMQ_LOG_BASE="$DIR/rabbitmq/log"
  export RABBITMQ_PID_FILE="$DIR/rabbitmq/rabbit.pid"
  export RABBITMQ_CONFIG_FILE="$DIR/rabbitmq/rabbitmq.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/rabbitmq/enabled_plugins"
  export ERL_CRASH_DUMP="$DIR/rabbitmq/erl_crash.dump"
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

pg_running() { [ -f "$DIR/pg/data/postmaster.pid" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/pg/data" status >/dev/null 2>&1; }

start_pg() {
  if pg_running; then
    # The port it listens on is line 4 of postmaster.pid: a set of servers started with another port.
    local running_port
    running_port=$(sed -n 4p "$DIR/pg/data/postmaster.pid")
    if [ "$running_port" != "$PG_PORT" ]; then
      log "PostgreSQL of $DIR runs on port $running_port, not $PG_PORT: stop it first (WEBHOOKS_PG_PORT=$running_port deploy/infra.sh stop) or use another WEBHOOKS_INFRA_DIR"
      exit 1
    fi
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
    return
  fi
  mkdir -p "$DIR/pg"
  chown postgres "$DIR/pg"
  if [ ! -f "$DIR/pg/data/PG_VERSION" ]; then
    runuser -u postgres -- "$PG_BIN/initdb" -D "$DIR/pg/data" -U postgres --auth=trust -E UTF8 >/dev/null
    cat >>"$DIR/pg/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$DIR/pg'
max_connections = 200
fsync = on
CONF
  fi
  # The port is given at each start (it overrides postgresql.conf's, written at initdb), so a
  # directory made with one WEBHOOKS_PG_PORT starts on another when the variable changes.
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/postgres.log" -o "-p $PG_PORT" -w start >/dev/null
  runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
    "SELECT 1 FROM pg_roles WHERE rolname='webhooks'" | grep -q 1 ||
    runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc \
      "CREATE ROLE webhooks LOGIN SUPERUSER PASSWORD 'webhooks'"
  log "PostgreSQL on 127.0.0.1:$PG_PORT"
}

rabbit_running() { rabbit_env; "$RABBIT_BIN/rabbitmqctl" -q ping >/dev/null 2>&1; }

PLUGINS="rabbitmq_management rabbitmq_shovel rabbitmq_shovel_management"

start_rabbit() {
  if rabbit_running; then
    # A node started by an older version of this script may lack a plugin: enable it in place (idempotent).
    grep -q rabbitmq_shovel_management "$RABBITMQ_ENABLED_PLUGINS_FILE" 2>/dev/null ||
      "$RABBIT_BIN/rabbitmq-plugins" -q enable $PLUGINS >/dev/null
    log "RabbitMQ already running on 127.0.0.1:$AMQP_PORT"
    return
  fi
  rabbit_env
  mkdir -p "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
  cat >"$RABBITMQ_CONFIG_FILE" <<CONF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $MGMT_PORT
loopback_users = none
CONF
  # The shovel plugins serve the console's "Move messages" (moving _error messages back).
  echo "[${PLUGINS// /,}]." >"$RABBITMQ_ENABLED_PLUGINS_FILE"
  rm -f "$RABBITMQ_PID_FILE"  # left behind by a node that was killed
  nohup "$RABBIT_BIN/rabbitmq-server" >"$RABBITMQ_LOG_BASE/stdout.log" 2>&1 &
  local server=$!
  if ! "$RABBIT_BIN/rabbitmqctl" -q wait --timeout 90 "$RABBITMQ_PID_FILE" >/dev/null 2>&1 || ! kill -0 "$server" 2>/dev/null; then
    log "RabbitMQ did not start; last lines of $RABBITMQ_LOG_BASE/stdout.log:"
    tail -n 15 "$RABBITMQ_LOG_BASE/stdout.log" >&2
    exit 1
  fi
  log "RabbitMQ on 127.0.0.1:$AMQP_PORT (management console http://127.0.0.1:$MGMT_PORT, guest/guest)"
}

stop_all() {
  if rabbit_running; then
    "$RABBIT_BIN/rabbitmqctl" -q shutdown >/dev/null 2>&1 || true
    epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true
    log "RabbitMQ stopped"
  fi
  if pg_running; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m fast -w stop >/dev/null
    log "PostgreSQL stopped"
  fi
}

print_env() {
  cat <<ENV
export ConnectionStrings__Postgres="Host=127.0.0.1;Port=$PG_PORT;Database=webhooks;Username=webhooks;Password=webhooks"
export ConnectionStrings__RabbitMq="amqp://guest:guest@127.0.0.1:$AMQP_PORT/"
ENV
}

case "${1:-start}" in
  start)
    install_missing
    start_pg
    start_rabbit
    print_env
    ;;
  status)
    pg_running && rabbit_running && log "both running" ;;
  stop) stop_all ;;
  env) print_env ;;
  rabbitmqctl) shift; rabbit_env; exec "$RABBIT_BIN/rabbitmqctl" "$@" ;;
  *) echo "usage: $0 start|status|stop|env|rabbitmqctl ARGS" >&2; exit 2 ;;
esac
