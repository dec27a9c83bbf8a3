#!/usr/bin/env bash
# Session creation over HTTP against writes to existing sessions, through n1 of a copy of
# local-3.yaml: `POST /sessions` with one 1 KiB attribute (base64 in the JSON body) and
# `PUT /sessions/{id}/attributes/payload` of the same 1 KiB on 64 sessions, with wrk, the
# runs interleaved. Every POST makes a session, so the owner grows by about 10^5 sessions
# per run (the idle limit is 60 s to keep memory bounded). Release build.
# Usage: scripts/bench-create.sh [seconds per run] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/wrk-put.sh
SECONDS_PER_RUN=${1:-10}
RUNS=${2:-3}
DRS=./.build/release/drs
WORK=$(mktemp -d)
trap '$DRS cluster down --config "$WORK/c.yaml" --state-dir "$WORK/state" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

need_tools wrk
sed -e 's/808\([1-3]\)/828\1/; s/710\([1-3]\)/750\1/; s/720\([1-3]\)/760\1/; s/127\.0\.0\.1\([1-3]\)/127.0.0.9\1/' \
  cluster-configs/local-3.yaml > "$WORK/c.yaml"
URL=http://127.0.0.91:8281
wrk_put_script "$WORK"
value=$(base64 -w0 "$WORK/value")
cat > "$WORK/post.lua" <<LUA
local body = '{"maxInactiveInterval": 60, "attributes": {"payload": "$value"}}'
request = function()
  return wrk.format("POST", "/sessions", {["Content-Type"] = "application/json"}, body)
end
LUA
$DRS cluster up --config "$WORK/c.yaml" --state-dir "$WORK/state" --detach --wait 30s >/dev/null
export DRS_IDS
DRS_IDS=$(new_sessions "$URL" 64)
for r in $(seq 1 "$RUNS"); do
  for name in post put; do wrk_run "$name" "$URL" "$WORK/$name.lua" 2 64; done
done
post=$(median "$WORK/post.rps"); put=$(median "$WORK/put.rps")
echo "median: POST /sessions (create, 1 KiB attribute) $post req/s; PUT 1 KiB $put req/s; ratio $(ratio "$post" "$put")"
