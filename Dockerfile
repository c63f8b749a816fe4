# Gatehouse server image: `docker build -t gatehouse .` (used by docker-compose.yml and
# deploy/kubernetes/). Size target: under 50 MB for the default `runtime` image (distroless
# cc base ~23 MB plus the stripped binary, ~17 MB today); see README "Docker image".
#
# Stage 1 builds the same `gatehouse` binary the tests run (same crate, same features),
# with the `release-lto` profile (Cargo.toml: whole-program LTO, about 10% less CPU per
# decision than `release`), stripped.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
ENV CARGO_PROFILE_RELEASE_LTO_DEBUG=0 \
    CARGO_PROFILE_RELEASE_LTO_STRIP=symbols
RUN cargo build --profile release-lto --locked --bin gatehouse

# Runtime with git, for the git policy source (`policies.git`): Debian slim with
# ca-certificates, git and ssh (batch mode: mount your git server's host keys at
# /etc/ssh/ssh_known_hosts). Build it with `docker build --target runtime-git`.
FROM debian:bookworm-slim AS runtime-git
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home gatehouse
COPY --from=build /src/target/release-lto/gatehouse /usr/local/bin/gatehouse
COPY gatehouse.yaml /etc/gatehouse/gatehouse.yaml
COPY policies /etc/gatehouse/policies
COPY examples/fastapi/dev-jwks.json /etc/gatehouse/examples/fastapi/dev-jwks.json
USER 10001:10001
EXPOSE 3593 3592
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["serve", "--config", "/etc/gatehouse/gatehouse.yaml"]

# Default runtime: distroless (glibc, CA certificates, no shell, no package manager),
# non-root (uid 65532), for policies from a directory or a Kubernetes ConfigMap. Run it
# with a read-only root filesystem and no capabilities (deploy/kubernetes/ does).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /src/target/release-lto/gatehouse /usr/local/bin/gatehouse
# gatehouse.yaml's paths are relative to the file itself.
COPY gatehouse.yaml /etc/gatehouse/gatehouse.yaml
COPY policies /etc/gatehouse/policies
COPY examples/fastapi/dev-jwks.json /etc/gatehouse/examples/fastapi/dev-jwks.json
USER 65532:65532
# gRPC ext_authz (3593) and HTTP API/health/metrics (3592), as in gatehouse.yaml.
EXPOSE 3593 3592
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["serve", "--config", "/etc/gatehouse/gatehouse.yaml"]
