# Build stage: the manager in release mode. etcd-client needs protoc.
FROM rust:1-bookworm AS builder
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY api api
COPY operator operator
COPY test test
COPY hack/pki hack/pki
RUN cargo build --release --locked -p etcd-op

# Final stage: glibc and libgcc only, non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/etcd-op /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
