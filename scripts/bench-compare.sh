#!/usr/bin/env bash
# Side by side, interleaved, on this machine (release builds):
#   api     the HTTP API: PUT of a 1 KiB attribute on 64 sessions through n1 of local-3
#           (acknowledged, one backup), wrk 32 connections;
#   bare    a bare Hummingbird route reading the same 1 KiB body (drs-cart's PUT /bare);
#   cart    the SessionMiddleware cart over DRSPersistDriver (n1 of another local-3 copy);
#   memcart the same cart over Hummingbird's MemoryPersistDriver;
#   set     Redis SET of 1 KiB, a replica attached, 32 connections;
#   wait    Redis SET + WAIT 1 (answered once the replica has it), 32 connections;
#   sync    synchronous replication through the Swift API (`drs bench`, 32 writers).
# Prints each run, then the medians and the ratios our goals are stated in.
# Installs wrk and redis-server from Debian when missing.
# Usage: scripts/bench-compare.sh [seconds per run] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/wrk-put.sh
SECONDS_PER_RUN=${1:-10}
RUNS=${2:-3}
DRS=./.build/release/drs
CART=./.build/release/drs-cart
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  $DRS cluster down --config "$WORK/api.yaml" --state-dir "$WORK/state-api" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need_tools wrk gcc
command -v redis-server >/dev/null || { echo "installing redis-server (Debian package)"; apt-get update && apt-get install -y redis-server; }
[ -x "$CART" ] || { echo "build the example first: swift build -c release --product drs-cart"; exit 1; }
gcc -O2 -pthread -o "$WORK/redis-set-wait" scripts/bench/redis-set-wait.c

# The HTTP API: a local-3 copy on its own addresses and ports.
sed -e 's/127\.0\.0\.1\([1-3]\)/127.0.0.7\1/; s/808\([1-3]\)/878\1/; s/710\([1-3]\)/770\1/; s/720\([1-3]\)/780\1/' \
  cluster-configs/local-3.yaml > "$WORK/api.yaml"
$DRS cluster up --config "$WORK/api.yaml" --state-dir "$WORK/state-api" --detach --wait 30s >/dev/null
export DRS_IDS
DRS_IDS=$(new_sessions http://127.0.0.71:8781 64)
wrk_put_script "$WORK"
cat > "$WORK/bare.lua" <<LUA
local f = io.open("$WORK/value", "rb"); local value = f:read("*all"); f:close()
request = function() return wrk.format("PUT", "/bare", nil, value) end
LUA

# The cart over DRSPersistDriver (n1 of a second copy, n2 and n3 as drs node), and over
# MemoryPersistDriver, which also serves the bare route.
sed -e 's/127\.0\.0\.1\([1-3]\)/127.0.0.8\1/; s/808\([1-3]\)/888\1/; s/710\([1-3]\)/790\1/; s/720\([1-3]\)/760\1/' \
  cluster-configs/local-3.yaml > "$WORK/cart.yaml"
for n in n2 n3; do $DRS node --config "$WORK/cart.yaml" --name $n > "$WORK/cart-$n.log" 2>&1 & PIDS+=($!); done
"$CART" --config "$WORK/cart.yaml" --name n1 --port 9881 > "$WORK/cart.log" 2>&1 & PIDS+=($!)
"$CART" --config "$WORK/cart.yaml" --name n1 --port 9882 --storage memory > "$WORK/memcart.log" 2>&1 & PIDS+=($!)
for port in 9881 9882; do
  for _ in $(seq 1 300); do curl -sf -o /dev/null "http://127.0.0.81:$port/cart" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.81:$port/cart" || { echo "the cart on port $port did not start"; tail "$WORK"/cart*.log "$WORK"/memcart.log; exit 1; }
done
wrk_cart_script "$WORK"

# Redis: a master and one replica, no persistence.
redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no --daemonize no > "$WORK/redis-master.log" 2>&1 & PIDS+=($!)
redis-server --port 6391 --bind 127.0.0.1 --save "" --appendonly no --replicaof 127.0.0.1 6390 --daemonize no > "$WORK/redis-replica.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 100); do
  redis-cli -p 6390 info replication 2>/dev/null | grep -q "state=online" && break
  sleep 0.1
done
redis-cli -p 6390 info replication | grep -q "state=online" || { echo "the Redis replica did not come online"; exit 1; }

run_redis() {  # run_redis NAME WAIT
  local out
  out=$("$WORK/redis-set-wait" 127.0.0.1 6390 32 "${SECONDS_PER_RUN%.*}" 1024 "$2")
  echo "$1 run $r: ${out% *} req/s, errors ${out#* }"
  echo "${out% *}" >> "$WORK/$1.rps"
}
for r in $(seq 1 "$RUNS"); do
  wrk_run api http://127.0.0.71:8781 "$WORK/put.lua" 2 32
  run_redis set 0
  wrk_run bare http://127.0.0.81:9882 "$WORK/bare.lua" 2 32
  wrk_run cart http://127.0.0.81:9881 "$WORK/cart.lua" 32 32
  wrk_run memcart http://127.0.0.81:9882 "$WORK/cart.lua" 32 32
  run_redis wait 1
  $DRS bench --workloads synchronous-tcp --writers 32 --runs 1 --duration "$SECONDS_PER_RUN" --json "$WORK/sync.json" > "$WORK/sync.log" 2>&1
  sync=$(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))[0]["medianWritesPerSecond"])' "$WORK/sync.json")
  echo "sync run $r: $sync writes/s (drs bench, synchronous TCP, 32 writers)"
  echo "$sync" >> "$WORK/sync.rps"
done
for name in api bare cart memcart set wait sync; do eval "M_$name=$(median "$WORK/$name.rps")"; done
echo "medians (req/s): api $M_api, bare route $M_bare, cart over DRS $M_cart, cart in memory $M_memcart, Redis SET $M_set, Redis SET+WAIT 1 $M_wait, sync Swift API $M_sync"
echo "ratio HTTP API PUT / Redis SET (goal >= 1.0): $(ratio "$M_api" "$M_set")"
echo "ratio HTTP API PUT / bare Hummingbird route (goal >= 0.8): $(ratio "$M_api" "$M_bare")"
echo "ratio cart over DRSPersistDriver / over MemoryPersistDriver (goal >= 0.85): $(ratio "$M_cart" "$M_memcart")"
echo "ratio synchronous Swift API / Redis SET + WAIT 1 (goal >= 2.0): $(ratio "$M_sync" "$M_wait")"
