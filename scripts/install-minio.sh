#!/usr/bin/env bash
# Installs the pinned MinIO server (the real S3 used by tests, demo and bench)
# from the Go module proxy, caching the binary outside the repository.
# Prints the binary's path. Skips the build when the cached binary exists.
set -euo pipefail

MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
BIN_DIR="${BULK_TOOLS_BIN:-$(go env GOPATH)/bin}"
bin="$BIN_DIR/minio"
stamp="$BIN_DIR/.minio-version"

if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$MINIO_VERSION" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$BIN_DIR"
echo "building minio $MINIO_VERSION (takes a few minutes cold)" >&2
GOBIN="$BIN_DIR" go install "github.com/minio/minio@$MINIO_VERSION" >&2
echo "$MINIO_VERSION" > "$stamp"
echo "$bin"
