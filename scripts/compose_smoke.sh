#!/usr/bin/env bash
# Checks the container Quick Start end to end: builds the image from `Dockerfile`, runs
# one node the README's `docker run` way, then starts the 3-node cluster of
# `docker-compose.yml` and checks what a user relies on:
#   - every node becomes ready and the cluster lists 3 alive members;
#   - an object written through node 1 (REST) reads back through node 3 (REST) and node 2
#     (S3, SigV4-signed by curl);
#   - a killed node shows as down in /cluster while its data stays readable elsewhere;
#   - the restarted node comes back alive, with its data.
#
#   scripts/compose_smoke.sh                       # docker and `docker compose`
#   CONTAINER=podman COMPOSE=podman-compose scripts/compose_smoke.sh
#   scripts/compose_smoke.sh --no-build            # use the image built last time
#
# It uses the Quick Start's fixed host ports (9080-9082, 8080-8082), so nothing else may
# listen there. Containers, volumes and the single node's data folder are removed at the
# end, whatever the outcome.
set -euo pipefail
cd "$(dirname "$0")/.."

CONTAINER=${CONTAINER:-docker}
COMPOSE=${COMPOSE:-docker compose}
PROJECT=bucketdb-smoke
IMAGE=bucketdb
# Longest wait for a node to become ready, and for the cluster to see a change.
READY_TIMEOUT_S=120
LIVENESS_TIMEOUT_S=60

export BUCKETDB_CLUSTER_SECRET BUCKETDB_ACCESS_KEY BUCKETDB_SECRET_KEY
BUCKETDB_CLUSTER_SECRET=$(openssl rand -hex 24)
BUCKETDB_ACCESS_KEY=smoke$(openssl rand -hex 6)
BUCKETDB_SECRET_KEY=$(openssl rand -hex 20)
AUTH="$BUCKETDB_ACCESS_KEY:$BUCKETDB_SECRET_KEY"

WORK=$(mktemp -d)
SINGLE=bucketdb-smoke-single
compose() { $COMPOSE -p "$PROJECT" "$@"; }
cleanup() {
  compose down -v >/dev/null 2>&1 || true
  $CONTAINER rm -f "$SINGLE" >/dev/null 2>&1 || true
  # The container handed the single node's folder to its own user: remove what it
  # wrote from inside a container, as root there.
  if [ -d "$WORK/data" ]; then
    $CONTAINER run --rm --entrypoint rm -v "$WORK/data:/data" "$IMAGE" -rf /data/storage /data/meta \
      >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK" 2>/dev/null || echo "left behind: $WORK" >&2
}
trap cleanup EXIT

step() { echo "== $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

wait_ready() {
  local url=$1 deadline=$((SECONDS + READY_TIMEOUT_S))
  until curl -fsS "$url/health/ready" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 1
  done
}

# The liveness node `$2` has in the /cluster view of the node at `$1`.
liveness_of() {
  curl -fsS -u "$AUTH" "$1/cluster" | python3 -c '
import json, sys
want = sys.argv[1]
for node in json.load(sys.stdin)["nodes"]:
    if node["address"] == want:
        print(node["liveness"])
' "$2"
}

wait_liveness() {
  local url=$1 node=$2 want=$3 deadline=$((SECONDS + LIVENESS_TIMEOUT_S))
  until [ "$(liveness_of "$url" "$node" 2>/dev/null)" = "$want" ]; do
    [ $SECONDS -lt $deadline ] || fail "$url never reported $node $want"
    sleep 1
  done
}

head -c 300000 /dev/urandom >"$WORK/body"

if [ "${1:-}" != --no-build ]; then
  step "build the image"
  $CONTAINER build -t "$IMAGE" .
fi

step "one node, data in a bind-mounted folder (the README's docker run)"
mkdir -p "$WORK/data"
$CONTAINER run -d --name "$SINGLE" -p 9080:9080 -p 8080:8080 -v "$WORK/data:/data" \
  -e BUCKETDB_ACCESS_KEY -e BUCKETDB_SECRET_KEY "$IMAGE" >/dev/null
wait_ready http://127.0.0.1:9080 || { $CONTAINER logs "$SINGLE"; fail "single node not ready"; }
curl -fsS -u "$AUTH" -X POST --data-binary @"$WORK/body" \
  http://127.0.0.1:9080/objects/smoke/single.bin >/dev/null
$CONTAINER restart "$SINGLE" >/dev/null
wait_ready http://127.0.0.1:9080 || fail "single node not ready after a restart"
curl -fsS -u "$AUTH" http://127.0.0.1:9080/objects/smoke/single.bin | cmp - "$WORK/body" \
  || fail "single node lost its object across a restart"
$CONTAINER rm -f "$SINGLE" >/dev/null

step "3-node cluster (docker-compose.yml)"
compose up -d
for port in 9080 9081 9082; do
  wait_ready "http://127.0.0.1:$port" || { compose logs; fail "node on $port not ready"; }
done
for node in node1 node2 node3; do wait_liveness http://127.0.0.1:9080 "$node:9080" alive; done
compose exec -T node1 bucketdb cluster nodes

step "write through node1, read through node3 (REST) and node2 (S3)"
curl -fsS -u "$AUTH" -X POST --data-binary @"$WORK/body" \
  http://127.0.0.1:9080/objects/smoke/hello.bin >/dev/null
curl -fsS -u "$AUTH" http://127.0.0.1:9082/objects/smoke/hello.bin | cmp - "$WORK/body" \
  || fail "node3 served other bytes"
curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" -u "$AUTH" \
  -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
  http://127.0.0.1:8081/smoke/hello.bin | cmp - "$WORK/body" || fail "node2 (S3) served other bytes"

step "kill node3: node1 reports it down, node2 still serves the object"
compose kill node3
wait_liveness http://127.0.0.1:9080 node3:9080 down
curl -fsS -u "$AUTH" http://127.0.0.1:9081/objects/smoke/hello.bin | cmp - "$WORK/body" \
  || fail "node2 lost the object while node3 was down"

step "restart node3: it comes back alive with the object"
compose start node3
wait_ready http://127.0.0.1:9082 || fail "node3 not ready after its restart"
wait_liveness http://127.0.0.1:9080 node3:9080 alive
curl -fsS -u "$AUTH" http://127.0.0.1:9082/objects/smoke/hello.bin | cmp - "$WORK/body" \
  || fail "node3 lost the object across its restart"

step "all checks passed"
