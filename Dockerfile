# syntax=docker/dockerfile:1
# tak-etl job image: every job binary (etl-data, etl-pmtiles, later etl-events, ...) behind one
# entrypoint, `etl JOB ARGS...`. Build with BuildKit (default in current Docker):
#   docker build -t tak-etl .
#   docker run --rm tak-etl data --input s3://bucket/key.geojson --output "$DATABASE_URL" --table t
#   docker run --rm -p 8080:8080 -v "$PWD/out:/data:ro" -e ETL_TILES_JWT_SECRET=... \
#     tak-etl tiles serve --root /data --listen 0.0.0.0:8080 --public-url https://tiles.example.org
# As a Lambda container image, `etl tiles` runs the tile API as the handler (AWS_LAMBDA_RUNTIME_API
# is set by Lambda; configure ETL_TILES_ROOT=s3://bucket/prefix/, ETL_TILES_JWT_SECRET and
# ETL_TILES_PUBLIC_URL: auth is always on there).

# The map preview of etl-tiles (maplibre-gl + pmtiles from npm, bundled by esbuild); the Rust
# stage embeds the result through ETL_TILES_WEB_DIST instead of running npm itself.
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY jobs/tiles/web/package.json jobs/tiles/web/package-lock.json jobs/tiles/web/.npmrc ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY jobs/tiles/web/src ./src
COPY jobs/tiles/web/build.mjs ./
RUN node build.mjs --out /web-dist --modules /web/node_modules

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY --from=web /web-dist /web-dist
ENV ETL_TILES_WEB_DIST=/web-dist
COPY . .
# The registry and target dirs are BuildKit cache mounts, so rebuilds only compile what changed.
# A cache mount is not part of the layer, so the binaries are copied out in the same RUN.
# Every executable named etl-* in target/release is a job binary.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eux; \
    cargo build --release --locked --workspace --bins; \
    mkdir -p /out/bin; \
    find target/release -maxdepth 1 -type f -perm -u+x -name 'etl-*' -exec cp {} /out/bin/ \; ; \
    test -x /out/bin/etl-data; \
    ls -l /out/bin

FROM debian:bookworm-slim AS runtime
# ca-certificates unpinned on purpose: the image should get the current CA bundle.
# hadolint ignore=DL3008
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --gid 10001 etl; \
    useradd --uid 10001 --gid 10001 --home-dir /work --no-create-home --shell /usr/sbin/nologin etl; \
    mkdir -p /work/tmp; \
    chown -R 10001:10001 /work
COPY --from=build /out/bin/ /usr/local/bin/
COPY --chmod=0755 scripts/docker-entrypoint.sh /usr/local/bin/etl
# Logs as JSON lines for CloudWatch; spill files and local outputs go under /work (mount a volume
# there for large jobs).
ENV LOG_FORMAT=json \
    TMPDIR=/work/tmp
WORKDIR /work
USER 10001:10001
# Batch and ECS judge a job by its exit code, not by a health probe.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/etl"]
CMD ["help"]
