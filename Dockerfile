# repave resource image: /opt/resource/{check,in,out} plus a CA bundle, on scratch (no shell at run time).
#
# Two ways to get the binaries into the final stage, chosen with ASSETS_STAGE:
#   builder  (default) compiles static binaries inside a Rust image; needs registry access.
#   prebuilt           takes them from the build context's assets/ directory (check, in, out,
#                      ca-certificates.crt); ci/tasks/build-image prepares that context and is what CI
#                      uses, since CI machines cannot pull images.
ARG ASSETS_STAGE=builder

FROM docker.io/library/rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# No musl target: a glibc static-pie build runs on scratch. --target keeps build scripts dynamic.
RUN RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --release --locked --target x86_64-unknown-linux-gnu --bin check --bin in --bin out \
 && mkdir -p /assets \
 && cp target/x86_64-unknown-linux-gnu/release/check target/x86_64-unknown-linux-gnu/release/in \
       target/x86_64-unknown-linux-gnu/release/out /etc/ssl/certs/ca-certificates.crt /assets/

FROM scratch AS prebuilt
COPY assets/ /assets/

# hadolint ignore=DL3006
FROM ${ASSETS_STAGE} AS assets

FROM scratch AS resource
COPY --from=assets /assets/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=assets /assets/check /assets/in /assets/out /opt/resource/
ENTRYPOINT ["/opt/resource/check"]
