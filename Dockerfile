# syntax=docker/dockerfile:1
# peerdb-maintenance: a static, non-root image that runs the gate once and exits.
#
#   docker build -t peerdb-maintenance \
#     --build-arg VERSION="$(git describe --tags --always)" --build-arg COMMIT="$(git rev-parse --short HEAD)" .
#
# The go build line below is the Makefile's build target; test/packaging checks that the two agree
# and that the binary runs alone in an empty root directory, as it does in the final stage.

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV GOTOOLCHAIN=local
# Dependencies in their own layer: rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
# Set by BuildKit from --platform; empty means the build platform.
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/peerdb-maintenance .

# distroless/static: CA certificates (for rediss:// and https tasks), tzdata, /etc/passwd with nonroot
# (65532), no shell, no package manager.
FROM gcr.io/distroless/static:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="peerdb-maintenance" \
      org.opencontainers.image.description="Redis-coordinated maintenance gate run once before PeerDB containers start" \
      org.opencontainers.image.source="https://github.com/peerdb-maintenance/peerdb-maintenance" \
      org.opencontainers.image.url="https://github.com/peerdb-maintenance/peerdb-maintenance" \
      org.opencontainers.image.documentation="https://github.com/peerdb-maintenance/peerdb-maintenance#readme" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/peerdb-maintenance /peerdb-maintenance
USER 65532:65532
ENTRYPOINT ["/peerdb-maintenance"]
