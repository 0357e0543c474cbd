#!/usr/bin/env bash
# Benchmark (figures, not pass/fail): Parley's send-to-receive latency when the
# subscribers sit on the publisher's own worker and when they sit on another node.
#
# Two private nginx instances, nodes A and B, one worker each, on the test stack's
# MariaDB and Redis (same parley_db, parley_redis, parley_token_key; parley_node_id 1
# and 2). Messages are published at 100 messages/s with
# POST /v1/conversations/{cid}/messages to node A; the subscribers (the group's
# members, 1 or 1000) are connected
#   A  to node A: the publishing worker delivers (the event still goes through Redis
#      pub/sub: Parley publishes every event, also to the worker that sent it)
#   B  to node B: the event crosses processes through Redis
# Rounds alternate (A then B, B then A, ...), ROUNDS (default 3) per case of
# SECONDS (default 5) each. Every message carries ts=<CLOCK_REALTIME ns> taken when
# the request is written; every subscriber records now - ts (one machine, one clock).
# The table shows medians of the rounds' percentiles, the range of p99, the ratios
# B/A of p50 and p99, and the server CPU per delivered frame (utime+stime, between
# "all subscribers ready" and "every subscriber has every message"): the nginx
# workers of both nodes (the publishing requests included), and apart from them
# MariaDB and Redis of the test stack.
#
#   scripts/stack.sh test start; make build; make -C tests/bench
#   tests/bench/ws_cross.sh [SECONDS]
#   ROUNDS=1 tests/bench/ws_cross.sh 3
set -euo pipefail
. "$(dirname "$0")/ws_lib.sh"
parse_servers --servers parley "$@"
secs=${args[0]:-5}
rounds=${ROUNDS:-3}
rate=100
m=$((secs * rate))
bench_init
results=$work/results
: > "$results"

# node B: a second private nginx beside the one start_server runs (node A)
b_dir=$work/parley-b
b_port=''
b_pid=''

stop_b() {
    [ -n "$b_pid" ] || return 0
    "$NGINX" -p "$b_dir" -c "$b_dir/nginx.conf" -s quit 2>/dev/null || kill "$b_pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do kill -0 "$b_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$b_pid" 2>/dev/null; then kill -TERM "$b_pid" 2>/dev/null || true; sleep 1; fi
    if [ -s "$b_dir/error.log" ] && grep -Eq '\[(error|alert|emerg|crit)\]' "$b_dir/error.log"; then
        echo "  (node B error.log: $(grep -Ec '\[(error|alert|emerg|crit)\]' "$b_dir/error.log") error/alert/emerg/crit lines; the first:)" >&2
        grep -E '\[(error|alert|emerg|crit)\]' "$b_dir/error.log" | head -5 | cut -c1-400 >&2
    fi
    b_pid=''
}

cross_cleanup() {
    local p
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    bg_pids=()
    stop_b          # before node A: stopping A deletes the tenant
    bench_cleanup
}
trap cross_cleanup EXIT

start_b() {
    b_port=$(free_port)
    parley_conf "$b_dir" "$b_port" 2 "$srv_dir/token.key"
    "$NGINX" -p "$b_dir" -c "$b_dir/nginx.conf" -q
    local i
    for i in $(seq 1 50); do [ -s "$b_dir/nginx.pid" ] && break; sleep 0.1; done
    b_pid=$(cat "$b_dir/nginx.pid")
    wait_port "$b_port" 10
}

workers_of() { ps -o pid= --ppid "$1" | tr -d ' '; }
pidfile() { if [ -s "$1" ]; then cat "$1"; fi; }

# cpu_snapshot: "nodeA_us nodeB_us mariadb_us redis_us"
cpu_snapshot() {
    # shellcheck disable=SC2046
    echo "$(cpu_us_of $(workers_of "$srv_pid")) $(cpu_us_of $(workers_of "$b_pid"))" \
         "$(cpu_us_of $(pidfile "$PARLEY_VAR/run/db.pid")) $(cpu_us_of $(pidfile "$PARLEY_VAR/run/redis.pid"))"
}

run_one() {  # run_one NODE(A|B) SUBS ROUND
    local node=$1 subs=$2 round=$3 port out recvpid frames ready c0 c1 want served
    if [ "$node" = A ]; then port=$srv_port; want=$(workers_of "$srv_pid"); else port=$b_port; want=$(workers_of "$b_pid"); fi
    local sub=(--host 127.0.0.1 --port "$port" -n "$subs" --conn-rate 4000 --expect "$m"
               --quiet 5 --duration $((secs + 60)) --hold -1 --dump 1
               --paths "$(parley_paths "$subs")" "${parley_ws_opts[@]}")
    local pub=(--count "$m" --msg-rate "$rate" --duration $((secs + 60))
               --url "http://127.0.0.1:$srv_port/v1/conversations/${group[$subs]}/messages"
               -H "Authorization: Bearer $PARLEY_API_KEY" -H "X-Parley-User: pub"
               --body "$(parley_text_body "x$node-$subs-$round-$RANDOM-")" --pub-conns 4)
    out=$work/cross-$node-$subs-$round.out
    "$WS_LOAD" recv "${sub[@]}" > "$out" 2> "$out.err" &
    recvpid=$!
    bg_pids+=("$recvpid")
    wait_line "$out" '^event=ready' 60 || { cat "$out.err" >&2; exit 1; }
    ready=$(sed -n 's/^event=ready .* ready=\([0-9]*\) .*/\1/p' "$out")
    if [ "${ready:-0}" -eq 0 ]; then
        kill "$recvpid" 2>/dev/null || true
        wait "$recvpid" 2>/dev/null || true
        echo "  (node $node, $subs round $round: no subscriber ready; first error: $(val "$out" first_error))" >&2
        return 0
    fi
    # the hello of the first connection names the worker that serves it
    served=$(sed -n 's/.*"worker":\([0-9]*\).*/\1/p' "$out.err" | head -1)
    if [ "$served" != "$want" ]; then
        echo "  (node $node, $subs round $round: served by worker ${served:-?}, expected $want)" >&2
    fi
    sleep "$settle"   # sessions, presence
    c0=$(cpu_snapshot)
    "$WS_LOAD" pub-http "${pub[@]}" > "$out.pub" || true
    wait_line "$out" '^event=done' 70 || true
    c1=$(cpu_snapshot)
    kill "$recvpid" 2>/dev/null || true
    wait "$recvpid" 2>/dev/null || true
    frames=$(val "$out" ts_frames)
    # fields: node subs round frames p50 p90 p99 max pub_rate pub_p99 frame_B cpuA cpuB cpuDB cpuRedis pub_p50
    echo "$node $subs $round ${frames:-0} $(val "$out" lat_p50_ms) $(val "$out" lat_p90_ms) $(val "$out" lat_p99_ms)" \
         "$(val "$out" lat_max_ms) $(val "$out.pub" send_rate) $(val "$out.pub" req_p99_ms) $(val "$out" ts_frame_bytes_avg)" \
         "$(awk -v a="$c0" -v b="$c1" 'BEGIN { n = split(a, x, " "); split(b, y, " "); for (i = 1; i <= n; i++) printf "%s%d", (i > 1 ? " " : ""), y[i] - x[i] }')" \
         "$(val "$out.pub" req_p50_ms)" >> "$results"
    if [ "${frames:-0}" -ne $((m * subs)) ]; then
        echo "  (node $node, $subs round $round: delivered ${frames:-0} of $((m * subs)); publisher ok=$(val "$out.pub" ok)" \
             "non2xx=$(val "$out.pub" non2xx) $(val "$out.pub" first_bad_status) $(val "$out.pub" first_bad_body);" \
             "subscribers ready=$(val "$out" ready) first_error=$(val "$out" first_error))"
    fi
}

PARLEY_NODE_ID=1 start_server parley    # node A: creates the tenant
start_b
settle=3
echo "== parley, same worker (A) vs across nodes (B): $rate messages/s for ${secs}s per round, $rounds rounds," \
     "64-byte texts, published to node A; nodes A and B one worker each; publisher, nodes, backends and" \
     "subscribers on $(nproc) cores"
echo "   module: $PARLEY_MODULE, $(date -u -r "$PARLEY_MODULE" '+%F %T UTC'), sha256 $(sha256sum "$PARLEY_MODULE" | cut -c1-12)"
echo "   node A: port $srv_port, worker $(workers_of "$srv_pid"); node B: port $b_port, worker $(workers_of "$b_pid")"
parley_users 1000
declare -A group=([1]=$(parley_group x1 1) [1000]=$(parley_group x1000 1000))
for round in $(seq 1 "$rounds"); do
    if [ $((round % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
    for subs in 1 1000; do
        for node in $order; do
            run_one "$node" "$subs" "$round"
        done
    done
done
stop_b
stop_server

printf '%-5s %5s %8s %8s %8s %8s %17s %8s %9s %8s %8s %10s %9s %9s\n' node subs frames p50_ms p90_ms p99_ms \
    "(p99 min..max)" max_ms pub_msg/s pub_p50 pub_p99 nginx_us/f db_us/f redis_us/f
for subs in 1 1000; do
    for node in A B; do
        awk -v node="$node" -v subs="$subs" '
            function median(a, n,   i, j, t) {
                for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
                return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            }
            $1 == node && $2 == subs {
                n++; fr = $4 > 0 ? $4 : 1
                f[n] = $4; p50[n] = $5; p90[n] = $6; p99[n] = $7; mx[n] = $8; r[n] = $9; pp[n] = $10; p5[n] = $16
                ng[n] = ($12 + $13) / fr; db[n] = $14 / fr; rd[n] = $15 / fr
                if (n == 1 || $7 < lo) lo = $7; if (n == 1 || $7 > hi) hi = $7
            }
            END {
                if (!n) exit
                printf "%-5s %5d %8d %8.3f %8.3f %8.3f %17s %8.3f %9.1f %8.3f %8.3f %10.2f %9.2f %9.2f\n", node, subs,
                    median(f, n), median(p50, n), median(p90, n), median(p99, n), sprintf("(%.2f..%.2f)", lo, hi),
                    median(mx, n), median(r, n), median(p5, n), median(pp, n), median(ng, n), median(db, n), median(rd, n)
            }' "$results"
    done
done
echo "(medians over rounds; pub_p50, pub_p99: the publishing request's own latency in ms; nginx_us/f: utime+stime of both"
echo " nodes' workers per delivered frame, publishing requests included; db_us/f, redis_us/f: the test stack's"
echo " MariaDB and Redis, not in nginx_us/f)"
echo
printf '%5s %10s %22s %10s %22s %18s %18s\n' subs p50_B/A "(per round min..max)" p99_B/A "(per round min..max)" \
    "subs@A: us/f" "subs@B: us/f"
for subs in 1 1000; do
    awk -v subs="$subs" '
        function median(a, n,   i, j, t) {
            for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        $2 == subs { fr = $4 > 0 ? $4 : 1
            if ($1 == "A") { na++; a50[na] = $5; a99[na] = $7; r50a[$3] = $5; r99a[$3] = $7; aa[na] = $12 / fr; ab[na] = $13 / fr }
            else           { nb++; b50[nb] = $5; b99[nb] = $7; r50b[$3] = $5; r99b[$3] = $7; ba[nb] = $12 / fr; bb[nb] = $13 / fr } }
        END {
            if (!na || !nb) exit
            k = 0
            for (r in r50a) if (r in r50b && r50a[r] > 0 && r99a[r] > 0) {
                k++; q50 = r50b[r] / r50a[r]; q99 = r99b[r] / r99a[r]
                if (k == 1 || q50 < l50) l50 = q50; if (k == 1 || q50 > h50) h50 = q50
                if (k == 1 || q99 < l99) l99 = q99; if (k == 1 || q99 > h99) h99 = q99
            }
            printf "%5d %10.2f %22s %10.2f %22s %18s %18s\n", subs, median(b50, nb) / median(a50, na),
                sprintf("(%.2f..%.2f)", l50, h50), median(b99, nb) / median(a99, na), sprintf("(%.2f..%.2f)", l99, h99),
                sprintf("A %.1f B %.1f", median(aa, na), median(ab, na)), sprintf("A %.1f B %.1f", median(ba, nb), median(bb, nb))
        }' "$results"
done
echo "(B/A: ratio of the medians above; per round: B over A of the same round; subs@A, subs@B: the workers"
echo " of node A and of node B apart, utime+stime per frame, in the runs with the subscribers on A, on B)"
echo "raw rounds (node subs round frames p50 p90 p99 max pub_rate pub_p99 frame_B cpuA_us cpuB_us db_us redis_us pub_p50):"
sed 's/^/  /' "$results"
