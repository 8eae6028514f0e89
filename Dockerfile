# playsync container image: a Rust build stage, then a small runtime stage (glibc and the
# binary, no shell, no package manager, no curl: `playsync healthcheck` is the probe).
#
#   docker build -t playsync .                 # or: podman build -t playsync .
#   docker run --stop-timeout 20 -p 3000:3000 -p 5051:5051 -v playsync-data:/data playsync
#
# The base images are build arguments, so a mirror or locally made images can stand in:
#   --build-arg BUILDER_IMAGE=registry.example/rust:1.95-bookworm
#   --build-arg RUNTIME_IMAGE=registry.example/distroless/cc-debian12:nonroot
# The runtime stage runs no command, so any glibc base (Debian 12 or newer) works as
# RUNTIME_IMAGE. scripts/build-image wraps this (and can make both bases without a registry).
# No `# syntax=` line: the builder's own Dockerfile frontend (BuildKit, buildah) handles the
# cache mounts, and nothing extra is pulled.
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
# The context is only the manifests and src/ (see .dockerignore).
COPY . .
# The cache mounts keep the crate downloads and the target directory between builds; the
# binary is copied out of the cached target directory in the same step, without its line
# tables (symbols stay, so backtraces still name functions): about a quarter of the size.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin playsync \
    && install -d -m 0755 /out/usr/local/bin /out/data \
    && objcopy --strip-debug target/release/playsync /out/usr/local/bin/playsync

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="playsync" \
      org.opencontainers.image.description="Real-time playback synchronization server: Socket.IO listening rooms and SSE positions" \
      org.opencontainers.image.licenses="MIT"
# The trust store for rediss:// (Redis over TLS), whatever the runtime base ships.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/usr/local/bin/playsync /usr/local/bin/playsync
# The data directory belongs to the unprivileged user (65532, distroless's "nonroot"); a new
# named volume mounted there takes this ownership.
COPY --from=build --chown=65532:65532 /out/data /data
ENV PORT=3000 \
    TTS_PROXY_PORT=5051 \
    TTS_DATA_DIR=/data \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
VOLUME ["/data"]
EXPOSE 3000 5051
# SIGTERM drains: clients are disconnected over DRAIN_SECS (default 10) and the process exits
# within DRAIN_SECS + 5 s, so give `docker stop` at least that (`docker run --stop-timeout 20`,
# `docker stop -t 20`, compose's stop_grace_period): docker's default of 10 s cuts it short.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/playsync", "healthcheck", "--timeout-secs", "3"]
ENTRYPOINT ["/usr/local/bin/playsync"]
