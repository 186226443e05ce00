# syntax=docker/dockerfile:1
# Two images, both static binaries on distroless as a numeric non-root user:
#   docker build --target injector -t api-access-injector .   (the webhook)
#   docker build --target proxy    -t api-proxy .             (the injected sidecar)
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 --target ...
ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS deps
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download

FROM deps AS build-proxy
ARG TARGETOS TARGETARCH VERSION=dev
# Only what api-proxy imports, so that an edit elsewhere keeps this layer cached
# (test/dockerfile checks the list against go list -deps).
COPY cmd/api-proxy/ cmd/api-proxy/
COPY proxy/ proxy/
COPY internal/accessrecord/ internal/accessrecord/
COPY internal/cliflag/ internal/cliflag/
COPY internal/version/ internal/version/
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
    -ldflags "-s -w -X github.com/api-access-injector/api-access-injector/internal/version.Version=${VERSION}" \
    -o /out/api-proxy ./cmd/api-proxy

FROM deps AS build-injector
ARG TARGETOS TARGETARCH VERSION=dev
COPY cmd/api-access-injector/ cmd/api-access-injector/
COPY injector/ injector/
COPY webhook/ webhook/
COPY internal/ internal/
COPY proxy/proxyargs/ proxy/proxyargs/
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
    -ldflags "-s -w -X github.com/api-access-injector/api-access-injector/internal/version.Version=${VERSION}" \
    -o /out/api-access-injector ./cmd/api-access-injector

FROM gcr.io/distroless/static:nonroot AS proxy
COPY --from=build-proxy /out/api-proxy /api-proxy
USER 65532:65532
ENTRYPOINT ["/api-proxy"]

FROM gcr.io/distroless/static:nonroot AS injector
COPY --from=build-injector /out/api-access-injector /api-access-injector
USER 65532:65532
ENTRYPOINT ["/api-access-injector"]
