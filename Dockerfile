# Multi-stage build: a full Rust toolchain to compile, a slim Debian runtime
# with one binary, running as a non-root user. Alone (`docker run`), the image
# is the embedded mode with its state in /var/lib/imgpipe/data; with REDIS_URL
# and S3_ENDPOINT set (docker-compose.yml) it is one process of the
# distributed shape. It listens on 0.0.0.0:8000, so it needs an API key to
# start: -e IMGPIPE_BOOTSTRAP_KEY=..., or `imgpipe keys create` on the volume.
FROM rust:1.95-bookworm AS build
# nasm assembles libjpeg-turbo's SIMD code (2x faster JPEG); without it the
# build still succeeds, with a warning, and the plain C codec.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nasm libtiff-dev liblcms2-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Build dependencies first so they are cached apart from our sources.
COPY Cargo.toml Cargo.lock ./
# (Cargo.toml names the benches, so they need stand-ins too.)
RUN mkdir src benches && echo "fn main() {}" > src/main.rs && touch src/lib.rs \
    && echo "fn main() {}" > benches/ops.rs && cp benches/ops.rs benches/codec.rs \
    && cargo build --release --locked \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
COPY migrations ./migrations
COPY openapi.yaml ./
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libtiff6 liblcms2-2 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/imgpipe --create-home imgpipe
COPY --from=build /src/target/release/imgpipe /usr/local/bin/imgpipe
USER imgpipe
WORKDIR /var/lib/imgpipe
ENV IMGPIPE_BIND=0.0.0.0:8000 \
    IMGPIPE_DATA_DIR=/var/lib/imgpipe/data \
    RUST_LOG=info
RUN mkdir -p /var/lib/imgpipe/data
VOLUME ["/var/lib/imgpipe/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
ENTRYPOINT ["imgpipe"]
CMD ["serve"]
