#!/usr/bin/env bash
# Round-robin against sticky balancing, on one local-3 cluster in the same run: wrk PUTs a
# 1 KiB attribute on 32 sessions (created on n1) through HAProxy routing on the sessions'
# route (every request reaches the owner), then through HAProxy in plain round robin
# (two requests in three land on a node that forwards them or takes the session over).
# The sticky runs address each session by its current owner's route, as a client
# following the cookies would. The runs interleave (sticky, round-robin, sticky, ...).
# Prints each run, the medians, their ratio, and the takeovers and forwards each run
# caused. Release build.
# Usage: scripts/bench-round-robin.sh [seconds per run] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/wrk-put.sh
SECONDS_PER_RUN=${1:-10}
RUNS=${2:-3}
DRS=./.build/release/drs
WORK=$(mktemp -d)
HAPROXY_PIDS=()
trap 'for p in "${HAPROXY_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
      $DRS cluster down --config "$WORK/rr.yaml" --state-dir "$WORK/state" >/dev/null 2>&1 || true
      rm -rf "$WORK"' EXIT

need_tools wrk haproxy

# local-3 on addresses and ports of its own.
sed -e 's/127\.0\.0\.1\([1-3]\)/127.0.0.5\1/; s/808\([1-3]\)/828\1/; s/710\([1-3]\)/750\1/; s/720\([1-3]\)/760\1/' \
  cluster-configs/local-3.yaml > "$WORK/rr.yaml"
$DRS cluster up --config "$WORK/rr.yaml" --state-dir "$WORK/state" --detach --wait 30s >/dev/null
$DRS lb-config haproxy --config "$WORK/rr.yaml" --bind 127.0.0.50:8280 > "$WORK/sticky.cfg"
$DRS lb-config haproxy --config "$WORK/rr.yaml" --bind 127.0.0.50:8281 --round-robin > "$WORK/round-robin.cfg"
for name in sticky round-robin; do
  haproxy -f "$WORK/$name.cfg" -db >"$WORK/$name.log" 2>&1 &
  HAPROXY_PIDS+=($!)
done
declare -A URL=([sticky]=http://127.0.0.50:8280 [round-robin]=http://127.0.0.50:8281)
for name in sticky round-robin; do
  for _ in $(seq 1 100); do curl -sf "${URL[$name]}/readyz" >/dev/null && break; sleep 0.1; done
done

ids=""
for _ in $(seq 1 32); do
  id=$(curl -s -X POST http://127.0.0.51:8281/sessions | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p')
  ids="$ids,$id"
done
wrk_put_script "$WORK"

# The sum of a counter over the three nodes.
total() {
  local sum=0
  for n in 1 2 3; do
    v=$(curl -s "http://127.0.0.5$n:828$n/metrics" | awk -v m="$1" '$1==m {print $2}')
    sum=$((sum + ${v:-0}))
  done
  echo $sum
}
# Each session as <id>.<owner now>, the route a client holds after its last answer (the
# sticky balancer routes on it; round robin ignores it).
routed() {
  local out=""
  for id in ${ids//,/ }; do
    for n in 1 2 3; do
      if curl -s "http://127.0.0.5$n:828$n/cluster/sessions/$id" | grep -q '"role":"owner"'; then out="$out,$id.n$n"; break; fi
    done
  done
  echo "${out#,}"
}
for r in $(seq 1 "$RUNS"); do
  for name in sticky round-robin; do
    t0=$(total drs_takeovers_total); f0=$(total 'drs_http_forwarded_total{result="ok"}')
    out=$(DRS_IDS=$(routed) wrk -t2 -c32 -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/put.lua" "${URL[$name]}")
    t1=$(total drs_takeovers_total); f1=$(total 'drs_http_forwarded_total{result="ok"}')
    rps=$(wrk_field "$out" rps)
    p99=$(wrk_field "$out" p99)
    errors=$(wrk_field "$out" non2xx)
    echo "$name run $r: $rps req/s, p99 $p99, non-2xx $errors, takeovers $((t1 - t0)), forwards $((f1 - f0))"
    echo "$rps" >> "$WORK/$name.rps"
  done
done
s=$(median "$WORK/sticky.rps"); rr=$(median "$WORK/round-robin.rps")
echo "median: sticky $s req/s; round-robin $rr req/s; ratio $(ratio "$rr" "$s")"
