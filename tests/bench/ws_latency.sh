#!/usr/bin/env bash
# Benchmark (figures, not pass/fail): send-to-receive latency over WebSocket, for 1
# subscriber and for 1000 subscribers of one channel, at 100 messages/s. Each
# message carries ts=<CLOCK_REALTIME ns> when it is sent (HTTP POST: nchan's
# publisher, node's POST /pub, parley's POST /v1/conversations/{cid}/messages);
# every subscriber records now - ts for every frame (publisher and subscribers run
# on the same machine, so one clock). ROUNDS rounds (default 3) of SECONDS each per
# case; the table shows the medians of the rounds' percentiles and the range of p99.
#
#   tests/bench/ws_latency.sh [SECONDS] [--servers nchan,node,parley]   (SECONDS default 5)
#   WS_SERVERS=parley ROUNDS=1 tests/bench/ws_latency.sh 10
set -euo pipefail
. "$(dirname "$0")/ws_lib.sh"
parse_servers "$@"
secs=${args[0]:-5}
rounds=${ROUNDS:-3}
rate=100
m=$((secs * rate))
bench_init
body64=$(payload64)
results=$work/results
: > "$results"

run_one() {  # run_one SERVER SUBS ROUND
    local s=$1 subs=$2 round=$3 chan out recvpid frames ready
    chan=lat-$subs-$round
    local sub=(--host 127.0.0.1 --port "$srv_port" -n "$subs" --conn-rate 4000 --expect "$m"
               --quiet 5 --duration $((secs + 60)) --hold -1)
    local pub=(--count "$m" --msg-rate "$rate" --duration $((secs + 60)))
    if [ "$s" = parley ]; then
        sub+=(--paths "$(parley_paths "$subs")" "${parley_ws_opts[@]}")
        pub+=(--url "http://127.0.0.1:$srv_port/v1/conversations/${group[$subs]}/messages"
              -H "Authorization: Bearer $PARLEY_API_KEY" -H "X-Parley-User: pub"
              --body "$(parley_text_body "$chan-$RANDOM-")" --pub-conns 4)
    else
        sub+=(--path "$(sub_path "$chan")")
        pub+=(--url "$(pub_url "$chan")" --body "$body64" --pipeline 8)
    fi
    out=$work/lat-$s-$subs-$round.out
    "$WS_LOAD" recv "${sub[@]}" > "$out" 2> "$out.err" &
    recvpid=$!
    bg_pids+=("$recvpid")
    wait_line "$out" '^event=ready' 60 || { cat "$out.err" >&2; exit 1; }
    ready=$(sed -n 's/^event=ready .* ready=\([0-9]*\) .*/\1/p' "$out")
    if [ "${ready:-0}" -eq 0 ]; then   # nothing to measure: say why and go on
        kill "$recvpid" 2>/dev/null || true
        wait "$recvpid" 2>/dev/null || true
        echo "  ($s $subs round $round: no subscriber ready; first error: $(val "$out" first_error))" >&2
        return 0
    fi
    sleep "$settle"
    "$WS_LOAD" pub-http "${pub[@]}" > "$out.pub" || true
    wait_line "$out" '^event=done' 70 || true
    kill "$recvpid" 2>/dev/null || true
    wait "$recvpid" 2>/dev/null || true
    frames=$(val "$out" ts_frames)
    echo "$s $subs $round ${frames:-0} $(val "$out" lat_p50_ms) $(val "$out" lat_p90_ms) $(val "$out" lat_p99_ms)" \
         "$(val "$out" lat_max_ms) $(val "$out.pub" send_rate) $(val "$out.pub" req_p99_ms) $(val "$out" ts_frame_bytes_avg)" >> "$results"
    if [ "${frames:-0}" -ne $((m * subs)) ]; then
        echo "  ($s $subs round $round: delivered ${frames:-0} of $((m * subs)); publisher ok=$(val "$out.pub" ok)" \
             "non2xx=$(val "$out.pub" non2xx) $(val "$out.pub" first_bad_status) $(val "$out.pub" first_bad_body);" \
             "subscribers ready=$(val "$out" ready) first_error=$(val "$out" first_error))"
    fi
}

echo "== latency: $rate messages/s for ${secs}s per round, $rounds rounds, 64-byte payloads; publisher, server and subscribers on $(nproc) cores"
for s in "${servers[@]}"; do
    start_server "$s"
    settle=0.5
    if [ "$s" = parley ]; then
        settle=3
        parley_users 1000
        declare -A group=([1]=$(parley_group lat1 1) [1000]=$(parley_group lat1000 1000))
    fi
    for round in $(seq 1 "$rounds"); do
        for subs in 1 1000; do
            run_one "$s" "$subs" "$round"
        done
    done
    stop_server
done

printf '%-7s %5s %8s %8s %8s %8s %17s %8s %9s %8s %8s\n' server subs frames p50_ms p90_ms p99_ms \
    "(p99 min..max)" max_ms pub_msg/s pub_p99 frame_B
# fields: server subs round frames p50 p90 p99 max pub_rate pub_p99 frame_B
for s in "${servers[@]}"; do
    for subs in 1 1000; do
        awk -v s="$s" -v subs="$subs" '
            function median(a, n,   i, j, t) {
                for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
                return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            }
            $1 == s && $2 == subs {
                n++; f[n] = $4; p50[n] = $5; p90[n] = $6; p99[n] = $7; mx[n] = $8; r[n] = $9; pp[n] = $10; b = $11
                if (n == 1 || $7 < lo) lo = $7; if (n == 1 || $7 > hi) hi = $7
            }
            END {
                if (!n) exit
                printf "%-7s %5d %8d %8.3f %8.3f %8.3f %17s %8.3f %9.1f %8.3f %8.0f\n", s, subs, median(f, n),
                    median(p50, n), median(p90, n), median(p99, n), sprintf("(%.2f..%.2f)", lo, hi),
                    median(mx, n), median(r, n), median(pp, n), b
            }' "$results"
    done
done
echo "(medians over rounds; pub_p99: the publishing request's own p99 in ms; frame_B: the delivered frame's payload bytes)"
