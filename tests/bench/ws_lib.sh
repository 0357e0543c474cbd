# Sourced by tests/bench/ws_*.sh: start and stop the WebSocket servers under test
# (nchan, node ws, parley), read their RSS and CPU time, clean up what was started.
#
# Server selection: --servers LIST or WS_SERVERS=LIST (comma or space separated;
# default "nchan,node"). parley needs the test stack (scripts/stack.sh test start),
# a built module that knows parley_ws, and build/bin/parleyctl; PARLEY_STACK_ENV
# names another stack's env file (default var/test/stack.env), PARLEY_MODULE another
# module (default build/modules/ngx_parley_module.so).

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WS_LOAD=$repo/build/bench/ws_load
NGINX=${NGINX:-/usr/sbin/nginx}
NCHAN_MODULE=${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
PARLEY_MODULE=${PARLEY_MODULE:-$repo/build/modules/ngx_parley_module.so}
CLK_TCK=$(getconf CLK_TCK)

bg_pids=()        # ws_load and other helpers started in the background
srv_name=''       # running server: nchan | node | parley
srv_dir=''
srv_pid=''        # nginx master or node
srv_port=''
parley_tenant=''

# parse_servers "$@": sets servers=(...) from --servers or WS_SERVERS; leaves the
# other arguments in args=(...)
parse_servers() {
    local list=${WS_SERVERS:-nchan,node}
    args=()
    while [ $# -gt 0 ]; do
        case $1 in
            --servers) list=$2; shift 2 ;;
            --servers=*) list=${1#--servers=}; shift ;;
            *) args+=("$1"); shift ;;
        esac
    done
    read -r -a servers <<<"${list//,/ }"
    local s
    for s in "${servers[@]}"; do
        case $s in nchan|node|parley) ;; *) echo "unknown server '$s' (nchan, node, parley)" >&2; exit 2 ;; esac
    done
}

bench_init() {
    make -s -C "$repo/tests/bench" >/dev/null
    work=$(mktemp -d /tmp/parley-ws-bench-XXXXXX)   # outside the checkout: nginx workers read it
    chmod 755 "$work"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local p
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    bg_pids=()
    stop_server
    [ -n "${work:-}" ] && rm -rf "$work"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_line FILE REGEX SECONDS: wait until a line of FILE matches
wait_line() {
    local deadline=$((SECONDS + $3))
    while ! grep -Eq "$2" "$1" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            echo "timed out after $3 s waiting for /$2/ in $1" >&2
            return 1
        fi
        sleep 0.1
    done
}

# val FILE KEY: the last KEY=value of a ws_load output
val() { sed -n "s/^$2=//p" "$1" | tail -1; }

wait_port() {  # wait_port PORT SECONDS
    local deadline=$((SECONDS + $2))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        [ $SECONDS -ge $deadline ] && { echo "port $1 not listening after $2 s" >&2; return 1; }
        sleep 0.1
    done
}

# The processes whose memory and CPU count as the server's: nginx's workers (not
# the master, which serves no connection), or the node process.
server_pids() {
    case $srv_name in
        node) echo "$srv_pid" ;;
        *) ps -o pid= --ppid "$srv_pid" | tr -d ' ' ;;
    esac
}

# parley's backends on the test stack (MariaDB, Redis), from the stack's pid files;
# none for the peers, which have no backend
backend_pids() {
    [ "$srv_name" = parley ] || return 0
    local f
    for f in "$PARLEY_VAR/run/db.pid" "$PARLEY_VAR/run/redis.pid"; do
        if [ -s "$f" ]; then cat "$f"; fi
    done
}

rss_kb_of() {  # sum of VmRSS over the pids given, kB
    local p t=0 v
    for p in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")
        t=$((t + v))
    done
    echo "$t"
}

cpu_us_of() {  # sum of utime+stime over the pids given, microseconds
    local p t=0 v
    for p in "$@"; do
        v=$(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
        t=$((t + v))
    done
    echo $((t * 1000000 / CLK_TCK))
}

# shellcheck disable=SC2046
rss_kb() { rss_kb_of $(server_pids); }
# shellcheck disable=SC2046
cpu_us() { cpu_us_of $(server_pids); }
# shellcheck disable=SC2046
backend_rss_kb() { rss_kb_of $(backend_pids); }
# shellcheck disable=SC2046
backend_cpu_us() { cpu_us_of $(backend_pids); }

nginx_common_conf() {  # main and events part for a private nginx in $srv_dir
    cat <<CONF
worker_processes 1;
worker_rlimit_nofile 20000;
error_log $srv_dir/error.log warn;
pid $srv_dir/nginx.pid;
events { worker_connections 19500; multi_accept on; }
CONF
}

start_nginx() {
    "$NGINX" -p "$srv_dir" -c "$srv_dir/nginx.conf" -q
    local i
    for i in $(seq 1 50); do [ -s "$srv_dir/nginx.pid" ] && break; sleep 0.1; done
    srv_pid=$(cat "$srv_dir/nginx.pid")
    wait_port "$srv_port" 10
}

# start_server NAME: sets srv_name, srv_port, srv_pid
start_server() {
    srv_name=$1
    srv_dir=$work/$1
    mkdir -p "$srv_dir/tmp"
    srv_port=$(free_port)
    case $1 in
    nchan)
        [ -f "$NCHAN_MODULE" ] || { echo "nchan: $NCHAN_MODULE missing (apt-get install libnginx-mod-nchan)" >&2; exit 1; }
        {
            echo "load_module $NCHAN_MODULE;"
            nginx_common_conf
            cat <<CONF
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $srv_dir/tmp;
    nchan_max_reserved_memory 256M;
    server {
        listen 127.0.0.1:$srv_port backlog=4096;
        location = /sub {
            nchan_subscriber websocket;
            nchan_channel_id \$arg_chan;
            nchan_subscriber_first_message newest;
        }
        location = /pub {
            nchan_publisher http;
            nchan_channel_id \$arg_chan;
            nchan_message_buffer_length 16;
            nchan_message_timeout 60s;
        }
    }
}
CONF
        } > "$srv_dir/nginx.conf"
        start_nginx
        ;;
    node)
        [ -d "$repo/tests/bench/peers/node_modules/ws" ] ||
            (cd "$repo/tests/bench/peers" && npm install --no-audit --no-fund --silent >/dev/null)
        node "$repo/tests/bench/peers/ws_server.mjs" "$srv_port" /ws > "$srv_dir/node.log" 2>&1 &
        srv_pid=$!
        wait_line "$srv_dir/node.log" '^listening' 10
        ;;
    parley)
        start_parley "${PARLEY_NODE_ID:-}"
        ;;
    esac
}

stop_server() {
    [ -n "$srv_pid" ] || return 0
    case $srv_name in
    node)
        kill "$srv_pid" 2>/dev/null || true
        wait "$srv_pid" 2>/dev/null || true
        ;;
    *)
        "$NGINX" -p "$srv_dir" -c "$srv_dir/nginx.conf" -s quit 2>/dev/null || kill "$srv_pid" 2>/dev/null || true
        local i
        for i in $(seq 1 100); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$srv_pid" 2>/dev/null; then kill -TERM "$srv_pid" 2>/dev/null || true; sleep 1; fi
        if [ -s "$srv_dir/error.log" ] && grep -Eq '\[(error|alert|emerg|crit)\]' "$srv_dir/error.log"; then
            echo "  ($srv_name error.log: $(grep -Ec '\[(error|alert|emerg|crit)\]' "$srv_dir/error.log") error/alert/emerg/crit lines; the first:)" >&2
            grep -E '\[(error|alert|emerg|crit)\]' "$srv_dir/error.log" | head -5 | cut -c1-400 >&2
        fi
        ;;
    esac
    if [ "$srv_name" = parley ] && [ -n "$parley_tenant" ]; then
        "$repo/build/bin/parleyctl" --db "$PARLEY_DB_URL" tenant delete --tenant "$parley_tenant" \
            --grace 0 >/dev/null 2>&1 || echo "  (could not delete bench tenant $parley_tenant)" >&2
        parley_tenant=''
    fi
    srv_pid=''
    srv_name=''
}

# sub_path CHANNEL: the WebSocket path for a subscriber of CHANNEL (node has one
# channel and ignores the name)
sub_path() {
    case $srv_name in
        nchan) echo "/sub?chan=$1" ;;
        node) echo "/ws?chan=$1" ;;
    esac
}

pub_url() {
    case $srv_name in
        nchan) echo "http://127.0.0.1:$srv_port/pub?chan=$1" ;;
        node) echo "http://127.0.0.1:$srv_port/pub" ;;
    esac
}

# A 64-byte payload: "ts=" + 19 digits + " " + padding; {n} is not used so that the
# size stays fixed.
payload64() {
    local pad=$((64 - 3 - 19 - 1))
    printf 'ts={ts} %s' "$(head -c "$pad" /dev/zero | tr '\0' x)"
}

# ---------------------------------------------------------------- parley

# parley_conf DIR PORT [NODE_ID [TOKEN_KEY]]: write DIR/nginx.conf for a private
# nginx with the module against the test stack (sourced env), listening on PORT;
# NODE_ID sets parley_node_id (default: none, i.e. 0), TOKEN_KEY the token key file
# (default DIR/token.key, created here): nodes of one deployment share it
parley_conf() {
    local dir=$1 port=$2 node=${3:-} key=${4:-$1/token.key}
    mkdir -p "$dir/tmp"
    if [ ! -f "$key" ]; then
        head -c 48 /dev/urandom > "$key"
        chmod 644 "$key"
    fi
    {
        echo "load_module $PARLEY_MODULE;"
        srv_dir=$dir nginx_common_conf
        if [ -n "$node" ]; then echo "parley_node_id $node;"; fi
        cat <<CONF
thread_pool parley threads=1;
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp;
    parley_db 127.0.0.1:$PARLEY_DB_PORT user=$PARLEY_DB_USER password=$PARLEY_DB_PASSWORD database=$PARLEY_DB_NAME pool=16;
    parley_redis 127.0.0.1:$PARLEY_REDIS_PORT roles=cache,session,pubsub;
    parley_token_key $key;
    parley_api_cache_ttl 30s;
    server {
        listen 127.0.0.1:$port backlog=4096;
        location = /v1/ws { parley_ws; }
        location /v1/ { parley_api; }
    }
}
CONF
    } > "$dir/nginx.conf"
    if ! "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf" 2>"$dir/nginx-t.log"; then
        echo "parley: nginx -t refused the configuration (is parley_ws built into $PARLEY_MODULE?):" >&2
        cat "$dir/nginx-t.log" >&2
        exit 1
    fi
}

parley_stack_env() {  # source the test stack's env file; check the module
    local env=${PARLEY_STACK_ENV:-$repo/var/test/stack.env}
    [ -f "$env" ] || { echo "parley: no $env (scripts/stack.sh test start)" >&2; exit 1; }
    set -a; . "$env"; set +a
    [ -f "$PARLEY_MODULE" ] || { echo "parley: $PARLEY_MODULE missing (make build)" >&2; exit 1; }
}

# start_parley [NODE_ID]: a private nginx with the module against the test stack,
# and a fresh tenant (PARLEY_API_KEY, PARLEY_TENANT_ID)
start_parley() {
    parley_stack_env
    parley_conf "$srv_dir" "$srv_port" "${1:-}"
    start_nginx
    local out
    out=$("$repo/build/bin/parleyctl" --db "$PARLEY_DB_URL" tenant create --name "wsbench-$$-$RANDOM" 2>/dev/null)
    eval "$out"
    parley_tenant=$PARLEY_TENANT_ID
}

parley_api() {  # parley_api METHOD PATH [BODY] [USER]
    curl -sf -X "$1" -H "Authorization: Bearer $PARLEY_API_KEY" ${4:+-H "X-Parley-User: $4"} \
        -H 'content-type: application/json' ${3:+-d "$3"} "http://127.0.0.1:$srv_port$2"
}

# parley_users N: users u0..u(N-1) and "pub", and a token for each u*; writes the
# WebSocket paths (/v1/ws?access_token=...) to $srv_dir/paths, in user order
parley_users() {
    local n=$1 base=http://127.0.0.1:$srv_port out
    parley_api POST /v1/users '{"user_id":"pub"}' >/dev/null
    out=$("$WS_LOAD" pub-http --url "$base/v1/users" --count "$n" --pub-conns 8 --duration 170 \
        -H "Authorization: Bearer $PARLEY_API_KEY" --body '{"user_id":"u{n}"}') ||
        { echo "parley: creating users failed:" >&2; echo "$out" >&2; exit 1; }
    out=$("$WS_LOAD" pub-http --url "$base/v1/users/u{n}/tokens" --count "$n" --pub-conns 8 --duration 170 \
        -H "Authorization: Bearer $PARLEY_API_KEY" --body '{}' --save "$srv_dir/tokens.tsv") ||
        { echo "parley: issuing tokens failed:" >&2; echo "$out" >&2; exit 1; }
    sort -n -k1,1 "$srv_dir/tokens.tsv" | cut -f3 | jq -r '"/v1/ws?access_token=" + .token' > "$srv_dir/paths"
}

# parley_group NAME N: a private group owned by "pub" with members u0..u(N-1);
# prints its id
parley_group() {
    local name=$1 n=$2 cid i j ids
    cid=$(parley_api POST /v1/conversations "{\"type\":\"group\",\"owner\":\"pub\",\"name\":\"$name\"}" | jq -r .id)
    for ((i = 0; i < n; i += 1000)); do
        ids=$(for ((j = i; j < n && j < i + 1000; j++)); do printf '"u%d",' "$j"; done)
        parley_api POST "/v1/conversations/$cid/members" "{\"user_ids\":[${ids%,}]}" >/dev/null ||
            { echo "parley: adding members to $name failed" >&2; exit 1; }
    done
    echo "$cid"
}

# parley_paths N: a file with the first N subscriber paths
parley_paths() {
    head -n "$1" "$srv_dir/paths" > "$srv_dir/paths.$1"
    [ "$(wc -l < "$srv_dir/paths.$1")" -eq "$1" ] || { echo "parley: fewer than $1 tokens" >&2; exit 1; }
    echo "$srv_dir/paths.$1"
}

# Options that make ws_load speak Parley's WebSocket protocol; a start costs the
# gateway backend round trips, so connections are opened more gently (these come
# after the scripts' own --conn-rate and win)
parley_ws_opts=(--init '{"op":"start"}' --wait-type '"type":"started"' --conn-rate 1000 --max-pending 256)

# parley_text_body PREFIX: a send body whose text is 64 bytes ("ts=" + 19 digits +
# " " + padding), client ids PREFIX{n}
parley_text_body() {
    printf '{"client_id":"%s{n}","type":"text","text":"%s"}' "$1" "$(payload64)"
}
