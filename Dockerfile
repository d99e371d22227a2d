# tagflow container image: a build image with the Rust toolchain and the sources, and a run image
# that holds only the binary (plus the CA bundle and glibc that distroless/cc ships). No toolchain,
# no sources and no secrets reach the run image.
#
#   docker build -t tagflow .
#   docker run -p 8080:8080 -v tagflow-data:/data tagflow
#
# The same image is what heroku.yml builds for the `web` process.

# --- build image -----------------------------------------------------------------------------
# bookworm on both sides: the binary links against the glibc that cc-debian12 ships.
FROM rust:1.95-slim-bookworm AS chef
# cargo-chef turns Cargo.toml + Cargo.lock into a recipe, so that the dependencies compile in a
# layer of their own that a change to src/ does not invalidate.
RUN cargo install --locked cargo-chef@0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
# /out/root/data is created here, owned by the run user, because the run image has no shell to
# create it: a named volume mounted on /data copies this ownership on first use.
RUN cargo build --release --locked --bin tagflow \
    && install -D -m 0755 target/release/tagflow /out/bin/tagflow \
    && install -d -m 0750 -o 65532 -g 65532 /out/root/data

# --- run image -------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="tagflow" \
      org.opencontainers.image.description="Live graph of who interacts with whom around a hashtag" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /out/bin/tagflow /usr/local/bin/tagflow
COPY --from=build --chown=65532:65532 /out/root/ /
# The uid/gid of distroless' `nonroot` user, by number so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532
# A 5 s drain of in-flight requests leaves room for stopping the sources and flushing sled
# inside Docker's default 10 s between SIGTERM and SIGKILL.
ENV TAGFLOW_DATA_DIR=/data \
    PORT=8080 \
    TAGFLOW_SHUTDOWN_TIMEOUT=5
VOLUME ["/data"]
EXPOSE 8080
# The binary probes its own /status (the run image has no curl and no shell).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/tagflow", "healthcheck"]
# tagflow stops accepting, drains in-flight requests, stops its sources and flushes sled on
# SIGTERM, well within Docker's 10 s grace and Heroku's 30 s.
STOPSIGNAL SIGTERM
# The whole start command is the ENTRYPOINT, in exec form: Heroku runs a CMD through /bin/sh,
# which distroless does not have, but runs an ENTRYPOINT as it is. Other subcommands:
#   docker run --rm --entrypoint /usr/local/bin/tagflow tagflow --help
ENTRYPOINT ["/usr/local/bin/tagflow", "serve"]
