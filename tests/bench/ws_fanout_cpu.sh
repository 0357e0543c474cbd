#!/usr/bin/env bash
# Benchmark (figures, not pass/fail): server CPU per delivered WebSocket frame when
# one channel fans out to 1, 100 and 1000 subscribers. Messages carry a 64-byte
# payload ("ts=<ns> xxx..."), published by HTTP POST (nchan: its publisher location;
# node: POST /pub; parley: POST /v1/conversations/{cid}/messages), in two patterns:
#   unbatched  200 messages/s, one at a time (each message fans out on its own)
#   burst      as fast as possible, up to 64 requests in flight (parley: 16 x 4)
# CPU = utime+stime delta of the server's processes (/proc/PID/stat; nginx: its
# workers) between "all subscribers ready" and "every subscriber got every
# message"; per frame = CPU / frames delivered. The publisher's requests are part
# of the server's work and are included. /proc/PID/stat counts in clock ticks
# (10 ms), so the threads' schedstat run time (ns) is shown beside it. For parley
# the test stack's MariaDB and Redis CPU is shown apart (backend_us/f). ROUNDS
# rounds (default 3) per server; the table shows medians and the range of us/frame.
#
#   tests/bench/ws_fanout_cpu.sh [--servers nchan,node,parley]
#   WS_SERVERS=parley ROUNDS=1 tests/bench/ws_fanout_cpu.sh
set -euo pipefail
. "$(dirname "$0")/ws_lib.sh"
parse_servers "$@"
rounds=${ROUNDS:-3}
bench_init
body64=$(payload64)
results=$work/results

sched_ns() {  # sum of on-CPU time over every thread of the server's processes
    local p t=0 v f
    for p in $(server_pids); do
        for f in /proc/"$p"/task/*/schedstat; do
            v=$(cut -d' ' -f1 "$f" 2>/dev/null || echo 0)
            t=$((t + v))
        done
    done
    echo "$t"
}

# messages per run: enough CPU time to measure (10 ms ticks), each run a few seconds
msgs() {  # msgs PATTERN SUBS
    case $1:$2 in
        unbatched:1) echo 600 ;; unbatched:100) echo 600 ;; unbatched:1000) echo 200 ;;
        burst:1) [ "$s" = parley ] && echo 1000 || echo 5000 ;;   # parley: ~500 sends/s
        burst:100) echo 1000 ;; burst:1000) echo 200 ;;
    esac
}

run_one() {  # run_one SERVER SUBS PATTERN ROUND
    local s=$1 subs=$2 pattern=$3 round=$4 m chan out recvpid c0 c1 n0 n1 b0 b1 frames other ready
    m=$(msgs "$pattern" "$subs")
    chan=fan-$subs-$pattern-$round
    local sub=(--host 127.0.0.1 --port "$srv_port" -n "$subs" --conn-rate 4000 --expect "$m"
               --quiet 5 --duration 60 --hold -1)
    local pub=(--count "$m" --duration 60)
    case $pattern in
        unbatched) pub+=(--msg-rate 200 --pipeline 4) ;;
        burst) pub+=(--msg-rate 0 --pipeline 64) ;;
    esac
    if [ "$s" = parley ]; then
        sub+=(--paths "$(parley_paths "$subs")" "${parley_ws_opts[@]}")
        pub+=(--url "http://127.0.0.1:$srv_port/v1/conversations/${group[$subs]}/messages"
              -H "Authorization: Bearer $PARLEY_API_KEY" -H "X-Parley-User: pub"
              --body "$(parley_text_body "$chan-$RANDOM-")")
        [ "$pattern" = burst ] && pub+=(--pub-conns 16 --pipeline 4)
    else
        sub+=(--path "$(sub_path "$chan")")
        pub+=(--url "$(pub_url "$chan")" --body "$body64")
    fi
    out=$work/fan-$s-$subs-$pattern-$round.out
    "$WS_LOAD" recv "${sub[@]}" > "$out" 2> "$out.err" &
    recvpid=$!
    bg_pids+=("$recvpid")
    wait_line "$out" '^event=ready' 60 || { cat "$out.err" >&2; exit 1; }
    ready=$(sed -n 's/^event=ready .* ready=\([0-9]*\) .*/\1/p' "$out")
    if [ "${ready:-0}" -eq 0 ]; then   # nothing to measure: say why and go on
        kill "$recvpid" 2>/dev/null || true
        wait "$recvpid" 2>/dev/null || true
        echo "  ($s $subs ${pattern:-} round $round: no subscriber ready; first error: $(val "$out" first_error))" >&2
        return 0
    fi
    sleep "$settle"   # let the connection work (parley: sessions, presence) finish
    c0=$(cpu_us); n0=$(sched_ns); b0=$(backend_cpu_us)
    "$WS_LOAD" pub-http "${pub[@]}" > "$out.pub" || true
    wait_line "$out" '^event=done' 70 || true
    c1=$(cpu_us); n1=$(sched_ns); b1=$(backend_cpu_us)
    kill "$recvpid" 2>/dev/null || true
    wait "$recvpid" 2>/dev/null || true
    frames=$(val "$out" ts_frames)
    echo "$s $subs $pattern $round $m ${frames:-0} $((c1 - c0)) $((n1 - n0)) $(val "$out" ts_frame_bytes_avg)" \
         "$(val "$out.pub" send_rate) $(val "$out.pub" send_s) $(val "$out" lat_max_ms) $((b1 - b0))" >> "$results"
    if [ "${frames:-0}" -ne $((m * subs)) ]; then
        echo "  ($s $subs $pattern round $round: delivered ${frames:-0} of $((m * subs)); publisher ok=$(val "$out.pub" ok)" \
             "non2xx=$(val "$out.pub" non2xx) $(val "$out.pub" first_bad_status) $(val "$out.pub" first_bad_body);" \
             "subscribers ready=$(val "$out" ready) closed=$(val "$out" closed_after_ready) first_error=$(val "$out" first_error))"
    fi
    other=$(( $(val "$out" frames) - ${frames:-0} ))
    if [ "$other" -gt 0 ]; then
        echo "  ($s $subs $pattern round $round: $other other frames arrived once the connections were ready; not counted)"
    fi
}

echo "== fanout CPU: 1 channel, 64-byte payloads, $rounds rounds, $(nproc) cores shared by server, subscribers and publisher"
: > "$results"
for s in "${servers[@]}"; do
    start_server "$s"
    settle=0.5
    if [ "$s" = parley ]; then
        settle=1
        parley_users 1000
        declare -A group=([1]=$(parley_group g1 1) [100]=$(parley_group g100 100) [1000]=$(parley_group g1000 1000))
    fi
    for round in $(seq 1 "$rounds"); do
        for subs in 1 100 1000; do
            for pattern in unbatched burst; do
                run_one "$s" "$subs" "$pattern" "$round"
            done
        done
    done
    stop_server
done

printf '%-7s %5s %-9s %5s %8s %9s %15s %10s %8s %10s %10s %12s\n' server subs pattern msgs frames \
    us/frame "(min..max)" sched_us/f frame_B pub_msg/s frames/s backend_us/f
# fields: server subs pattern round msgs frames cpu_us sched_ns frame_B pub_rate send_s lat_max_ms backend_us
for s in "${servers[@]}"; do
    for subs in 1 100 1000; do
        for pattern in unbatched burst; do
            awk -v s="$s" -v subs="$subs" -v p="$pattern" '
                function median(a, n,   i, j, t) {
                    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
                    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
                }
                $1 == s && $2 == subs && $3 == p {
                    n++; m = $5; fr = $6 > 0 ? $6 : 1; f[n] = $6
                    u[n] = $7 / fr; k[n] = $8 / 1000 / fr; b = $9; r[n] = $10
                    span = $11 + $12 / 1000; fps[n] = span > 0 ? $6 / span : 0; be[n] = $13 / fr
                    if (n == 1 || u[n] < lo) lo = u[n]; if (n == 1 || u[n] > hi) hi = u[n]
                }
                END {
                    if (!n) exit
                    range = sprintf("(%.2f..%.2f)", lo, hi)
                    bk = s == "parley" ? sprintf("%.2f", median(be, n)) : "-"
                    printf "%-7s %5d %-9s %5d %8d %9.2f %15s %10.2f %8.0f %10.0f %10.0f %12s\n", s, subs, p, m,
                        median(f, n), median(u, n), range, median(k, n), b, median(r, n), median(fps, n), bk
                }' "$results"
        done
    done
done
echo "(medians over rounds; us/frame: /proc/PID/stat utime+stime per delivered frame; sched_us/f: the same from"
echo " schedstat; frames/s: frames / (publishing time + the last frame's latency); backend_us/f: parley's"
echo " MariaDB + Redis (test stack) utime+stime per frame, not in us/frame; the peers have no backend)"
