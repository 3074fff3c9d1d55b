#!/usr/bin/env bash
# Measures a 3-node release-build cluster on this machine (replication factor 3, fsync
# on), with `bucketdb bench` on the same host: 4 KiB and 100 MiB PUT/GET through one
# node in async mode and in quorum mode, and 4 KiB GETs through one node vs through all
# three at once. Every run starts a fresh cluster on fresh directories.
# Usage: scripts/bench_cluster.sh [async|quorum|reads|all]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
cargo build --release --locked --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/bucketdb
work=$(mktemp -d)
AK=benchaccesskey; SK=benchsecretkey0123456789
export BUCKETDB_CLUSTER_SECRET=bench-cluster-secret-0123456789
pids=()
http=(); s3=()

stop_cluster() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=(); http=(); s3=()
  rm -rf "$work"/node*
}
trap 'stop_cluster; rm -rf "$work"' EXIT

# start node $1 with extra flags; sets http[$1] and s3[$1]
start_node() {
  local n=$1; shift
  mkdir -p "$work/node$n"
  "$bin" server --storage-path "$work/node$n/data" --metadata-path "$work/node$n/meta" \
    --http-addr 127.0.0.1:0 --s3-addr 127.0.0.1:0 --access-key $AK --secret-key $SK \
    "$@" >"$work/node$n/out" 2>"$work/node$n/log" &
  pids+=($!)
  for _ in $(seq 300); do grep -q 'S3 API' "$work/node$n/out" 2>/dev/null && break; sleep 0.1; done
  http[$n]=$(grep -m1 -o 'http://[0-9.:]*' "$work/node$n/out")
  s3[$n]=$(grep 'S3 API' "$work/node$n/out" | grep -m1 -o 'http://[0-9.:]*')
  for _ in $(seq 300); do curl -sf "${http[$n]}/health/ready" >/dev/null && return; sleep 0.1; done
  echo "node$n did not become ready"; cat "$work/node$n/log"; exit 1
}

# a fresh 3-node cluster; $1: quorum_required
start_cluster() {
  start_node 1 --bootstrap --quorum-required "$1"
  start_node 2 --join "${http[1]}"
  start_node 3 --join "${http[1]}"
}

backlog() { curl -sf -u $AK:$SK "${http[1]}/stats" | grep -o '"replicationBacklog":[0-9]*' | cut -d: -f2; }
s3bench() { local ep=$1; shift; "$bin" bench --endpoint "$ep" --access-key $AK --secret-key $SK --allow-errors "$@"; }
title() { echo; echo "### $*"; }
scenario() { [ "$what" = all ] || [ "$what" = "$1" ]; }

for mode in async quorum; do
  scenario "$mode" || continue
  q=false; [ "$mode" = quorum ] && q=true
  title "$mode mode: 4 KiB PUT, then GET of the keys written, through node 1, 64 in flight, 20 s each"
  start_cluster $q
  s3bench "${s3[1]}" --size 4KiB --concurrency 64 --duration 20s --op put,get
  echo "replication backlog on node 1 right after: $(backlog)"
  stop_cluster
  title "$mode mode: 100 MiB PUT, then GET, through node 1, 4 in flight, 20 s each"
  start_cluster $q
  s3bench "${s3[1]}" --size 100MiB --concurrency 4 --duration 20s --op put,get
  echo "replication backlog on node 1 right after: $(backlog)"
  stop_cluster
done

if scenario reads; then
  title "4 KiB GET of 1000 keys: through node 1 only (64 in flight), then through all 3 at once (3 x 22), 20 s"
  start_cluster false
  s3bench "${s3[1]}" --size 4KiB --keys 1000 --concurrency 64 --op put --count 1000 >/dev/null
  until [ "$(backlog)" = 0 ]; do sleep 0.5; done
  echo "through node 1:"
  s3bench "${s3[1]}" --size 4KiB --keys 1000 --concurrency 64 --duration 20s --op get --no-prepare
  echo "through nodes 1, 2 and 3 at once:"
  readers=()
  for n in 1 2 3; do
    s3bench "${s3[$n]}" --size 4KiB --keys 1000 --concurrency 22 --duration 20s --op get --no-prepare >"$work/reads$n" &
    readers+=($!)
  done
  for p in "${readers[@]}"; do wait "$p"; done
  for n in 1 2 3; do echo "node $n:"; cat "$work/reads$n"; done
  stop_cluster
fi
