#!/usr/bin/env bash
# Installs a nats-server binary for the process-level tests and the local
# fleet (scripts/fleet-up.sh). Prints the binary's path on stdout.
#
# Order of preference:
#   1. $BULK_NATS_BIN, when it names an executable;
#   2. the pinned version built from the Go module proxy into
#      $BULK_TOOLS_BIN (default $(go env GOPATH)/bin), cached with a version
#      stamp so later runs skip the build (~1.5 min cold on 2 cores);
#   3. Debian's /usr/sbin/nats-server (apt-get install nats-server, 2.9.x),
#      when the build is impossible (no Go module proxy).
# Exits non-zero, with a message on stderr, when none of these is possible.
set -euo pipefail

NATS_VERSION="${NATS_VERSION:-v2.15.2}"

if [ -n "${BULK_NATS_BIN:-}" ]; then
  if [ -x "$BULK_NATS_BIN" ]; then
    echo "$BULK_NATS_BIN"
    exit 0
  fi
  echo "install-nats: BULK_NATS_BIN=$BULK_NATS_BIN is not executable" >&2
  exit 1
fi

if command -v go >/dev/null 2>&1; then
  BIN_DIR="${BULK_TOOLS_BIN:-$(go env GOPATH)/bin}"
  bin="$BIN_DIR/nats-server"
  stamp="$BIN_DIR/.nats-server-version"
  if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$NATS_VERSION" ]; then
    echo "$bin"
    exit 0
  fi
  mkdir -p "$BIN_DIR"
  echo "install-nats: building nats-server $NATS_VERSION (about 1.5 min cold)" >&2
  if GOBIN="$BIN_DIR" go install "github.com/nats-io/nats-server/v2@$NATS_VERSION" >&2; then
    echo "$NATS_VERSION" > "$stamp"
    echo "$bin"
    exit 0
  fi
  echo "install-nats: go install failed; looking for a system nats-server" >&2
fi

for bin in /usr/sbin/nats-server /usr/bin/nats-server; do
  if [ -x "$bin" ]; then
    echo "install-nats: using $bin ($("$bin" --version 2>/dev/null || echo "unknown version"))" >&2
    echo "$bin"
    exit 0
  fi
done
echo "install-nats: no nats-server: go install github.com/nats-io/nats-server/v2@$NATS_VERSION failed and none is installed (apt-get install nats-server)" >&2
exit 1
