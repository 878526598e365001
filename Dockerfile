# syntax=docker/dockerfile:1
#
# Images for compose.yaml, from one file:
#
#   docker build --target bulkbackup -t bulkbackup .      # the default (last) stage
#   docker build --target minio -t bulkbackup-minio .     # MinIO built from source
#
# bulkbackup holds the four binaries (coordinator, reader, compressor,
# bulkctl), built static (CGO_ENABLED=0), on distroless static: no libc, no
# package manager, running as the non-root user nonroot (65532). The command
# picks the binary. A static busybox (from Debian's busybox-static) is the only
# other program: the compose health checks run `busybox wget` against each
# service's /readyz (on --metrics-addr, BULK_METRICS_ADDR=:9090 in compose).
#
# VERSION stamps the binaries (--version, the coordinator's micro service,
# bulk_build_info): docker build --build-arg VERSION="$(git describe --tags
# --always --dirty)" ., or make image; compose passes BULK_VERSION.
#
# MinIO's community edition is a source-only distribution since October 2025,
# so the minio stage builds the same pinned version scripts/install-minio.sh
# builds for the tests (scripts/deploy_test.go keeps the two pins equal).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends busybox-static \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# VERSION is what --version prints (docker build --build-arg VERSION=$(git describe --tags --always --dirty));
# .git is not in the context, so without it the binaries say "devel".
ARG VERSION=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/bulkbackup/bulkbackup/pkg/version.Version=${VERSION}" -o /out/ ./cmd/... \
 && mkdir -p /empty

FROM golang:${GO_VERSION}-bookworm AS minio-build
ARG MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOBIN=/out go install -trimpath -ldflags="-s -w" "github.com/minio/minio@${MINIO_VERSION}"

FROM gcr.io/distroless/static-debian12:nonroot AS minio
COPY --from=build /bin/busybox /usr/local/bin/busybox
COPY --from=minio-build /out/minio /usr/local/bin/minio
# A named volume mounted on /data starts with this directory's owner.
COPY --from=build --chown=65532:65532 /empty /data
USER 65532:65532
EXPOSE 9000 9001
ENTRYPOINT ["minio"]
CMD ["server", "/data", "--address", ":9000", "--console-address", ":9001"]

FROM gcr.io/distroless/static-debian12:nonroot AS bulkbackup
COPY --from=build /bin/busybox /usr/local/bin/busybox
COPY --from=build /out/ /usr/local/bin/
# Named volumes mounted here start with these directories' owner (the
# non-root user): the write key directories of encrypted repositories
# (bulkctl key write-key writes them, the services read them) and the
# state of a reader (its host identity) or of bulkctl (its known hosts).
COPY --from=build --chown=65532:65532 /empty /keys/coordinator
COPY --from=build --chown=65532:65532 /empty /keys/worker
COPY --from=build --chown=65532:65532 /empty /state
USER 65532:65532
ENTRYPOINT []
CMD ["bulkctl", "--help"]
