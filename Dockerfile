# syntax=docker/dockerfile:1
# The dataplane image: one static binary on distroless, run as non-root.
#
#   docker build --build-arg VERSION=v0.1.0 -t dataplane .
#   docker run --rm dataplane version
#   docker run -p 8080:8080 -p 9090:9090 -p 7946:7946 -p 7946:7946/udp \
#     -e DATAPLANE_GOSSIP_KEY=... dataplane sentinel -origin s3://bucket/prefix?region=us-east-1
#
# The default command is `dataplane sentinel`; pass another command
# (cachenode, publish ... serve, sync) as the container's arguments.

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=""
# Set by BuildKit for the image's platform (docker buildx build --platform).
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH:-amd64} scripts/build-static.sh /out/dataplane "$VERSION" && \
    mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/dataplane /usr/local/bin/dataplane
COPY --from=build --chown=65532:65532 /out/data /var/lib/dataplane
COPY LICENSE /usr/share/doc/dataplane/LICENSE
USER 65532:65532
# gateway, admin (/healthz, /readyz, /metrics), gossip
EXPOSE 8080 9090 7946/tcp 7946/udp
ENTRYPOINT ["/usr/local/bin/dataplane"]
CMD ["sentinel"]
