#!/usr/bin/env bash
# fuzz/run_all.sh SECONDS [TARGET...]
#
# Runs every fuzz target (or the ones named) for SECONDS each (default 300), two at a
# time, with debug assertions (overflow checks) on, starting from the committed corpus
# fuzz/corpus/<target>/ and writing what it finds to fuzz/work/<target>/ (not committed;
# the committed seeds are not changed). Logs in fuzz/logs/<target>.log.
#
# Per target it prints: status, executions per second, coverage (cov/ft), corpus size
# (committed + found) and the share of that corpus which reached the target's main
# property (measured by `fuzz_reach`, a stable binary that runs the same harness
# functions, crates/fuzzing). Exits non-zero when any target crashed, leaked, ran out
# of memory (RSS over 2 GB, or one allocation over 256 MB) or timed out (libFuzzer's exit status; the input is kept in
# fuzz/artifacts/<target>/: commit it, it then replays in `cargo test --workspace`),
# or when the reporter failed.
#
# Environment: FUZZ_JOBS (targets run at once, default 2); CARGO_TARGET_DIR (where the
# fuzz targets and fuzz_reach are built); REACH_TARGET_DIR (a separate target directory
# for the stable fuzz_reach build, e.g. the one `cargo test` already uses).
set -u
cd "$(dirname "$0")"
secs=${1:-300}
shift || true
jobs=${FUZZ_JOBS:-2}
mkdir -p logs work
if [ $# -gt 0 ]; then targets="$*"; else targets=$(cargo +nightly fuzz list); fi

echo "building the fuzz targets (nightly, debug assertions)..."
cargo +nightly fuzz build -a > logs/build.log 2>&1 || { tail -30 logs/build.log; exit 1; }
echo "building fuzz_reach (stable)..."
reach_dir=${REACH_TARGET_DIR:-${CARGO_TARGET_DIR:-$(cd .. && pwd)/target}}
(cd .. && CARGO_TARGET_DIR="$reach_dir" cargo build -q -p isoswitch-fuzzing --bin fuzz_reach) \
  > logs/reach-build.log 2>&1 || { tail -30 logs/reach-build.log; exit 1; }
reach_bin="$reach_dir/debug/fuzz_reach"
# The binaries built above are run directly (`cargo fuzz run` would rebuild them when a
# source changes during the run).
# (cargo fuzz puts them under CARGO_TARGET_DIR when it is set, else fuzz/target).
bin_dir=${CARGO_TARGET_DIR:-target}/$(rustc +nightly -vV | sed -n 's/^host: //p')/release

run() {
  local t=$1
  mkdir -p "work/$t" "corpus/$t" "artifacts/$t"
  local start=$SECONDS
  "$bin_dir/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 \
    -print_final_stats=1 "work/$t" "corpus/$t" > "logs/$t.log" 2>&1
  local rc=$?
  local took=$((SECONDS - start))
  local status=ok
  if [ $rc -ne 0 ]; then
    status="FAIL(rc=$rc)"
    grep -q "ERROR: libFuzzer: timeout" "logs/$t.log" && status=TIMEOUT
    grep -q "LeakSanitizer" "logs/$t.log" && status=LEAK
    grep -q "out-of-memory\|malloc(.*) exceeds" "logs/$t.log" && status=OOM
    grep -q "deadly signal\|panicked at" "logs/$t.log" && status=CRASH
  fi
  local execs cov ft files reached
  execs=$(grep -o "stat::average_exec_per_sec: *[0-9]*" "logs/$t.log" | grep -o "[0-9]*$" | tail -1)
  cov=$(grep -o "cov: [0-9]*" "logs/$t.log" | tail -1 | grep -o "[0-9]*")
  ft=$(grep -o "ft: [0-9]*" "logs/$t.log" | tail -1 | grep -o "[0-9]*")
  files=$(find "work/$t" "corpus/$t" -type f | wc -l)
  reached=$("$reach_bin" "$t" "corpus/$t" "work/$t" 2> "logs/$t.reach.log")
  [ $? -ne 0 ] && status="$status,REACH-FAILED"
  printf '%-24s %-10s %5ss exec/s=%-7s cov=%-6s ft=%-6s corpus=%-6s %s\n' \
    "$t" "$status" "$took" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$files" \
    "${reached#"$t "}" >> logs/summary.txt
  [ "$status" = ok ]
}

: > logs/summary.txt
fail=0
running=0
for t in $targets; do
  run "$t" &
  running=$((running + 1))
  if [ $running -ge "$jobs" ]; then
    wait -n || fail=1
    running=$((running - 1))
  fi
done
while [ $running -gt 0 ]; do
  wait -n || fail=1
  running=$((running - 1))
done
sort logs/summary.txt
if [ $fail -ne 0 ]; then
  echo "run_all: at least one target failed (see fuzz/logs/ and fuzz/artifacts/)"
  exit 1
fi
echo "run_all: every target ran ${secs}s clean"
