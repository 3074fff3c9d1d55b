#!/usr/bin/env bash
# Measures ListObjectsV2 over a whole bucket on this machine (release build, fsync on):
# a single node, and a 5-node cluster at replication factor 3 listed through one node
# (every page merged from all five). Loads KEYS 1-byte objects with `bucketdb bench`,
# then pages through the bucket (1,000 keys a page) with curl's SigV4 and reports keys
# per second, twice per setup. Every setup starts on fresh directories.
# Usage: scripts/bench_list.sh [KEYS] [single|cluster|all]
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-200000}
what=${2:-all}
cargo build --release --locked --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/bucketdb
work=$(mktemp -d)
AK=benchaccesskey; SK=benchsecretkey0123456789
export BUCKETDB_CLUSTER_SECRET=bench-cluster-secret-0123456789
pids=()
http=(); s3=()

stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=(); http=(); s3=()
  rm -rf "$work"/node*
}
trap 'stop_all; rm -rf "$work"' EXIT

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

members() { curl -sf -u $AK:$SK "${http[1]}/cluster" | grep -o '"state":"active"' | wc -l; }

load() {
  "$bin" bench --endpoint "${s3[1]}" --access-key $AK --secret-key $SK --bucket listing \
    --op put --size 1B --count "$keys" --keys "$keys" --concurrency 32 | tail -3
}

# one pass over the bucket through node 1: keys listed, wall-clock keys/s, and keys/s
# over the time the requests took (curl's time_total: the server's work and the
# transfer, not this script's parsing)
list_pass() {
  local token="" n=0 page start end spent=0 t
  start=$(date +%s.%N)
  while :; do
    # Tokens are URL-safe base64: no escaping needed. Parameters in sorted order, as
    # this curl signs the query string as given.
    local q="list-type=2&max-keys=1000"
    [ -n "$token" ] && q="continuation-token=$token&$q"
    page=$(curl -sf -w '\n%{time_total}' -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AK:$SK" "${s3[1]}/listing?$q")
    t=${page##*$'\n'}
    spent=$(awk -v a="$spent" -v b="$t" 'BEGIN { print a + b }')
    n=$((n + $(grep -o '<Key>' <<<"$page" | wc -l)))
    token=$(grep -o '<NextContinuationToken>[^<]*' <<<"$page" | cut -d'>' -f2 || true)
    [ -z "$token" ] && break
  done
  end=$(date +%s.%N)
  awk -v n="$n" -v s="$start" -v e="$end" -v r="$spent" 'BEGIN {
    printf "listed %d keys: %.2f s wall clock (%.0f keys/s), %.2f s in requests (%.0f keys/s)\n", n, e - s, n / (e - s), r, n / r }'
}

if [ "$what" = all ] || [ "$what" = single ]; then
  echo "### single node, $keys keys"
  start_node 1
  load
  list_pass; list_pass
  stop_all
fi
if [ "$what" = all ] || [ "$what" = cluster ]; then
  echo "### 5 nodes, RF 3, async mode, $keys keys, listed through node 1"
  start_node 1 --bootstrap
  for n in 2 3 4 5; do start_node $n --join "${http[1]}"; done
  for _ in $(seq 300); do [ "$(members)" -eq 5 ] && break; sleep 0.1; done
  load
  # Listed once replication has settled (every key on its 3 replicas), as a listing
  # of a quiet cluster; at most 15 minutes.
  held() {
    local sum=0 n c
    for n in 1 2 3 4 5; do
      c=$(curl -sf -u $AK:$SK "${http[$n]}/stats" | grep -o '"objects":[0-9]*' | cut -d: -f2)
      sum=$((sum + c))
    done
    echo $sum
  }
  for _ in $(seq 900); do [ "$(held)" -ge $((3 * keys)) ] && break; sleep 1; done
  echo "copies held on the 5 nodes: $(held) (3 per key: $((3 * keys)))"
  list_pass; list_pass
  stop_all
fi
