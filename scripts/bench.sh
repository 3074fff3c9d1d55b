#!/usr/bin/env bash
# Measures a single release-build node on this machine, fsync on, with the load
# generator on the same host: `bucketdb bench` for the S3 scenarios (s3-*), wrk (Debian
# package `wrk`) or curl for the REST ones. Every scenario starts a fresh server on fresh
# directories and reports the server's peak RSS (VmHWM).
# Usage: scripts/bench.sh [s3-4k|s3-100m|s3-1g|put4k|get4k|put100m|get100m|rss|s3|all]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
case $what in s3*) ;; *) command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)"; exit 1; } ;; esac
cargo build --release --locked --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/bucketdb
work=$(mktemp -d)
pid=
AK=bench; SK=bench-secret-key
export AUTH="Basic $(printf '%s:%s' $AK $SK | base64)"

stop_server() {
  if [ -n "$pid" ]; then
    echo "server peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  fi
  rm -rf "$work/data" "$work/meta"
}
trap 'stop_server; rm -rf "$work"' EXIT

start_server() {
  "$bin" server --storage-path "$work/data" --metadata-path "$work/meta" \
    --http-addr 127.0.0.1:0 --s3-addr 127.0.0.1:0 --access-key $AK --secret-key $SK >"$work/out" 2>"$work/log" &
  pid=$!
  for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
  addr=$(grep -m1 -o 'http://[0-9.:]*' "$work/out")
  s3addr=$(grep 'S3 API' "$work/out" | grep -m1 -o 'http://[0-9.:]*')
  curl -sf -u $AK:$SK -X PUT "$addr/buckets/bench" >/dev/null
}

# load N objects of the file $1 named $2-0 .. $2-(N-1), 16 at a time
preload() {
  for i in $(seq 0 $(($3 - 1))); do echo "$i"; done | xargs -P 16 -I{} \
    curl -sf -u $AK:$SK -X POST --data-binary "@$1" -o /dev/null "$addr/objects/bench/$2-{}"
}

scenario() { [ "$what" = all ] || [ "$what" = "$1" ] || { [ "$what" = s3 ] && [[ $1 == s3-* ]]; }; }
s3bench() { "$bin" bench --endpoint "$s3addr" --access-key $AK --secret-key $SK "$@"; }
title() { echo; echo "### $*"; }

if scenario s3-4k; then
  title "S3: 4 KiB PUT, then GET of the 1000 keys written, 64 in flight, 20 s each"
  start_server
  s3bench --size 4KiB --concurrency 64 --duration 20s --op put,get
  stop_server
fi
if scenario s3-100m; then
  title "S3: 100 MiB PUT, then GET of the 10 keys written, 8 in flight, 20 s each"
  start_server
  s3bench --size 100MiB --concurrency 8 --duration 20s --op put,get
  stop_server
fi
if scenario s3-1g; then
  title "S3: 16 PUTs of 1 GiB at once (peak RSS)"
  start_server
  s3bench --size 1GiB --concurrency 16 --count 16 --op put
  stop_server
fi
if scenario put4k; then
  title "4 KiB PUT, 64 connections, 20 s"
  start_server
  wrk -t2 -c64 -d20s --latency -s bench/put.lua "$addr"
  stop_server
fi
if scenario get4k; then
  title "4 KiB GET of 1000 objects, 64 connections, 20 s"
  start_server
  head -c 4096 /dev/urandom >"$work/4k"
  preload "$work/4k" get 1000
  KEYS=1000 wrk -t2 -c64 -d20s --latency -s bench/get.lua "$addr"
  stop_server
fi
if scenario put100m || scenario get100m; then
  head -c $((100 * 1024 * 1024)) /dev/urandom >"$work/100m"
fi
if scenario put100m; then
  title "100 MiB PUT, 8 clients x 4 objects (curl -T)"
  start_server
  t0=$(date +%s%N)
  clients=()
  for c in $(seq 8); do
    (for i in 1 2 3 4; do
      curl -sf -u $AK:$SK -X POST -T "$work/100m" -o /dev/null "$addr/objects/bench/big-$c-$i"
    done) &
    clients+=($!)
  done
  wait "${clients[@]}"
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "3200 MiB in $ms ms: $(( 3200 * 1000 / ms )) MiB/s"
  stop_server
fi
if scenario get100m; then
  title "100 MiB GET of 8 objects, 8 connections, 20 s"
  start_server
  preload "$work/100m" big 8
  KEYS=8 KEY_PREFIX=big- wrk -t2 -c8 -d20s --latency --timeout 30s -s bench/get.lua "$addr"
  stop_server
fi
if scenario rss; then
  title "16 clients each uploading 1 GiB at once"
  start_server
  head -c $((1024 * 1024 * 1024)) /dev/urandom >"$work/1g"
  t0=$(date +%s%N)
  uploads=()
  for i in $(seq 16); do
    curl -sf -u $AK:$SK -X POST -T "$work/1g" -o /dev/null "$addr/objects/bench/gib-$i" &
    uploads+=($!)
  done
  wait "${uploads[@]}"
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "16 GiB in $ms ms: $(( 16384 * 1000 / ms )) MiB/s"
  stop_server
fi
