#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 300) each, two at a time; logs in fuzz/logs/.
set -u
cd "$(dirname "$0")"
secs=${1:-300}
mkdir -p logs
targets=$(cargo +nightly fuzz list)
run() { cargo +nightly fuzz run "$1" -- -max_total_time="$secs" -rss_limit_mb=2048 > "logs/$1.log" 2>&1; echo "$1 exit=$?" >> logs/summary.txt; }
: > logs/summary.txt
set -- $targets
while [ $# -gt 0 ]; do
  run "$1" & p1=$!
  if [ $# -gt 1 ]; then run "$2" & p2=$!; wait $p2; shift; fi
  wait $p1; shift
done
