#!/usr/bin/env bash
# A 3-node RabbitMQ cluster on one machine, owned by the caller, for the fault battery and for operators
# who want to try failover locally.  It never touches the shared node on 5672.
#
#   scripts/cluster.sh start | stop | status | kill NODE | restart NODE | stopnode NODE | startnode NODE
#                      | ctl NODE ARGS...   (rabbitmqctl against one node)     NODE is 1, 2 or 3
#                      | partition NODE | heal   (iptables: cut NODE off from the other two; needs root)
#
# Node N is icN@localhost: AMQP on 5700+N, management on 15700+N, Erlang distribution on 25700+N.
# Everything (data, logs, config, the shared Erlang cookie) lives under $INTERCHANGE_CLUSTER_DIR
# (default: $TMPDIR/interchange-cluster).  Settings: pause_minority partition handling, quorum queues
# (declared by the topology), the management and consistent-hash exchange plugins.  Apply Interchange's topology with
#   INTERCHANGE_AMQP_URL=amqp://guest:guest@127.0.0.1:5701/,amqp://guest:guest@127.0.0.1:5702/,...
#   INTERCHANGE_MANAGEMENT_URL=http://127.0.0.1:15701/ interchange topology apply
set -euo pipefail

DIR="${INTERCHANGE_CLUSTER_DIR:-${TMPDIR:-/tmp}/interchange-cluster}"
BASE_AMQP="${INTERCHANGE_CLUSTER_AMQP_BASE:-5700}"
BASE_MGMT="${INTERCHANGE_CLUSTER_MGMT_BASE:-15700}"
BASE_DIST="${INTERCHANGE_CLUSTER_DIST_BASE:-25700}"
NODES=(1 2 3)
SBIN="$(dirname "$(readlink -f "$(command -v rabbitmq-server)")")"
# Debian's /usr/sbin wrappers switch to the rabbitmq user and its files; use the real scripts instead.
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && SBIN=/usr/lib/rabbitmq/bin

node_name() { echo "ic$1@localhost"; }

node_env() {   # the environment every rabbitmq command for node $1 runs with
  local n=$1
  export HOME="$DIR/home" RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf"
  export RABBITMQ_NODENAME; RABBITMQ_NODENAME="$(node_name "$n")"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$((BASE_AMQP + n))
  export RABBITMQ_DIST_PORT=$((BASE_DIST + n))
  export RABBITMQ_CONFIG_FILE="$DIR/node$n/rabbitmq.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins"
  export RABBITMQ_MNESIA_BASE="$DIR/node$n/mnesia" RABBITMQ_LOG_BASE="$DIR/node$n/log"
  export RABBITMQ_PID_FILE="$DIR/node$n/pid"
  export ERL_EPMD_ADDRESS=127.0.0.1
  # Distribution listens on 127.0.0.1 but node N connects from 127.0.0.N, so iptables can cut one node
  # off from the others (`partition N`) without touching clients or the shared node.
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} -kernel inet_dist_connect_options [{ip,{127,0,0,$n}}]"
}

ctl() { local n=$1; shift; ( node_env "$n"; "$SBIN/rabbitmqctl" -n "$(node_name "$n")" "$@" ); }

prepare() {
  mkdir -p "$DIR/home"
  if [ ! -f "$DIR/home/.erlang.cookie" ]; then
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr 'a-f' 'A-F' > "$DIR/home/.erlang.cookie"
    chmod 400 "$DIR/home/.erlang.cookie"
  fi
  : > "$DIR/rabbitmq-env.conf"
  echo "[rabbitmq_management,rabbitmq_consistent_hash_exchange]." > "$DIR/enabled_plugins"
  for n in "${NODES[@]}"; do
    mkdir -p "$DIR/node$n/mnesia" "$DIR/node$n/log"
    cat > "$DIR/node$n/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$((BASE_AMQP + n))
management.tcp.ip = 127.0.0.1
management.tcp.port = $((BASE_MGMT + n))
cluster_partition_handling = pause_minority
net_ticktime = 10
loopback_users = none
vm_memory_high_watermark.relative = 0.1
disk_free_limit.absolute = 50MB
collect_statistics_interval = 5000
log.file.level = warning
log.console = false
EOF
  done
}

pid_of() { cat "$DIR/node$1/pid" 2>/dev/null || true; }
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

start_node() {
  local n=$1
  alive "$n" && return 0
  ( node_env "$n"; setsid "$SBIN/rabbitmq-server" > "$DIR/node$n/log/stdout.log" 2>&1 < /dev/null & )
}

wait_node() {   # until the node's AMQP port answers (the app is up)
  local n=$1
  for _ in $(seq 1 120); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$((BASE_AMQP + n))") 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "node $(node_name "$n") did not start; see $DIR/node$n/log" >&2
  return 1
}

wait_pid() {    # the pid file is written during boot; the beam is the process we signal
  local n=$1
  for _ in $(seq 1 60); do [ -s "$DIR/node$n/pid" ] && return 0; sleep 0.5; done
  echo "node $(node_name "$n") wrote no pid file" >&2; return 1
}

cmd_start() {
  prepare
  for n in "${NODES[@]}"; do start_node "$n"; done
  for n in "${NODES[@]}"; do wait_node "$n"; wait_pid "$n"; done
  for n in 2 3; do
    if ! ctl "$n" cluster_status --formatter json 2>/dev/null | grep -q "$(node_name 1)"; then
      ctl "$n" stop_app >/dev/null
      ctl "$n" join_cluster "$(node_name 1)" >/dev/null
      ctl "$n" start_app >/dev/null
    fi
  done
  for n in "${NODES[@]}"; do wait_node "$n"; done
  ctl 1 await_online_nodes 3 --timeout 60 >/dev/null
  echo "cluster up: amqp 127.0.0.1:$((BASE_AMQP+1))-$((BASE_AMQP+3)), management 127.0.0.1:$((BASE_MGMT+1)), dir $DIR"
}

stop_node() {   # graceful stop, waited for (rabbitmqctl stop returns before the VM exits); SIGKILL after 60 s
  local n=$1 p; p=$(pid_of "$n")
  [ -n "$p" ] || return 0
  ctl "$n" stop >/dev/null 2>&1 || true
  for _ in $(seq 1 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  rm -f "$DIR/node$n/pid"
}

cmd_stop() {
  for n in 3 2 1; do alive "$n" && stop_node "$n"; done
  if [ "${1:-}" = "--purge" ]; then rm -rf "$DIR"; fi
  return 0
}

cmd_status() {
  for n in "${NODES[@]}"; do
    if alive "$n"; then echo "$(node_name "$n") running pid $(pid_of "$n")"; else echo "$(node_name "$n") down"; fi
  done
  for n in "${NODES[@]}"; do
    if alive "$n"; then ctl "$n" cluster_status --formatter json && echo && return 0; fi
  done
  return 1
}

cmd_kill() {      # SIGKILL one node's Erlang VM (a crash, not a shutdown)
  local n=$1 p; p=$(pid_of "$n")
  [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  rm -f "$DIR/node$n/pid"
}

CHAIN=INTERCHANGE-PARTITION

need_iptables() {
  command -v iptables >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "iptables is not installed: installing it with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null
  else
    echo "partition needs iptables and root (Debian/Ubuntu: sudo apt-get install iptables)" >&2; exit 1
  fi
}

cmd_partition() {   # drop Erlang distribution traffic between node $1 and the other two (both directions)
  local n=$1 m
  need_iptables
  iptables -N "$CHAIN" 2>/dev/null || iptables -F "$CHAIN"
  iptables -C OUTPUT -j "$CHAIN" 2>/dev/null || iptables -I OUTPUT 1 -j "$CHAIN"
  for m in "${NODES[@]}"; do
    [ "$m" = "$n" ] && continue
    iptables -A "$CHAIN" -p tcp -s "127.0.0.$n" --dport $((BASE_DIST + m)) -j DROP
    iptables -A "$CHAIN" -p tcp -s "127.0.0.$m" --dport $((BASE_DIST + n)) -j DROP
    iptables -A "$CHAIN" -p tcp -d "127.0.0.$m" --sport $((BASE_DIST + n)) -j DROP
    iptables -A "$CHAIN" -p tcp -d "127.0.0.$n" --sport $((BASE_DIST + m)) -j DROP
  done
}

cmd_heal() {
  iptables -F "$CHAIN" 2>/dev/null || true
  iptables -D OUTPUT -j "$CHAIN" 2>/dev/null || true
  iptables -X "$CHAIN" 2>/dev/null || true
}

case "${1:-}" in
  start) cmd_start ;;
  stop) shift; cmd_stop "${1:-}" ;;
  status) cmd_status ;;
  kill) cmd_kill "$2" ;;
  stopnode) stop_node "$2" ;;
  startnode) prepare; start_node "$2"; wait_node "$2"; wait_pid "$2" ;;
  restart) cmd_kill "$2"; prepare; start_node "$2"; wait_node "$2"; wait_pid "$2" ;;
  ctl) shift; n=$1; shift; ctl "$n" "$@" ;;
  partition) cmd_partition "$2" ;;
  heal) cmd_heal ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
