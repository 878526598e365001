# Builds all bulkbackup binaries as static executables into a small image
# that runs as a non-root user. Used by compose.yaml; the command picks the
# binary: coordinator, reader, compressor or bulkctl.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/...

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
ENTRYPOINT []
CMD ["bulkctl", "--help"]
