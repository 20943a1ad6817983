#!/usr/bin/env bash
# Make sure a RabbitMQ with the management and prometheus plugins answers on 127.0.0.1:5672/15672.
# Starts it if installed and down; installs it with apt-get when running as root and it is missing;
# otherwise stops with a message saying exactly what to do.
set -euo pipefail

amqp_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
mgmt_up() { curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1; }

if ! command -v rabbitmq-server >/dev/null 2>&1 && ! amqp_up; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "RabbitMQ is not installed: installing it with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  else
    echo "RabbitMQ is not installed. Install it (Debian/Ubuntu: sudo apt-get install rabbitmq-server)," >&2
    echo "or point INTERCHANGE_AMQP_URL at a running RabbitMQ 3.10+ with the management plugin." >&2
    exit 1
  fi
fi

if ! amqp_up; then
  echo "RabbitMQ is not running: starting it (rabbitmq-server -detached)" >&2
  rabbitmq-server -detached
  for _ in $(seq 1 60); do amqp_up && break; sleep 1; done
  amqp_up || { echo "RabbitMQ did not start within 60 s; see /var/log/rabbitmq/" >&2; exit 1; }
  rabbitmqctl await_startup >/dev/null 2>&1 || true
fi

if ! mgmt_up; then
  echo "enabling the rabbitmq_management and rabbitmq_prometheus plugins" >&2
  rabbitmq-plugins enable rabbitmq_management rabbitmq_prometheus >/dev/null
  for _ in $(seq 1 60); do mgmt_up && break; sleep 1; done
  mgmt_up || { echo "the RabbitMQ management API did not answer on 127.0.0.1:15672" >&2; exit 1; }
fi

# Partitioned routing (settings `partitions: N`, docs/SCALING.md) needs the x-consistent-hash exchange type.
hash_up() { curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview 2>/dev/null | grep -q '"x-consistent-hash"'; }
if ! hash_up; then
  echo "enabling the rabbitmq_consistent_hash_exchange plugin" >&2
  rabbitmq-plugins enable rabbitmq_consistent_hash_exchange >/dev/null
fi
