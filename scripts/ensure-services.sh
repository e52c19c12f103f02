#!/usr/bin/env bash
# Make sure PostgreSQL, Redis and RabbitMQ answer on their local ports, starting
# the locally installed servers that are stopped. Exits non-zero, naming the
# service, when one cannot be reached: a missing service is a failure, never a skip.
set -euo pipefail

answers() { timeout 2 bash -c ">/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

start_postgres() {
    command -v pg_ctlcluster >/dev/null || return 1
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
}
start_redis() {
    command -v redis-server >/dev/null || return 1
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
}
start_rabbitmq() {
    command -v rabbitmq-server >/dev/null || return 1
    rabbitmq-server -detached
}

ensure() {
    local name=$1 port=$2 starter=$3
    if answers "$port"; then
        return 0
    fi
    echo "$name is not answering on 127.0.0.1:$port; starting it" >&2
    if ! "$starter"; then
        echo "error: $name is not running on 127.0.0.1:$port and could not be started here" >&2
        exit 1
    fi
    for _ in $(seq 1 60); do
        answers "$port" && return 0
        sleep 1
    done
    echo "error: $name was started but does not answer on 127.0.0.1:$port after 60 s" >&2
    exit 1
}

ensure PostgreSQL 5432 start_postgres
ensure Redis 6379 start_redis
ensure RabbitMQ 5672 start_rabbitmq
echo "services answering: PostgreSQL :5432, Redis :6379, RabbitMQ :5672"
