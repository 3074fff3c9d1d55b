# syntax=docker/dockerfile:1
# BucketDB in a container: one static-ish binary on Debian slim.
#   docker build -t bucketdb .
#   docker run -d -p 9080:9080 -p 8080:8080 -v ./data:/data bucketdb            # one node
#   docker compose up -d                                                        # 3 nodes
# Data (chunks and metadata) lives under /data; generated root keys are printed to the
# log on the first start and kept in /data/meta/credentials.toml.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The crate registry and the build folder are cache mounts (BuildKit, buildah), so a
# rebuild after a source change recompiles only what changed. The binary is copied out
# of the mount in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin bucketdb \
 && cp target/release/bucketdb /usr/local/bin/bucketdb

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data bucketdb \
 && mkdir -p /data && chown bucketdb /data
COPY --from=build /usr/local/bin/bucketdb /usr/local/bin/bucketdb
# Starts as root only to hand /data (often a bind mount owned by the host user) to the
# `bucketdb` user, then runs the node as that user. Commands run with `docker exec`
# start as root: use `docker exec -u bucketdb ...` for anything that writes to /data.
COPY --chmod=0755 scripts/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV BUCKETDB_STORAGE_PATH=/data/storage \
    BUCKETDB_METADATA_PATH=/data/meta \
    BUCKETDB_HTTP_ADDR=0.0.0.0:9080 \
    BUCKETDB_S3_ADDR=0.0.0.0:8080
VOLUME /data
EXPOSE 9080 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD curl -fsS http://127.0.0.1:9080/health/ready || exit 1
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["server"]
