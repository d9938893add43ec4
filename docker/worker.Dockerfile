# syntax=docker/dockerfile:1
# mediaq-worker and its mediaq-transcode child, with Debian 12's libav runtime libraries only
# (no headers, no ffmpeg CLI). Runs as uid 10001; see docker/compose.yaml for the container's
# hardening (cap_drop ALL, no-new-privileges, seccomp profile, read-only root, tmpfs job directories).
# Build from the repository root: docker build -f docker/worker.Dockerfile -t mediaq-worker .
# The steps are scripts (docker/build.sh, docker/runtime.sh) that scripts/check-docker.sh --build
# also runs on a Debian 12 host without an engine; scripts/check-containers.sh builds and runs the
# images with podman.

# The builder stage is the same in both Dockerfiles (docker/check.py keeps it so): an engine with a
# layer cache builds it once for both images, and cargo compiles the shared dependencies once.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY scripts/lib.sh scripts/lib.sh
COPY docker/build.sh docker/build.sh
RUN bash docker/build.sh packages
COPY . .
# COPY keeps the files' times, and the target cache can hold a build newer than an older source
# (cargo compares times): touching the workspace's own sources makes cargo rebuild its crates every
# time; the dependencies stay cached.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    find api shared worker web migrations -type f -exec touch {} + \
    && bash docker/build.sh all /out

FROM debian:12-slim
COPY scripts/lib.sh /tmp/mediaq-setup/scripts/lib.sh
COPY docker/runtime.sh docker/healthcheck.sh /tmp/mediaq-setup/docker/
RUN bash /tmp/mediaq-setup/docker/runtime.sh worker --image && rm -rf /tmp/mediaq-setup
COPY --from=builder /out/bin/mediaq-worker /out/bin/mediaq-transcode /out/bin/mediaq-sandbox-probe /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/mediaq
ENV MEDIAQ_STORAGE_DIR=/var/lib/mediaq \
    MEDIAQ_WORK_DIR=/work \
    MEDIAQ_TRANSCODE_BIN=/usr/local/bin/mediaq-transcode \
    MEDIAQ_METRICS_BIND=0.0.0.0:9464 \
    MEDIAQ_LOG_FORMAT=json
EXPOSE 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["mediaq-healthcheck", "127.0.0.1:9464", "/healthz"]
ENTRYPOINT ["mediaq-worker"]
CMD ["run"]
