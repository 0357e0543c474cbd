#!/usr/bin/env bash
# Starts and stops Parley's embedded stack: a private MariaDB, Redis, the dev
# Kafka broker and nginx with the Parley module, all on 127.0.0.1, with data,
# logs and pids under one folder.
#
#   scripts/stack.sh PROFILE start|stop|status [SERVICE...]
#   scripts/stack.sh PROFILE kill|pause|resume SERVICE   (fault injection)
#
# PROFILE dev  (make run):  var/,      nginx :8080, db :13306, redis :16379,
#                           kafka :19092
# PROFILE test (make test): var/test/, db :23306, redis :26379, kafka :29092;
#                           tests start their own nginx instances.
# Services: db redis kafka nginx.  stop acts only on the pids it recorded.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
profile=${1:?profile: dev or test}
action=${2:?action: start, stop, status, kill, pause or resume}
shift 2

case "$profile" in
dev)  VAR=$repo/var;      DB_PORT=13306; REDIS_PORT=16379; KAFKA_PORT=19092
      SERVICES=(db redis kafka nginx) ;;
test) # PARLEY_TEST_BASE moves every port (two test runs on one machine)
      base=${PARLEY_TEST_BASE:-20000}
      VAR=$repo/var/test; DB_PORT=$((base + 3306)); REDIS_PORT=$((base + 6379))
      KAFKA_PORT=$((base + 9092))
      SERVICES=(db redis kafka) ;;
*)    echo "stack: unknown profile \"$profile\"" >&2; exit 2 ;;
esac

NGINX_PORT=8080
DB_NAME=parley
DB_USER=parley
DB_PASSWORD=parley-dev-password
BIN=$repo/build/bin
RUN=$VAR/run
LOG=$VAR/log
mkdir -p "$RUN" "$LOG"

[ $# -gt 0 ] && SERVICES=("$@")

say() { echo "stack($profile): $*"; }

# pid of a service if its recorded process is alive and is what we started
live_pid() {
    local pidfile=$RUN/$1.pid pattern=$2 pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern" || return 1
    echo "$pid"
}

wait_for() {   # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2 i
    shift 2
    for ((i = 0; i < limit * 20; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    say "$what did not come up within ${limit}s; see $LOG"
    return 1
}

stop_pid() {   # stop_pid NAME PATTERN
    local pid i
    pid=$(live_pid "$1" "$2") || { rm -f "$RUN/$1.pid"; return 0; }
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [ -d "/proc/$pid" ] || break
        sleep 0.05
    done
    [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    rm -f "$RUN/$1.pid"
    say "stopped $1 (pid $pid)"
}

db_client() {
    mariadb --no-defaults --socket="$VAR/mariadb/mariadb.sock" -uroot "$@"
}

start_db() {
    if live_pid db mariadbd >/dev/null; then return 0; fi
    if [ ! -d "$VAR/mariadb/data/mysql" ]; then
        mkdir -p "$VAR/mariadb/data"
        mariadb-install-db --no-defaults --datadir="$VAR/mariadb/data" \
            --user=root --auth-root-authentication-method=normal \
            --skip-test-db >"$LOG/mariadb-install.log" 2>&1
    fi
    mariadbd --no-defaults --user=root --datadir="$VAR/mariadb/data" \
        --socket="$VAR/mariadb/mariadb.sock" --port="$DB_PORT" \
        --bind-address=127.0.0.1 --pid-file="$VAR/mariadb/mariadb.pid" \
        --innodb-buffer-pool-size=128M --innodb-log-file-size=48M \
        --innodb-flush-log-at-trx-commit=2 --max-connections=1000 \
        --skip-name-resolve --character-set-server=utf8mb4 \
        --collation-server=utf8mb4_bin \
        --log-error="$LOG/mariadb.log" </dev/null >/dev/null 2>&1 &
    echo $! > "$RUN/db.pid"
    wait_for 20 mariadb mariadb-admin --no-defaults \
        --socket="$VAR/mariadb/mariadb.sock" -uroot ping
    db_client -e "CREATE DATABASE IF NOT EXISTS $DB_NAME CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
        CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
        CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
        GRANT ALL ON \`$DB_NAME\`.* TO '$DB_USER'@'127.0.0.1';
        GRANT ALL ON \`$DB_NAME\`.* TO '$DB_USER'@'localhost';
        GRANT CREATE, DROP ON *.* TO '$DB_USER'@'127.0.0.1';
        GRANT ALL ON \`parley\\_%\`.* TO '$DB_USER'@'127.0.0.1';"
    say "mariadb on 127.0.0.1:$DB_PORT (pid $(cat "$RUN/db.pid"))"
}

start_redis() {
    if live_pid redis "redis-server" >/dev/null; then return 0; fi
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
        --appendonly no --daemonize no --logfile "$LOG/redis.log" \
        --dir "$VAR" </dev/null >/dev/null 2>&1 &
    echo $! > "$RUN/redis.pid"
    wait_for 10 redis redis-cli -p "$REDIS_PORT" ping
    say "redis on 127.0.0.1:$REDIS_PORT (pid $(cat "$RUN/redis.pid"))"
}

start_kafka() {
    if live_pid kafka parley-devbroker >/dev/null; then return 0; fi
    rm -f "$RUN/devbroker.sock"
    "$BIN/parley-devbroker" --port "$KAFKA_PORT" --brokers 1 \
        --control "$RUN/devbroker.sock" </dev/null >"$LOG/devbroker.log" 2>&1 &
    echo $! > "$RUN/kafka.pid"
    wait_for 10 parley-devbroker grep -q "ready on" "$LOG/devbroker.log"
    say "dev Kafka broker on 127.0.0.1:$KAFKA_PORT (pid $(cat "$RUN/kafka.pid")) — IN MEMORY, lost on exit"
}

nginx_cmd() {
    /usr/sbin/nginx -p "$repo/" -c conf/parley.dev.conf "$@"
}

# secrets of the dev stack, made once: the user-token key and the operator key
dev_secrets() {
    if [ ! -s "$VAR/token.key" ]; then
        head -c 48 /dev/urandom > "$VAR/token.key"
        chmod 600 "$VAR/token.key"
    fi
    if [ ! -s "$VAR/platform.key" ]; then
        echo "pk_platform_$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')" > "$VAR/platform.key"
        chmod 600 "$VAR/platform.key"
    fi
    echo "parley_platform_key_sha256 $(tr -d '\n' < "$VAR/platform.key" | sha256sum | cut -d' ' -f1);" \
        > "$VAR/platform.conf"
}

start_nginx() {
    local module=$repo/build/modules/ngx_parley_module.so pid
    mkdir -p "$VAR/tmp" "$VAR/log"
    dev_secrets
    if pid=$(live_pid nginx "nginx: master"); then
        # a rebuilt module is picked up by a fresh start, not a reload
        [ "$module" -nt "$RUN/nginx.pid" ] || return 0
        stop_pid nginx "nginx: master"
    fi
    nginx_cmd -t -q
    nginx_cmd
    wait_for 10 nginx test -s "$RUN/nginx.pid"
    say "nginx on 127.0.0.1:$NGINX_PORT (pid $(cat "$RUN/nginx.pid"))"
}

migrate() {
    "$BIN/parleyctl" --db "$(db_url)" migrate --dir "$repo/conf/migrations"
}

db_url() {
    echo "mysql://$DB_USER:$DB_PASSWORD@127.0.0.1:$DB_PORT/$DB_NAME"
}

write_env() {
    local out=$1
    {
        echo "# written by scripts/stack.sh $profile start; source it in scripts"
        echo "PARLEY_VAR='$VAR'"
        echo "PARLEY_DB_URL='$(db_url)'"
        echo "PARLEY_DB_HOST=127.0.0.1"
        echo "PARLEY_DB_PORT=$DB_PORT"
        echo "PARLEY_DB_SOCKET='$VAR/mariadb/mariadb.sock'"
        echo "PARLEY_DB_USER=$DB_USER"
        echo "PARLEY_DB_PASSWORD=$DB_PASSWORD"
        echo "PARLEY_DB_NAME=$DB_NAME"
        echo "PARLEY_REDIS_PORT=$REDIS_PORT"
        echo "PARLEY_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
        echo "PARLEY_KAFKA_CONTROL='$RUN/devbroker.sock'"
        echo "PARLEY_BIN='$BIN'"
        [ -n "${2:-}" ] && cat "$2"
    } > "$out.tmp"
    mv "$out.tmp" "$out"
}

case "$action" in
start)
    for s in "${SERVICES[@]}"; do
        case "$s" in
        db) start_db ;;
        redis) start_redis ;;
        kafka) start_kafka ;;
        nginx) start_nginx ;;
        *) echo "stack: unknown service \"$s\"" >&2; exit 2 ;;
        esac
    done
    if [ $# -eq 0 ]; then
        migrate
        if [ "$profile" = dev ]; then
            "$BIN/parleyctl" --db "$(db_url)" tenant create --name demo \
                --if-absent > "$RUN/tenant.env"
            {
                echo "PARLEY_BASE_URL=http://127.0.0.1:$NGINX_PORT"
                echo "PARLEY_WS_URL=ws://127.0.0.1:$NGINX_PORT/v1/ws"
                echo "PARLEY_PLATFORM_KEY=$(cat "$VAR/platform.key")"
                grep -E '^PARLEY_(TENANT_ID|API_KEY)=' "$RUN/tenant.env"
            } > "$RUN/extra.env"
            write_env "$VAR/parley.env" "$RUN/extra.env"
            rm -f "$RUN/tenant.env" "$RUN/extra.env"
        else
            write_env "$VAR/stack.env"
        fi
    fi
    ;;
stop)
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
        case "${SERVICES[$i]}" in
        db) stop_pid db mariadbd ;;
        redis) stop_pid redis redis-server ;;
        kafka) stop_pid kafka parley-devbroker ;;
        nginx) stop_pid nginx "nginx: master" ;;
        esac
    done
    ;;
status)
    for s in "${SERVICES[@]}"; do
        case "$s" in
        db) p=mariadbd ;; redis) p=redis-server ;;
        kafka) p=parley-devbroker ;; nginx) p="nginx: master" ;;
        esac
        if pid=$(live_pid "$s" "$p"); then say "$s running (pid $pid)"
        else say "$s stopped"; fi
    done
    ;;
kill|pause|resume)
    s=${SERVICES[0]}
    case "$s" in
    db) p=mariadbd ;; redis) p=redis-server ;;
    kafka) p=parley-devbroker ;; nginx) p="nginx: master" ;;
    esac
    pid=$(live_pid "$s" "$p") || { say "$s is not running"; exit 1; }
    case "$action" in
    kill) kill -KILL "$pid"; rm -f "$RUN/$s.pid" ;;
    pause) kill -STOP "$pid" ;;
    resume) kill -CONT "$pid" ;;
    esac
    ;;
*)
    echo "stack: unknown action \"$action\"" >&2; exit 2 ;;
esac
