# syntax=docker/dockerfile:1
#
# docker build -t wsd .
# docker run --rm -p 3000:3000 -e WSD_PROCESSES=0 wsd
#
# The master is PID 1: it handles SIGTERM itself, drains its workers, reaps
# every child and exits 0 after a clean stop. Its graceful stop
# (WSD_SHUTDOWN_TIMEOUT, 8s here) must fit in `docker stop`'s grace period
# (10s by default, --stop-timeout / stop_grace_period to change).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# A static binary: no libc needed in the final image.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/wsd ./cmd/wsd

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/wsd /usr/local/bin/wsd
ENV PATH=/usr/local/bin \
    WSD_ADDRESS=0.0.0.0 \
    WSD_PORT=3000 \
    WSD_SHUTDOWN_TIMEOUT=8s \
    WSD_LOG_FORMAT=json
# Any non-root uid works; 65532 is the usual "nonroot".
USER 65532:65532
EXPOSE 3000
STOPSIGNAL SIGTERM
# Exec form: the master itself is PID 1, not a shell that would swallow
# SIGTERM.
ENTRYPOINT ["wsd", "serve"]
