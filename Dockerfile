# Gatehouse server image: `docker build -t gatehouse .` (used by docker-compose.yml).
# Build stage: the Rust toolchain; runtime stage: Debian slim with the binary, the
# bundled config, the demo policies and the dev JWKS at the paths gatehouse.yaml names;
# ca-certificates for https (JWKS, OTLP), git and ssh for the git policy source (ssh
# runs in batch mode: mount the host keys of your git server at /etc/ssh/ssh_known_hosts).
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin gatehouse

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home gatehouse
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
# gatehouse.yaml's paths are relative to the file itself.
COPY gatehouse.yaml /etc/gatehouse/gatehouse.yaml
COPY policies /etc/gatehouse/policies
COPY examples/fastapi/dev-jwks.json /etc/gatehouse/examples/fastapi/dev-jwks.json
USER gatehouse
# gRPC ext_authz (3593) and HTTP health/metrics (3592), as in gatehouse.yaml.
EXPOSE 3593 3592
ENTRYPOINT ["gatehouse"]
CMD ["serve", "--config", "/etc/gatehouse/gatehouse.yaml"]
