# hellod in a FROM scratch image: the static binary and nothing else.
#
# No builder image: the binary comes from the host's cargo build (see the README), so that
#   cargo build --release && docker build -t hellod .
# gives the linux/amd64 image with any builder, BuildKit or the classic one. With BuildKit
# (`docker buildx build`), TARGETARCH picks the binary, so after also running
#   cargo build --release --target aarch64-unknown-linux-musl
# `docker buildx build --platform linux/amd64,linux/arm64 .` builds both images.

# One stage per architecture, named after Docker's TARGETARCH. BuildKit builds only the stage that
# the final image uses. The classic builder builds every stage and knows no TARGETARCH (hence the
# amd64 default below), so the arm64 stage must not fail when there is no aarch64 binary: the
# wildcard may match nothing, and .dockerignore is copied along only to keep the list non-empty.
FROM scratch AS amd64
COPY target/x86_64-unknown-linux-musl/release/hellod /hellod

FROM scratch AS arm64
COPY .dockerignore target/aarch64-unknown-linux-musl/release/hellod* /

# TARGETARCH is not declared with ARG on purpose: an ARG without a value would hide BuildKit's
# automatic value from this FROM in older BuildKit releases (such as Debian 12's docker.io).
FROM ${TARGETARCH:-amd64} AS binary

FROM scratch
COPY --from=binary /hellod /hellod
# nobody:nogroup, numeric so that Kubernetes' runAsNonRoot can check it without an /etc/passwd.
USER 65534:65534
EXPOSE 8080
# What hellod drains on (as does SIGINT); it exits 0 within --grace, 10 s by default.
STOPSIGNAL SIGTERM
# Reads the listen address from the same environment as the server (PORT, HELLOD_LISTEN): change
# the port with those, not with a --listen flag, or the health check looks on the wrong port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/hellod", "healthcheck"]
ENTRYPOINT ["/hellod"]
