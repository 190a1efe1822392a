#!/usr/bin/env bash
# Runs every fuzz target (fuzz/README.md) for FUZZ_SECONDS each (default 60) from its seeds and
# the committed corpus; new inputs that reach new code are added to fuzz/corpus/TARGET. A crash
# stops here with libFuzzer's report and the input under fuzz/artifacts/TARGET.
# The stable toolchain builds the targets with RUSTC_BOOTSTRAP=1 (cargo fuzz needs -Z flags).
# No sanitizer: momentd links mimalloc as the process allocator, which ASan cannot replace,
# and the code under test is safe Rust (a panic or an abort is what is looked for).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-60}"
# FUZZ_CRASH_FAILS=0: report a crash (its input kept under fuzz/artifacts) and go on to the
# next target instead of failing.
strict="${FUZZ_CRASH_FAILS:-1}"
found=0
export RUSTC_BOOTSTRAP=1
targets=(event_json event_protobuf config changelog internal_topics)
cargo fuzz build -s none
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "fuzz: $t for ${secs}s"
  log="fuzz/target/$t.log"
  mkdir -p fuzz/target
  status=0
  cargo fuzz run -s none "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    grep -E "panicked|left:|right:|ERROR|SUMMARY|Test unit written|timeout" "$log" | cut -c1-2000 | head -n 20
    echo "fuzz: $t found a crash (the input is under fuzz/artifacts/$t)"
    found=1
    [ "$strict" = 0 ] || exit 1
  fi
done
[ "$found" = 0 ] && echo "fuzz: ok" || echo "fuzz: CRASHES FOUND (see above)"
