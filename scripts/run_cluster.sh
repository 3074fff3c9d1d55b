#!/usr/bin/env bash
# A 3-node BucketDB cluster on loopback for trying things out.
#
#   scripts/run_cluster.sh start    build, start nodes 1-3, print endpoints and credentials
#   scripts/run_cluster.sh status   which nodes run, and `bucketdb cluster nodes`
#   scripts/run_cluster.sh stop     stop them (SIGTERM, then SIGKILL after a grace period)
#
# Node N listens on http://127.0.0.1:908(N-1) (REST, console, health, metrics) and
# http://127.0.0.1:808(N-1) (S3), keeps its data in ./cluster-data/nodeN, its pid in
# ./cluster-data/nodeN.pid and its log in ./cluster-data/nodeN.log. Node 1 bootstraps the
# cluster; nodes 2 and 3 join it. The cluster secret and root keys are generated on the
# first start and kept in ./cluster-data/env, so restarts reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=./cluster-data
NODES=3
# Longest wait for a node to report ready, and for a node to stop after SIGTERM.
READY_TIMEOUT_S=60
STOP_TIMEOUT_S=30
# BUCKETDB_BIN: use this binary instead of building the release one.
BIN=${BUCKETDB_BIN:-./target/release/bucketdb}

pid_of() { cat "$DIR/node$1.pid" 2>/dev/null || true; }
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

wait_ready() {
  local url=$1 deadline=$((SECONDS + READY_TIMEOUT_S))
  until curl -fsS "$url/health/ready" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then return 1; fi
    sleep 0.2
  done
}

start() {
  mkdir -p "$DIR"
  if [ ! -f "$DIR/env" ]; then
    umask 077
    {
      echo "BUCKETDB_CLUSTER_SECRET=$(openssl rand -hex 24)"
      echo "BUCKETDB_ACCESS_KEY=BK$(openssl rand -hex 8 | tr a-f A-F)"
      echo "BUCKETDB_SECRET_KEY=$(openssl rand -hex 20)"
    } >"$DIR/env"
  fi
  set -a
  # shellcheck disable=SC1091
  . "$DIR/env"
  set +a
  if [ -z "${BUCKETDB_BIN:-}" ]; then cargo build --release --locked --quiet --bin bucketdb; fi
  for n in $(seq 1 $NODES); do
    if running "$n"; then echo "node$n already running (pid $(pid_of "$n"))"; continue; fi
    local http=$((9079 + n)) s3=$((8079 + n)) role
    if [ "$n" -eq 1 ]; then role=(--bootstrap); else role=(--join http://127.0.0.1:9080); fi
    mkdir -p "$DIR/node$n"
    "$BIN" server \
      --storage-path "$DIR/node$n/data" --metadata-path "$DIR/node$n/meta" \
      --http-addr "127.0.0.1:$http" --s3-addr "127.0.0.1:$s3" "${role[@]}" \
      >>"$DIR/node$n.log" 2>&1 &
    echo $! >"$DIR/node$n.pid"
    # Node 1 must lead before the others can join through it.
    if ! wait_ready "http://127.0.0.1:$http"; then
      echo "node$n did not become ready; its log:" >&2
      tail -n 30 "$DIR/node$n.log" >&2
      exit 1
    fi
  done
  echo
  echo "BucketDB cluster of $NODES nodes (replication factor 3: every object on every node)"
  for n in $(seq 1 $NODES); do
    echo "  node$n  REST http://127.0.0.1:$((9079 + n))  S3 http://127.0.0.1:$((8079 + n))  pid $(pid_of "$n")"
  done
  echo
  echo "  access key: $BUCKETDB_ACCESS_KEY"
  echo "  secret key: $BUCKETDB_SECRET_KEY"
  echo "  (saved with the cluster secret in $DIR/env)"
  echo
  echo "  try: set -a; . $DIR/env; set +a; $BIN cluster nodes"
}

status() {
  for n in $(seq 1 $NODES); do
    if running "$n"; then echo "node$n running (pid $(pid_of "$n"))"; else echo "node$n stopped"; fi
  done
  if [ -f "$DIR/env" ] && [ -x "$BIN" ]; then
    set -a
    # shellcheck disable=SC1091
    . "$DIR/env"
    set +a
    for n in $(seq 1 $NODES); do
      if running "$n"; then
        echo
        "$BIN" cluster nodes --endpoint "http://127.0.0.1:$((9079 + n))" || true
        break
      fi
    done
  fi
}

stop() {
  for n in $(seq 1 $NODES); do
    running "$n" && kill -TERM "$(pid_of "$n")" || true
  done
  for n in $(seq 1 $NODES); do
    local deadline=$((SECONDS + STOP_TIMEOUT_S))
    while running "$n" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if running "$n"; then kill -KILL "$(pid_of "$n")" || true; fi
    rm -f "$DIR/node$n.pid"
  done
  echo "stopped (data kept in $DIR)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
