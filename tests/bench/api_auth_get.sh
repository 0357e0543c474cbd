#!/usr/bin/env bash
# Benchmark (figures, not pass/fail): an authenticated GET (GET /v1/me: JWT
# check + the worker's cached revocation lookup) against nginx's own
# `return 200` in the same server, one worker, wrk, same run.
#
#   tests/bench/api_auth_get.sh [SECONDS] [CONNECTIONS]
#
# Needs the test stack (scripts/stack.sh test start) and a built module.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
secs=${1:-10}
conns=${2:-32}
set -a; . var/test/stack.env; set +a

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
    parley_db 127.0.0.1:$PARLEY_DB_PORT user=$PARLEY_DB_USER password=$PARLEY_DB_PASSWORD database=$PARLEY_DB_NAME pool=4;
    parley_token_key $dir/token.key;
    parley_api_cache_ttl 30s;
    server {
        listen 127.0.0.1:$port;
        location = /ok { return 200 "ok\n"; }
        location /v1/ { parley_api; }
    }
}
CONF
/usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf"
trap '/usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -s quit 2>/dev/null || true' EXIT
sleep 0.5

eval "$(build/bin/parleyctl --db "$PARLEY_DB_URL" tenant create --name "bench-$$-$RANDOM" 2>/dev/null)"
curl -sf -H "Authorization: Bearer $PARLEY_API_KEY" -H 'content-type: application/json' \
    -d '{"user_id":"bench"}' "http://127.0.0.1:$port/v1/users" >/dev/null
token=$(curl -sf -H "Authorization: Bearer $PARLEY_API_KEY" -H 'content-type: application/json' \
    -d '{}' "http://127.0.0.1:$port/v1/users/bench/tokens" | jq -r .token)
curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/me" >/dev/null

run() {   # run NAME FILE URL [HEADER]
    local out
    if [ -n "${4:-}" ]; then
        out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency -H "$4" "$3")
    else
        out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency "$3")
    fi
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    printf '%-28s %12s req/s   p50 %8s   p99 %8s\n' "$1" "$rps" "$p50" "$p99"
    echo "$rps" > "$dir/$2.rps"
}

echo "one nginx worker, wrk -t1 -c$conns -d${secs}s, $(nproc) cores"
# the peer gets the same request bytes (the token header included); runs
# alternate so that a noisy neighbour hurts both sides alike; medians reported
rounds=${ROUNDS:-3}
for i in $(seq 1 "$rounds"); do
    run "return 200 (round $i)" "ok$i" "http://127.0.0.1:$port/ok" "Authorization: Bearer $token"
    run "GET /v1/me (round $i)" "me$i" "http://127.0.0.1:$port/v1/me" "Authorization: Bearer $token"
done
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ok=$(cat "$dir"/ok*.rps | median)
me=$(cat "$dir"/me*.rps | median)
awk -v a="$me" -v b="$ok" 'BEGIN { printf "median: return 200 %.0f req/s, GET /v1/me %.0f req/s, ratio %.2f\n", b, a, a / b }'
