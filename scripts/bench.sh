#!/usr/bin/env bash
# Measures a single release-build node on this machine with wrk (Debian package `wrk`)
# as the load generator on the same host. Prints wrk's reports and peak RSS figures.
# Usage: scripts/bench.sh [small|large|rss|all]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)"; exit 1; }
cargo build --release --locked --quiet
bin=$PWD/target/release/bucketdb
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT

AK=bench; SK=bench-secret-key
export AUTH="Basic $(printf '%s:%s' $AK $SK | base64)"
"$bin" server --storage-path "$work/data" --metadata-path "$work/meta" \
  --http-addr 127.0.0.1:0 --access-key $AK --secret-key $SK >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
addr=$(grep -o 'http://[0-9.:]*' "$work/out")
echo "server $addr pid $pid"
curl -sf -u $AK:$SK -X PUT "$addr/buckets/bench" >/dev/null

run() { echo; echo "### $*"; wrk "$@"; }
rss() { grep VmHWM /proc/$pid/status; }

if [ "$what" = small ] || [ "$what" = all ]; then
  run -t2 -c64 -d20s --latency -s bench/put.lua "$addr" 
  head -c 4096 /dev/urandom >"$work/4k"
  for i in $(seq 0 999); do echo "$i"; done | xargs -P 16 -I{} \
    curl -sf -u $AK:$SK -X POST --data-binary "@$work/4k" -o /dev/null "$addr/objects/bench/get-{}"
  KEYS=1000 run -t2 -c64 -d20s --latency -s bench/get.lua "$addr"
  rss
fi
if [ "$what" = large ] || [ "$what" = all ]; then
  BODY_BYTES=$((100 * 1024 * 1024)) run -t2 -c8 -d30s --latency --timeout 30s -s bench/put.lua "$addr"
  head -c $((100 * 1024 * 1024)) /dev/urandom >"$work/100m"
  for i in 0 1 2 3 4 5 6 7; do
    curl -sf -u $AK:$SK -X POST --data-binary "@$work/100m" -o /dev/null "$addr/objects/bench/big-$i"
  done
  KEYS=8 KEY_PREFIX=big- run -t2 -c8 -d30s --latency --timeout 30s -s bench/get.lua "$addr"
  rss
fi
if [ "$what" = rss ] || [ "$what" = all ]; then
  echo; echo "### 16 clients each uploading 1 GiB at once"
  head -c $((1024 * 1024 * 1024)) /dev/urandom >"$work/1g"
  start=$(date +%s%N)
  uploads=()
  for i in $(seq 16); do
    curl -sf -u $AK:$SK -X POST -T "$work/1g" -o /dev/null "$addr/objects/bench/gib-$i" &
    uploads+=($!)
  done
  wait "${uploads[@]}"
  echo "16 GiB uploaded in $(( ($(date +%s%N) - start) / 1000000 )) ms"
  rss
fi
