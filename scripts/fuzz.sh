#!/usr/bin/env bash
# `make fuzz` (README, Fuzzing): runs each cargo-fuzz target in fuzz/ for
# FUZZ_SECONDS (default 60), one at a time with one job (the machine is
# shared), starting from the seeds in fuzz/seeds/<target> and the corpus
# kept in fuzz/corpus/<target> (not committed). A crash stops the run with
# libFuzzer's report; its input is saved under fuzz/artifacts/<target>/.
#
# cargo-fuzz needs nightly features: on the stable toolchain they are
# enabled with RUSTC_BOOTSTRAP=1. cargo-fuzz itself is installed from
# crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-jodo toolzz read_query}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# No sanitizer: the targets run safe Rust only (SQLite is never reached), so
# AddressSanitizer would find nothing and cost half the speed. Debug
# assertions and overflow checks stay on (cargo fuzz's default).
FLAGS=(--sanitizer none)
cargo fuzz build "${FLAGS[@]}"
for target in $TARGETS; do
    mkdir -p "corpus/$target"
    echo "fuzz: $target for ${SECONDS_EACH}s"
    cargo fuzz run "${FLAGS[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
        2>&1 | tee "corpus/$target.log" | grep -E '^(#[0-9]+\s+(INITED|DONE)|stat::|==[0-9]+==|SUMMARY|Done)' || true
    if [ "${PIPESTATUS[0]}" -ne 0 ]; then
        echo "fuzz: $target FAILED; see fuzz/corpus/$target.log and fuzz/artifacts/$target/" >&2
        exit 1
    fi
    echo "fuzz: $target: corpus $(find "corpus/$target" -type f | wc -l) inputs"
done
