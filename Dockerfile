# drs as a container image: `docker build -t drs:dev .` at the repository root.
# The image runs one node (`drs node`); the configuration is mounted at /etc/drs and the
# cluster key and HTTP token come from the environment (deploy/kubernetes/ does both).

# ---- build: the official Swift image on Debian 12 (bookworm), as the repository builds
FROM swift:6.3-bookworm AS build
WORKDIR /src

# Dependencies first, so that a change in the sources alone reuses this layer.
# (Package.resolved is not tracked; the wildcard copies it when the checkout has one.)
COPY Package.* ./
RUN swift package resolve

COPY . .
# The Makefile's `release` target, with the Swift runtime and Foundation linked in, so the
# runtime image needs no Swift toolchain.
RUN swift build -c release --product drs --static-swift-stdlib \
    && install -D -m 0755 "$(swift build -c release --product drs --show-bin-path)/drs" /out/drs

# ---- runtime
FROM debian:bookworm-slim

# What the statically linked binary still loads (ldd): libcurl (FoundationNetworking),
# libstdc++, zlib, and CA certificates for outgoing TLS.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates libcurl4 libstdc++6 zlib1g \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid, so that Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 drs \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin drs \
    && mkdir -p /etc/drs

COPY --from=build /out/drs /usr/local/bin/drs

USER 10001:10001
# HTTP API, /healthz, /readyz and /metrics
EXPOSE 8080/tcp
# replication (TCP and UDP)
EXPOSE 7100/tcp 7100/udp
# membership (SWIM, UDP)
EXPOSE 7200/udp

# The node's name comes from --name or DRS_NODE_NAME; SIGTERM drains it.
ENTRYPOINT ["/usr/local/bin/drs", "node"]
CMD ["--config", "/etc/drs/cluster.yaml"]
