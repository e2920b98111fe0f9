# repave resource image: /opt/resource/{check,in,out} plus a CA bundle, on scratch (no shell at run time).
# One static multi-call binary is installed as `check`; `in` and `out` are symlinks to it.
#
# Two ways to get the files into the final stage, chosen with ASSETS_STAGE:
#   builder  (default) compiles the binary inside a Rust image; needs registry access.
#   prebuilt           takes the tree from the build context's assets/ directory
#                      (assets/opt/resource/{check,in,out}, assets/etc/ssl/certs/ca-certificates.crt);
#                      ci/tasks/build-image prepares that context and is what CI uses, since CI
#                      machines cannot pull images.
ARG ASSETS_STAGE=builder

FROM docker.io/library/rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# No musl target: a glibc static-pie build runs on scratch. --target keeps build scripts dynamic.
RUN RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --release --locked --target x86_64-unknown-linux-gnu --bin repave \
 && mkdir -p /assets/opt/resource /assets/etc/ssl/certs \
 && cp target/x86_64-unknown-linux-gnu/release/repave /assets/opt/resource/check \
 && ln -s check /assets/opt/resource/in \
 && ln -s check /assets/opt/resource/out \
 && cp /etc/ssl/certs/ca-certificates.crt /assets/etc/ssl/certs/

FROM scratch AS prebuilt
COPY assets/ /assets/

# hadolint ignore=DL3006
FROM ${ASSETS_STAGE} AS assets

FROM scratch AS resource
# Copying the tree keeps in/out as symlinks (copying them one by one would triple the image).
COPY --from=assets /assets/ /
