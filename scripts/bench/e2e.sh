#!/usr/bin/env bash
# End-to-end throughput of host_sim + switchd + terminal_sim on one machine (issue 10's
# benchmark): fresh data directories, release binaries from BIN_DIR (default
# target/release/examples), one run; prints tx/s, p50/p99 and each process's CPU µs per
# transaction (user + system time over the run / transactions).
#
#   scripts/bench/e2e.sh [COUNT] [WINDOW] [DURATION] [BIN_DIR]
#   e.g. scripts/bench/e2e.sh 200 1 15s
#
# With STORE=postgres://USER@HOST:PORT/DB both host_sim and switchd keep their state in
# that database (a fresh one each run is best: createdb) instead of data directories.
set -euo pipefail
count=${1:-200}
window=${2:-1}
duration=${3:-15s}
bin=${4:-target/release/examples}
port_base=$(( 20000 + RANDOM % 20000 ))
host_port=$port_base
switch_port=$(( port_base + 1 ))
work=$(mktemp -d)
trap 'kill $hpid $spid 2>/dev/null || true; rm -rf "$work"' EXIT

cpu_of() { # pid -> user+system clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
db_cpu() { # user+system clock ticks of every process of the postgres user (0 without)
  local t=0 p
  for p in $(pgrep -u postgres 2>/dev/null || true); do
    t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) ))
  done
  echo $t
}
idle_of() { # the machine's idle + iowait clock ticks
  awk '/^cpu /{print $5 + $6}' /proc/stat
}

store_host=(--data-dir "$work/host")
store_switch=(--data-dir "$work/switch")
if [ -n "${STORE:-}" ]; then
  store_host=(--store "$STORE")
  store_switch=(--store "$STORE" --node bench-node)
fi
"$bin/host_sim" --listen 127.0.0.1:$host_port "${store_host[@]}" > "$work/host.log" 2>&1 &
hpid=$!
sleep 0.5
"$bin/switchd" --listen 127.0.0.1:$switch_port --host 127.0.0.1:$host_port \
  "${store_switch[@]}" > "$work/switch.log" 2>&1 &
spid=$!
sleep 1
h0=$(cpu_of $hpid); s0=$(cpu_of $spid); d0=$(db_cpu); i0=$(idle_of); w0=$(date +%s%N)
/usr/bin/time -f "%U %S" -o "$work/term.time" "$bin/terminal_sim" \
  --switch 127.0.0.1:$switch_port --count "$count" --window "$window" \
  --duration "$duration" --data-dir "$work/term" --quiet > "$work/term.out" 2>&1 || {
  keep=$(mktemp -d /tmp/e2e-failed.XXXXXX); cp -r "$work"/*.log "$work/term.out" "$keep/" 2>/dev/null || true
  echo "terminal_sim failed (logs kept in $keep):"; tail -20 "$work/term.out"; exit 1; }
h1=$(cpu_of $hpid); s1=$(cpu_of $spid); d1=$(db_cpu); i1=$(idle_of); w1=$(date +%s%N)
tck=$(getconf CLK_TCK)
txns=$(grep -m1 -oE 'transactions[^0-9]*[0-9,]+' "$work/term.out" | grep -oE '[0-9,]+$' | tr -d ,)
tps=$(grep -m1 -oE '[0-9,.]+ *tx/s' "$work/term.out" | head -1)
lat=$(grep -m1 -iE 'p50|latency' "$work/term.out" || true)
bal=$(grep -m1 -iE 'balanced' "$work/term.out" || true)
read tu ts < "$work/term.time"
awk -v n="$txns" -v tck="$tck" -v h=$((h1-h0)) -v s=$((s1-s0)) -v tu="$tu" -v ts="$ts" \
  -v tps="$tps" -v lat="$lat" -v bal="$bal" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" \
  -v d=$((d1-d0)) -v idle=$((i1-i0)) -v wall=$(( (w1-w0) / 1000000 )) -v cores="$(nproc)" 'BEGIN {
  printf "transactions %d  %s  | %s | %s\n", n, tps, lat, bal;
  printf "CPU us/txn: switchd %.0f  host_sim %.0f  terminal_sim %.0f  postgres %.0f  (load %s; machine idle %.0f%%)\n",
    s/tck*1e6/n, h/tck*1e6/n, (tu+ts)*1e6/n, d/tck*1e6/n, load,
    100 * idle / tck / (wall / 1000 * cores) }'
