#!/usr/bin/env bash
# `make drill`: the standard drill set (every scenario) against one configuration,
# through HAProxy, release build. Installs haproxy and nftables (Debian packages) when
# missing; packet-loss and partition need root for nft. Reports land in $OUT/.
# Usage: scripts/drill-set.sh [config] [duration] [extra drs drill flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-cluster-configs/local-3.yaml}
DURATION=${2:-20s}
shift $(( $# > 2 ? 2 : $# ))
DRS=./.build/release/drs
OUT=${OUT:-drill-reports}
missing=""
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing="$missing haproxy"
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || missing="$missing nftables"
if [ -n "$missing" ]; then
  echo "installing$missing (Debian packages) for the drills"
  apt-get update && apt-get install -y $missing
fi
mkdir -p "$OUT"
name=$(basename "$CONFIG" .yaml)
status=0
for scenario in kill-primary hang graceful-leave rolling-restart packet-loss partition; do
  echo "=== drs drill $scenario --config $CONFIG --duration $DURATION $*"
  $DRS drill "$scenario" --config "$CONFIG" --duration "$DURATION" --json "$OUT/$name-$scenario.json" "$@" || status=1
done
echo "reports and SVG timelines in $OUT/"
exit $status
