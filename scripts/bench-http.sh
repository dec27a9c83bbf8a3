#!/usr/bin/env bash
# HTTP load through one node of local-3.yaml: PUT of a 1 KiB attribute on a few sessions
# with wrk, against the same cluster with replicas: 0 in the same run, and with
# affinity: none through a node that owns none of them (every request forwarded to the
# owner). The three clusters run side by side and the runs interleave. Release build.
# Usage: scripts/bench-http.sh [seconds per run] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/wrk-put.sh
SECONDS_PER_RUN=${1:-10}
RUNS=${2:-3}
DRS=./.build/release/drs
WORK=$(mktemp -d)
trap 'for name in replicated local forwarded; do
        $DRS cluster down --config "$WORK/$name.yaml" --state-dir "$WORK/state-$name" >/dev/null 2>&1 || true
      done; rm -rf "$WORK"' EXIT

need_tools wrk

# Three copies of local-3 on other ports: as is, with replicas: 0, with affinity: none.
sed -e 's/808\([1-3]\)/818\1/; s/710\([1-3]\)/730\1/; s/720\([1-3]\)/740\1/' cluster-configs/local-3.yaml > "$WORK/replicated.yaml"
sed -e 's/replicas: 1/replicas: 0/' "$WORK/replicated.yaml" > "$WORK/local.yaml"
grep -q 'replicas: 0' "$WORK/local.yaml" || { echo "could not set replicas: 0"; exit 1; }
sed -e 's/affinity: sticky/affinity: none/' "$WORK/replicated.yaml" > "$WORK/forwarded.yaml"
grep -q 'affinity: none' "$WORK/forwarded.yaml" || { echo "could not set affinity: none"; exit 1; }

wrk_put_script "$WORK"

# Three clusters side by side on their own addresses (an idle cluster costs little), and
# the runs interleaved (replicated, local, forwarded, replicated, ...), so a slow or fast
# phase of this shared machine falls on all three alike.
sed -i 's/127\.0\.0\.1\([1-3]\)/127.0.0.3\1/' "$WORK/local.yaml"
sed -i 's/127\.0\.0\.1\([1-3]\)/127.0.0.4\1/' "$WORK/forwarded.yaml"
declare -A URL=([replicated]=http://127.0.0.11:8181 [local]=http://127.0.0.31:8181 [forwarded]=http://127.0.0.42:8182)
declare -A MAKE=([replicated]=http://127.0.0.11:8181 [local]=http://127.0.0.31:8181 [forwarded]=http://127.0.0.41:8181)
declare -A IDS
for name in replicated local forwarded; do
  $DRS cluster up --config "$WORK/$name.yaml" --state-dir "$WORK/state-$name" --detach --wait 30s >/dev/null
  IDS[$name]=$(new_sessions "${MAKE[$name]}" 64)
done
for r in $(seq 1 "$RUNS"); do
  for name in replicated local forwarded; do
    out=$(DRS_IDS=${IDS[$name]} wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/put.lua" "${URL[$name]}")
    rps=$(wrk_field "$out" rps)
    p50=$(wrk_field "$out" p50)
    p99=$(wrk_field "$out" p99)
    errors=$(wrk_field "$out" non2xx)
    echo "$name run $r: $rps req/s, p50 $p50, p99 $p99, non-2xx $errors"
    echo "$rps" >> "$WORK/$name.rps"
  done
done
rep=$(median "$WORK/replicated.rps"); loc=$(median "$WORK/local.rps"); fwd=$(median "$WORK/forwarded.rps")
echo "median: replicated (local-3, acknowledged, 1 backup) $rep req/s; replicas 0 $loc req/s; ratio $(ratio "$rep" "$loc")"
echo "median: forwarded (affinity none, through n2 to the owner n1) $fwd req/s; ratio to replicated $(ratio "$fwd" "$rep")"
