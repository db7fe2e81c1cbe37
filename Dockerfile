# syntax=docker/dockerfile:1
#
# The Harness gateway: a static Go binary on a small base image, run as a
# non-root user. The configuration is mounted, secrets come from the
# environment (${VAR} in the config), the audit trail goes to a volume.
#
#   docker build -t harness-gateway .
#   docker run --rm -p 127.0.0.1:8080:8080 \
#     -v "$PWD/harness.yaml:/etc/harness/harness.yaml:ro" \
#     -e HARNESS_OIDC_CLIENT_SECRET \
#     harness-gateway
#
# The runtime base is Alpine rather than distroless only so that a container
# health check can call /readyz with busybox wget (docker compose has no HTTP
# probe of its own). Under Kubernetes, where the kubelet probes over HTTP, the
# same binary runs unchanged on gcr.io/distroless/static-debian12:nonroot.

FROM golang:1.26-alpine AS build
WORKDIR /src
# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/gateway ./cmd/gateway

FROM alpine:3.22
# ca-certificates: the gateway fetches OIDC discovery and keys over https.
RUN apk add --no-cache ca-certificates \
 && addgroup -S -g 10001 harness \
 && adduser -S -D -H -u 10001 -G harness -s /sbin/nologin harness \
 && mkdir -p /etc/harness /var/lib/harness \
 && chown harness:harness /var/lib/harness
COPY --from=build /out/gateway /usr/local/bin/gateway
USER 10001:10001
WORKDIR /var/lib/harness
# The audit trail (audit.path: /var/lib/harness/audit.log) belongs on a volume.
VOLUME ["/var/lib/harness"]
EXPOSE 8080
# SIGTERM: stop accepting, finish in-flight calls (--shutdown-grace, 30s), exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["serve", "--config", "/etc/harness/harness.yaml"]
