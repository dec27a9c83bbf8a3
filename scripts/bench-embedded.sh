#!/usr/bin/env bash
# The embedded path: Hummingbird's SessionMiddleware cart (Examples/Cart,
# `POST /cart/items/:item`) over DRSPersistDriver in a node of local-3 (acknowledged, one
# backup: the other two nodes run as `drs node`), against the same cart over Hummingbird's
# MemoryPersistDriver, in the same run, interleaved. wrk: 32 connections, each its own
# cart (its own cookie); every 50th request of a connection is `DELETE /cart`, so carts
# stay under 50 items and creation is exercised too. Release build.
# CART_BEFORE=<path of another drs-cart> adds the same cluster with that binary (before and
# after a change, interleaved).
# Usage: scripts/bench-embedded.sh [seconds per run] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/wrk-put.sh
SECONDS_PER_RUN=${1:-10}
RUNS=${2:-3}
DRS=./.build/release/drs
CART=${CART:-./.build/release/drs-cart}
WORK=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

need_tools wrk
[ -x "$CART" ] || { echo "build the example first: swift build -c release --product drs-cart"; exit 1; }

# start_cluster NAME CART_BINARY OCTET: local-3 on 127.0.0.<OCTET>1-3 and ports of its own,
# n1 being the cart (on port 9<OCTET>1), n2 and n3 plain nodes.
declare -A URL CARTPID ALLPIDS
start_cluster() {
  local name=$1 cart=$2 o=$3
  sed -e "s/127\.0\.0\.1\([1-3]\)/127.0.0.$o\1/; s/808\([1-3]\)/8${o}8\1/; s/710\([1-3]\)/7${o}0\1/; s/720\([1-3]\)/6${o}0\1/" \
    cluster-configs/local-3.yaml > "$WORK/$name.yaml"
  $DRS node --config "$WORK/$name.yaml" --name n2 > "$WORK/$name-n2.log" 2>&1 & PIDS+=($!); ALLPIDS[$name]="$!"
  $DRS node --config "$WORK/$name.yaml" --name n3 > "$WORK/$name-n3.log" 2>&1 & PIDS+=($!); ALLPIDS[$name]="${ALLPIDS[$name]} $!"
  "$cart" --config "$WORK/$name.yaml" --name n1 --port "9${o}1" > "$WORK/$name.log" 2>&1 & PIDS+=($!)
  CARTPID[$name]=$!; ALLPIDS[$name]="${ALLPIDS[$name]} $!"
  URL[$name]=http://127.0.0.${o}1:9${o}1
  for _ in $(seq 1 300); do curl -sf -o /dev/null "http://127.0.0.${o}1:8${o}81/readyz" && break; sleep 0.1; done
}
# cpu_ticks PID...: user plus system CPU time of the processes, in clock ticks.
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
TICK=$(getconf CLK_TCK)
VARIANTS=(drs)
start_cluster drs "$CART" 5
# CART_BEFORE=<another drs-cart binary>: the same cluster with that binary too (before/after).
if [ -n "${CART_BEFORE:-}" ]; then
  start_cluster before "$CART_BEFORE" 6
  VARIANTS+=(before)
fi
"$CART" --config "$WORK/drs.yaml" --name n1 --port 9582 --storage memory > "$WORK/memory.log" 2>&1 & PIDS+=($!)
URL[memory]=http://127.0.0.51:9582
CARTPID[memory]=$!; ALLPIDS[memory]=$!
VARIANTS+=(memory)
for name in "${VARIANTS[@]}"; do
  for _ in $(seq 1 300); do curl -sf -o /dev/null "${URL[$name]}/cart" && break; sleep 0.1; done
  curl -sf -o /dev/null "${URL[$name]}/cart" || { echo "the $name cart did not start"; cat "$WORK/$name.log"; exit 1; }
done

wrk_cart_script "$WORK"

for r in $(seq 1 "$RUNS"); do
  for name in "${VARIANTS[@]}"; do
    # shellcheck disable=SC2086
    c0=$(cpu_ticks ${CARTPID[$name]}); a0=$(cpu_ticks ${ALLPIDS[$name]})
    out=$(wrk -t32 -c32 -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/cart.lua" "${URL[$name]}")
    # shellcheck disable=SC2086
    c1=$(cpu_ticks ${CARTPID[$name]}); a1=$(cpu_ticks ${ALLPIDS[$name]})
    rps=$(wrk_field "$out" rps); p50=$(wrk_field "$out" p50); p99=$(wrk_field "$out" p99); errors=$(wrk_field "$out" non2xx)
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    # CPU per request: of the cart process, and of every process of its cluster (the
    # backups' work included): on two shared cores the cluster competes with itself.
    cart_us=$(awk -v t=$((c1 - c0)) -v hz="$TICK" -v n="$requests" 'BEGIN {printf "%.0f", t / hz * 1e6 / n}')
    all_us=$(awk -v t=$((a1 - a0)) -v hz="$TICK" -v n="$requests" 'BEGIN {printf "%.0f", t / hz * 1e6 / n}')
    echo "$name run $r: $rps req/s, p50 $p50, p99 $p99, non-2xx $errors, CPU per request: cart process $cart_us us, cluster $all_us us"
    echo "$rps" >> "$WORK/$name.rps"
    echo "$cart_us" >> "$WORK/$name.cpu"
    echo "$all_us" >> "$WORK/$name.allcpu"
  done
done
d=$(median "$WORK/drs.rps"); m=$(median "$WORK/memory.rps")
echo "median: DRSPersistDriver (local-3, acknowledged, 1 backup) $d req/s; MemoryPersistDriver $m req/s; ratio $(ratio "$d" "$m")"
dc=$(median "$WORK/drs.cpu"); da=$(median "$WORK/drs.allcpu"); mc=$(median "$WORK/memory.cpu")
echo "median CPU per request: DRSPersistDriver cart process $dc us (its cluster $da us), MemoryPersistDriver $mc us; cost ratio memory/drs: process $(ratio "$mc" "$dc"), cluster $(ratio "$mc" "$da")"
if [ -n "${CART_BEFORE:-}" ]; then
  b=$(median "$WORK/before.rps")
  echo "median: before ($CART_BEFORE) $b req/s; ratio to MemoryPersistDriver $(ratio "$b" "$m"); after/before $(ratio "$d" "$b")"
fi
