#!/bin/sh
# The container's entrypoint: runs `bucketdb` with the container's arguments as the
# unprivileged `bucketdb` user. Started as root (the default), it first hands /data to
# that user, because a bind-mounted folder (`-v ./data:/data`) arrives owned by whoever
# made it on the host, and the node could not create its stores there. Only the top
# levels are checked (the folders and metadata files; not every chunk), so a start stays
# quick on a large store. BUCKETDB_KEEP_OWNER=1 leaves ownership alone. Started with
# `--user`, it runs bucketdb as that user unchanged.
set -eu
DATA=/data
# Depth that covers /data, storage/ and meta/ with their files, and the chunk folders'
# first level.
CHECK_DEPTH=3
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$DATA"
  if [ "${BUCKETDB_KEEP_OWNER:-0}" != 1 ] &&
    [ -n "$(find "$DATA" -maxdepth "$CHECK_DEPTH" ! -user bucketdb -print -quit)" ]; then
    chown -R bucketdb:bucketdb "$DATA" ||
      echo "warning: could not hand $DATA to user bucketdb; the node may not be able to write there" >&2
  fi
  exec setpriv --reuid=bucketdb --regid=bucketdb --init-groups -- bucketdb "$@"
fi
exec bucketdb "$@"
