#!/usr/bin/env bash
# Benchmark (figures, not pass/fail): server memory per idle WebSocket connection.
# For each server: start it, read its RSS (nginx: sum of VmRSS over its workers;
# node: the process), open N idle connections (one channel), read the RSS again
# once all are ready, print (growth) / N.
#
#   tests/bench/ws_idle_mem.sh [N] [--servers nchan,node,parley]   (N default 15000)
#   WS_SERVERS=nchan,node,parley tests/bench/ws_idle_mem.sh
#
# parley needs the test stack (scripts/stack.sh test start) and `make build`;
# it creates N users and tokens in a fresh tenant first (deleted at the end).
set -euo pipefail
. "$(dirname "$0")/ws_lib.sh"
parse_servers "$@"
n=${args[0]:-15000}
procs=$(( (n + 9999) / 10000 ))       # at most 10,000 connections per ws_load worker
sources=$(( (n + 19999) / 20000 ))    # at most 20,000 per source address
bench_init

echo "== idle WebSocket connections: N=$n, $(nproc) cores, ws_load: $procs procs, $sources source addresses"
printf '%-8s %12s %12s %12s %14s %10s\n' server rss_before rss_after growth bytes/conn ready
for s in "${servers[@]}"; do
    start_server "$s"
    load=(--host 127.0.0.1 --port "$srv_port" -n "$n" --procs "$procs" --sources "$sources"
          --conn-rate 4000 --connect-timeout 60 --duration 120)
    case $s in
        parley)
            parley_users "$n"
            load+=(--paths "$(parley_paths "$n")" "${parley_ws_opts[@]}")
            ;;
        *) load+=(--path "$(sub_path idle)") ;;
    esac
    sleep 1
    before=$(rss_kb); bbefore=$(backend_rss_kb)
    out=$work/idle-$s.out
    "$WS_LOAD" idle "${load[@]}" > "$out" 2> "$work/idle-$s.err" &
    bg_pids+=("$!")
    loadpid=$!
    if ! wait_line "$out" '^event=ready' 150; then
        cat "$work/idle-$s.err" >&2
    fi
    sleep 2       # let the server settle (node: pending allocations, nginx: nothing)
    after=$(rss_kb); bafter=$(backend_rss_kb)
    kill "$loadpid" 2>/dev/null || true
    wait "$loadpid" 2>/dev/null || true
    ready=$(val "$out" ready)
    failed=$(val "$out" failed)
    per=$(awk -v a="$after" -v b="$before" -v n="${ready:-0}" 'BEGIN { if (n > 0) printf "%.0f", (a - b) * 1024 / n; else print "n/a" }')
    printf '%-8s %9s kB %9s kB %9s kB %14s %10s\n' "$s" "$before" "$after" "$((after - before))" "$per" "$ready"
    if [ "${failed:-0}" != 0 ]; then
        echo "  ($failed failed; first error: $(val "$out" first_error); connect_s=$(val "$out" connect_s))"
    fi
    if [ "$s" = parley ]; then
        echo "  (parley's backends, MariaDB + Redis of the test stack: RSS $bbefore kB -> $bafter kB," \
             "$(awk -v a="$bafter" -v b="$bbefore" -v n="${ready:-0}" 'BEGIN { if (n > 0) printf "%.0f", (a - b) * 1024 / n; else print "n/a" }') bytes/conn; not in the row above)"
    fi
    echo "  summary: server=$s n=$n ready=$ready failed=$failed rss_before_kb=$before rss_after_kb=$after bytes_per_conn=$per connect_s=$(val "$out" connect_s)"
    stop_server
done
