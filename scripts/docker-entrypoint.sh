#!/bin/sh
# The container's entrypoint: runs `bucketdb` with the container's arguments as the
# unprivileged `bucketdb` user. Started as root (the default), it first hands /data to
# that user, because a bind-mounted folder (`-v ./data:/data`) arrives owned by whoever
# made it on the host, and the node could not create its stores there. Started with
# `--user`, it runs bucketdb as that user unchanged.
set -eu
DATA=/data
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$DATA"
  if [ "$(stat -c %u "$DATA")" != "$(id -u bucketdb)" ]; then
    chown -R bucketdb:bucketdb "$DATA"
  fi
  exec setpriv --reuid=bucketdb --regid=bucketdb --init-groups -- bucketdb "$@"
fi
exec bucketdb "$@"
