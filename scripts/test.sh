#!/usr/bin/env bash
# Runs every test: Criterion unit tests, then the integration tests twice,
# against Debian's nginx with the dynamic module and against the static
# ASan/UBSan build.  Starts its own stack (var/test, its own ports, so it can
# run while `make run` is up) and stops it on every exit path.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

started=$(date +%s)
failed=()
summary=$(mktemp)

cleanup() {
    scripts/stack.sh test stop >/dev/null 2>&1 || true
    rm -f "$summary"
}
trap cleanup EXIT INT TERM

echo "== unit tests (Criterion)"
for t in build/tests/test_*; do
    [ -x "$t" ] || continue
    echo "-- $(basename "$t")"
    "$t" --jobs 2 2> >(tee -a "$summary" >&2) || failed+=("unit:$(basename "$t")")
done

echo "== starting the test stack"
if ! scripts/stack.sh test start; then
    echo "test: the stack did not start"
    exit 1
fi
set -a
# shellcheck disable=SC1091
. var/test/stack.env
set +a

run_integration() {   # run_integration FLAVOR NGINX MODULE FILE...
    local flavor=$1 nginx=$2 module=$3
    shift 3
    echo "== integration tests: $flavor"
    PARLEY_FLAVOR=$flavor PARLEY_NGINX=$nginx PARLEY_MODULE=$module \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=0 \
    UBSAN_OPTIONS=print_stacktrace=1:suppressions=$repo/tests/sanitizer/ubsan.supp \
        node --test $node_flags "$@" \
        | tee -a "$summary"
    [ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("integration:$flavor")
}

# one test file at a time (fault tests stop and start services), each
# bounded; Node 18 (a bare Debian's) knows neither flag
node_flags=
node --help 2>/dev/null | grep -q -- --test-concurrency && node_flags="--test-concurrency=1"
node --help 2>/dev/null | grep -q -- --test-timeout && node_flags="$node_flags --test-timeout=300000"

all_tests=(tests/integration/*.test.mjs)
# the sanitizer build matters where nginx runs; tool tests run once
mapfile -t nginx_tests < <(grep -l -E 'startNginx|nginxTest|startApi' "${all_tests[@]}")

run_integration dynamic /usr/sbin/nginx "$repo/build/modules/ngx_parley_module.so" \
    "${all_tests[@]}"
run_integration asan "$repo/build/asan/sbin/nginx" "" "${nginx_tests[@]}"

echo "== fuzzing (bounded: ${FUZZ_SECONDS:-15}s per harness)"
FUZZ_SECONDS=${FUZZ_SECONDS:-15} scripts/fuzz.sh || failed+=("fuzz")

echo "== done in $(( $(date +%s) - started ))s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
fi
# the closing line over every runner: Criterion's Synthesis and node's counts
sleep 0.2   # let the tee of the last Criterion run finish
awk '/Synthesis: Tested:/ { for (i = 1; i <= NF; i++) { if ($i == "Passing:") p += $(i+1); if ($i == "Failing:" || $i == "Crashing:") f += $(i+1) } }
     /^# pass / { p += $3 } /^# fail / { f += $3 }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$summary"
[ ${#failed[@]} -eq 0 ]
