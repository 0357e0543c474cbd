#!/usr/bin/env bash
# Builds every libFuzzer harness in tests/fuzz/ with clang and runs each for
# a bounded time (FUZZ_SECONDS, default 20).  Corpora persist in
# build/fuzz/corpus/<harness>/ between runs; crashes fail the run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
seconds=${FUZZ_SECONDS:-20}
mkdir -p build/fuzz
status=0
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    exe=build/fuzz/$name
    corpus=build/fuzz/corpus/$name
    mkdir -p "$corpus"
    # a harness names the lib/ sources it needs in its "// fuzz-sources:" line
    libsrc=$(sed -n 's|^// fuzz-sources: *||p' "$src")
    if [ "$exe" -ot "$src" ] || [ ! -x "$exe" ] || [ -n "$(find lib -newer "$exe" -name '*.[ch]' | head -1)" ]; then
        clang -std=c11 -D_GNU_SOURCE -g -O1 -Ilib \
            -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
            -o "$exe" "$src" $libsrc
    fi
    echo "fuzz: $name for ${seconds}s"
    if ! "$exe" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
        -artifact_prefix=build/fuzz/"$name"- "$corpus" >build/fuzz/"$name".log 2>&1; then
        echo "fuzz: $name FAILED, see build/fuzz/$name.log"; tail -30 build/fuzz/"$name".log
        status=1
    else
        grep -E "stat::number_of_executed_units|cov:" build/fuzz/"$name".log | tail -2 | sed 's/^/  /'
    fi
done
exit $status
