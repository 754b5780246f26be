# vtmove's images. The default target is the operator; `--target vtsim` builds the simulated
# tablet fleet used by the kind e2e test (tests/e2e/kind).
#
#   docker build -t vtmove:<version> .        # the chart's default image (charts/vtmove/README.md)
#   docker build -t vtsim:dev --target vtsim .

FROM rust:1.95-bookworm AS builder
# etcd-client's build script compiles etcd's protos with protoc.
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p vtmove --bin vtmove

# Reuses the builder's compiled dependencies; only vtsim itself is compiled on top.
FROM builder AS vtsim-builder
RUN cargo build --release --locked -p vtsim --bin vtsim

FROM gcr.io/distroless/cc-debian12:nonroot AS vtsim
COPY --from=vtsim-builder /src/target/release/vtsim /vtsim
USER nonroot:nonroot
ENTRYPOINT ["/vtsim"]

# Last, so a plain `docker build` produces the operator image.
FROM gcr.io/distroless/cc-debian12:nonroot AS vtmove
COPY --from=builder /src/target/release/vtmove /vtmove
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/vtmove"]
CMD ["run"]
