#!/usr/bin/env bash
# Benchmark (figures, not pass/fail): the send path (validation, transaction
# with the gap-free sequence, the message, its event and outbox row) with 32
# concurrent senders, against `sysbench oltp_insert` on the same MariaDB at
# the same concurrency, in the same run; then history reads of a
# 10,000-message conversation.
#
#   tests/bench/api_send.sh [SECONDS] [CONCURRENCY]
#
# Needs the test stack (scripts/stack.sh test start) and a built module.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
secs=${1:-10}
conc=${2:-32}
set -a; . var/test/stack.env; set +a
db=(--mysql-host=127.0.0.1 --mysql-port="$PARLEY_DB_PORT" --mysql-user="$PARLEY_DB_USER"
    --mysql-password="$PARLEY_DB_PASSWORD" --mysql-db=parley_sbtest)

dir=$(mktemp -d "$repo/var/test/bench-XXXXXX")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
head -c 48 /dev/urandom > "$dir/token.key"
mkdir -p "$dir/tmp"
cat > "$dir/nginx.conf" <<CONF
load_module $repo/build/modules/ngx_parley_module.so;
worker_processes 1;
error_log $dir/error.log warn;
pid $dir/nginx.pid;
thread_pool parley threads=1;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp;
    parley_db 127.0.0.1:$PARLEY_DB_PORT user=$PARLEY_DB_USER password=$PARLEY_DB_PASSWORD database=$PARLEY_DB_NAME pool=$conc;
    parley_token_key $dir/token.key;
    parley_api_cache_ttl 30s;
    server {
        listen 127.0.0.1:$port;
        location /v1/ { parley_api; }
    }
}
CONF
/usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf"
trap '/usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -s quit 2>/dev/null || true' EXIT
sleep 0.5
base=http://127.0.0.1:$port

eval "$(build/bin/parleyctl --db "$PARLEY_DB_URL" tenant create --name "bench-$$-$RANDOM" 2>/dev/null)"
api() {  # api METHOD PATH [BODY] [USER]
    curl -sf -X "$1" -H "Authorization: Bearer $PARLEY_API_KEY" ${4:+-H "X-Parley-User: $4"} \
        -H 'content-type: application/json' ${3:+-d "$3"} "$base$2"
}
# one conversation per sender, as in a busy tenant where everyone talks
targets=()
for i in $(seq 1 "$conc"); do
    api POST /v1/users "{\"user_id\":\"s$i\"}" >/dev/null
    api POST /v1/users "{\"user_id\":\"r$i\"}" >/dev/null
    cid=$(api POST /v1/conversations "{\"type\":\"direct\",\"peer\":\"r$i\"}" "s$i" | jq -r .id)
    targets+=("$cid:s$i")
done

echo "== $(nproc) cores, MariaDB on the same machine, ${secs}s per run, concurrency $conc"
mariadb --no-defaults -h127.0.0.1 -P"$PARLEY_DB_PORT" -u"$PARLEY_DB_USER" -p"$PARLEY_DB_PASSWORD" \
    -e "DROP DATABASE IF EXISTS parley_sbtest; CREATE DATABASE parley_sbtest"
sysbench oltp_insert "${db[@]}" --tables=1 --table-size=10000 prepare >/dev/null
sb=$(sysbench oltp_insert "${db[@]}" --tables=1 --table-size=10000 --threads="$conc" \
    --time="$secs" --percentile=99 run)
sb_tps=$(awk '/transactions:/ {gsub(/\(/, "", $3); print $3}' <<<"$sb")
sb_p99=$(awk '/99th percentile:/ {print $3}' <<<"$sb")
sb_avg=$(awk '/avg:/ {print $2}' <<<"$sb")
sysbench oltp_insert "${db[@]}" --tables=1 cleanup >/dev/null
printf '%-34s %10s tx/s    avg %7s ms   p99 %7s ms\n' "sysbench oltp_insert" "$sb_tps" "$sb_avg" "$sb_p99"

out=$(BENCH_KEY=$PARLEY_API_KEY BENCH_RUN=$RANDOM wrk -t1 -c"$conc" -d"${secs}s" --latency \
    -s tests/bench/send.lua "$base" -- "${targets[@]}")
rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
errs=$(awk '/^errors:/ {print $2}' <<<"$out")
printf '%-34s %10s msg/s   p50 %8s   p99 %8s   (%s errors)\n' "POST .../messages (1 worker)" "$rps" "$p50" "$p99" "$errs"
awk -v a="$rps" -v b="$sb_tps" 'BEGIN { printf "ratio send / sysbench: %.2f\n", a / b }'

# history: one conversation with 10,000 messages, pages of 50 from random points
cid=${targets[0]%%:*}
user=${targets[0]##*:}
have=$(api GET "/v1/conversations/$cid" "" "$user" | jq -r .last_seq)
if [ "$have" -lt 10000 ]; then
    seq $((have + 1)) 10000 | xargs -P 16 -I{} curl -sf -o /dev/null -H "Authorization: Bearer $PARLEY_API_KEY" \
        -H "X-Parley-User: $user" -H 'content-type: application/json' \
        -d '{"client_id":"h{}","text":"history {}"}' "$base/v1/conversations/$cid/messages"
fi
cat > "$dir/history.lua" <<LUA
math.randomseed(42)
function request()
    local before = math.random(60, 10000)
    return wrk.format("GET", "/v1/conversations/$cid/messages?before=" .. before .. "&limit=50",
        { ["Authorization"] = "Bearer $PARLEY_API_KEY", ["X-Parley-User"] = "$user" })
end
LUA
out=$(wrk -t1 -c8 -d"${secs}s" --latency -s "$dir/history.lua" "$base")
printf '%-34s %10s pages/s (50 messages each)  p50 %8s   p99 %8s\n' "history, 10,000-message conversation" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" "$(awk '$1 == "50%" {print $2}' <<<"$out")" \
    "$(awk '$1 == "99%" {print $2}' <<<"$out")"
