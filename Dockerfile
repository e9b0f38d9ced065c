# syntax=docker/dockerfile:1
#
# make image                      (podman or docker; stamps the version and labels)
# docker build -t wsd .           (works too, with "dev" for the version)
# docker run --rm -p 3000:3000 -p 127.0.0.1:9090:9090 wsd
#
# The master is PID 1: it handles SIGTERM itself, drains its workers, reaps
# every child and exits 0 after a clean stop. Its graceful stop
# (WSD_SHUTDOWN_TIMEOUT, 8s here) must fit in `docker stop`'s grace period
# (10s by default, --stop-timeout / stop_grace_period to change).

# The release, the commit and the build time: the Makefile passes them.
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z

FROM golang:1.26-bookworm AS build
ARG VERSION
ARG REVISION
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# A static binary: no libc needed in the final image. The source has no .git
# here, so the revision comes from the build argument.
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags="-s -w -X github.com/wsd-server/wsd/internal/buildinfo.Version=${VERSION} -X github.com/wsd-server/wsd/internal/buildinfo.Revision=${REVISION}" \
      -o /out/wsd ./cmd/wsd

FROM scratch
ARG VERSION
ARG REVISION
ARG CREATED
LABEL org.opencontainers.image.title="wsd" \
      org.opencontainers.image.description="A pre-fork WebSocket and HTTP daemon" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/wsd-server/wsd" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/wsd /usr/local/bin/wsd
COPY LICENSE /usr/share/doc/wsd/LICENSE
# wsd writes no file: no writable directory is needed, and none is given.
# The admin address (metrics, /healthz, /readyz) is on in the image, on every
# interface of the container: publish it only where its readers are, since
# it is not authenticated (-p 127.0.0.1:9090:9090).
ENV PATH=/usr/local/bin \
    WSD_ADDRESS=0.0.0.0 \
    WSD_PORT=3000 \
    WSD_ADMIN_ADDRESS=:9090 \
    WSD_SHUTDOWN_TIMEOUT=8s \
    WSD_LOG_FORMAT=json
# Any non-root uid works; 65532 is the usual "nonroot".
USER 65532:65532
EXPOSE 3000 9090
STOPSIGNAL SIGTERM
# There is no shell in the image: exec form. `wsd health` asks /readyz on
# WSD_ADMIN_ADDRESS and exits 0 or 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["wsd", "health", "--timeout", "4s"]
# Exec form: the master itself is PID 1, not a shell that would swallow
# SIGTERM.
ENTRYPOINT ["wsd", "serve"]
