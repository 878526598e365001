#!/usr/bin/env bash
# fleet-up.sh: start the compose.yaml topology on this machine as plain
# processes, for trying the fleet without containers (and for the tests):
#
#   3 nats-server nodes clustered on 127.0.0.1 (configs/nats-server.conf,
#     JetStream, max_payload 8MB, user and password)
#   MinIO (scripts/install-minio.sh) as the S3 repository
#   the coordinator (--nats with the three URLs, --replicas 3)
#   one reader (--host $READER_HOST) and $COMPRESSORS compressors
#
# Logs, PID files, data and the binaries live under $FLEET_DIR; the
# connection settings and secrets are written to $FLEET_DIR/env (mode 600),
# which a shell sources to use the fleet. scripts/fleet-down.sh stops it.
# Encrypted repositories: the coordinator takes write keys from
# $FLEET_DIR/keys/coordinator, the reader and compressors from
# $FLEET_DIR/keys/worker (bulkctl key write-key -o puts them there, no
# restart needed), the reader keeps its host identity in
# $FLEET_DIR/host-identity; the env file names a password file for bulkctl.
#
#   scripts/fleet-up.sh                        # defaults below
#   COMPRESSORS=4 READER_HOST=db1 FLEET_DIR=/tmp/fleet scripts/fleet-up.sh
#
# Environment:
#   FLEET_DIR            where everything goes (default .fleet in the current directory)
#   COMPRESSORS          compressor processes (default 2)
#   COMPRESSOR_WORKERS   --workers of each compressor (default: the binary's, one per CPU)
#   READER_HOST          --host of the reader (default local)
#   FLEET_PORT_BASE      first of 14+COMPRESSORS consecutive ports on 127.0.0.1 (default:
#                        the previous run's, else a free random block from 20000)
#   FLEET_TIMEOUT        seconds to wait for each stage to be ready (default 60)
#   FLEET_LOG_LEVEL      --log-level of the bulkbackup services (default info)
#   FLEET_BIN            directory with prebuilt coordinator, reader, compressor and
#                        bulkctl (default: go build -o $FLEET_DIR/bin ./cmd/... ./scripts/mkvolume,
#                        stamped with git describe's version as the Makefile does)
#   BULK_NATS_BIN        nats-server to use (default: scripts/install-nats.sh)
#   BULK_MINIO_BIN       minio to use (default: scripts/install-minio.sh)
#   MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, BULK_NATS_USER, BULK_NATS_PASSWORD
#                        credentials (default: the previous run's in $FLEET_DIR/env,
#                        else random); letters and digits only
#
# Ports, from FLEET_PORT_BASE (B): NATS clients B..B+2, routes B+3..B+5,
# monitoring B+6..B+8, MinIO S3 API B+9, MinIO console B+10, and the
# services' --metrics-addr (/metrics, /healthz, /readyz): coordinator B+11,
# reader B+12, compressor-N B+12+N, and B+13+COMPRESSORS for the one more
# compressor the summary shows how to start. $FLEET_DIR/prometheus.yml
# scrapes them all, with the alert rules of configs/prometheus-alerts.yml.
set -euo pipefail

case "${1:-}" in
"") ;;
-h | --help)
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//p}' "$0"
  exit 0
  ;;
*)
  echo "fleet-up: no arguments expected (settings come from the environment; see -h)" >&2
  exit 2
  ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FLEET_DIR="${FLEET_DIR:-.fleet}"
COMPRESSORS="${COMPRESSORS:-2}"
COMPRESSOR_WORKERS="${COMPRESSOR_WORKERS:-}"
READER_HOST="${READER_HOST:-local}"
FLEET_TIMEOUT="${FLEET_TIMEOUT:-60}"
FLEET_LOG_LEVEL="${FLEET_LOG_LEVEL:-info}"

die() {
  echo "fleet-up: $*" >&2
  exit 1
}

[[ "$COMPRESSORS" =~ ^[0-9]+$ ]] || die "COMPRESSORS=$COMPRESSORS: want a number"
[[ -z "$COMPRESSOR_WORKERS" || "$COMPRESSOR_WORKERS" =~ ^[0-9]+$ ]] || die "COMPRESSOR_WORKERS=$COMPRESSOR_WORKERS: want a number"
[[ "$READER_HOST" =~ ^[A-Za-z0-9_-]{1,128}$ ]] || die "READER_HOST=$READER_HOST: use letters, digits, - and _"
[[ "$FLEET_TIMEOUT" =~ ^[0-9]+$ ]] || die "FLEET_TIMEOUT=$FLEET_TIMEOUT: want seconds"

# Everything the fleet writes (MinIO's objects, NATS's streams, logs,
# secrets) is for this user only: the backups must not be readable by any
# local user. The services inherit the umask; the directory's mode also
# covers what an earlier run left.
umask 077
mkdir -p "$FLEET_DIR"
chmod 700 "$FLEET_DIR"
FLEET_DIR="$(cd "$FLEET_DIR" && pwd)"
pids="$FLEET_DIR/pids"
logs="$FLEET_DIR/logs"
envfile="$FLEET_DIR/env"

# running PID: the process is alive and not a zombie.
running() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)"
  [ "$state" != Z ]
}

# A fleet already running here must be stopped first: two would share the
# data directories.
if [ -d "$pids" ]; then
  for f in "$pids"/*.pid; do
    [ -e "$f" ] || continue
    if running "$(cat "$f")"; then
      die "a fleet is already running in $FLEET_DIR ($(basename "$f" .pid) is pid $(cat "$f")); stop it with FLEET_DIR=$FLEET_DIR scripts/fleet-down.sh"
    fi
  done
fi
# The previous run's logs stay in logs.prev; readiness is read from new logs.
rm -rf "$pids" "$logs.prev"
if [ -d "$logs" ]; then
  mv "$logs" "$logs.prev"
fi
mkdir -p "$pids" "$logs" "$FLEET_DIR/nats1" "$FLEET_DIR/nats2" "$FLEET_DIR/nats3" "$FLEET_DIR/minio" \
  "$FLEET_DIR/keys/coordinator" "$FLEET_DIR/keys/worker"
# What an earlier run (before the umask above) made readable is closed too.
chmod -R go-rwx "$FLEET_DIR"

# On any failure, stop whatever was started; the logs stay for reading.
started=0
cleanup_on_error() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ "$started" -eq 1 ]; then
    echo "fleet-up: failed; stopping what was started (logs in $logs)" >&2
    FLEET_DIR="$FLEET_DIR" FLEET_STOP_TIMEOUT=10 bash "$root/scripts/fleet-down.sh" >&2 || true
  fi
  exit "$rc"
}
trap cleanup_on_error EXIT

# prev NAME prints NAME's value in the previous run's env file, if any.
prev() {
  [ -f "$envfile" ] || return 0
  sed -n "s/^export $1='\\(.*\\)'\$/\\1/p; s/^$1='\\(.*\\)'\$/\\1/p" "$envfile" | tail -n 1
}

# token N prints a random token of 2N hex digits after a letter, safe in a
# URL, a shell word and a NATS config token.
token() {
  printf 'k%s' "$(od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n')"
}

port_free() {
  ! (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The block of ports the fleet uses (see the header).
block_size=$((14 + COMPRESSORS))
block_free() {
  local p
  for ((p = $1; p < $1 + block_size; p++)); do
    port_free "$p" || return 1
  done
}

# --- credentials and ports -----------------------------------------------
minio_user="${MINIO_ROOT_USER:-$(prev AWS_ACCESS_KEY_ID)}"
minio_user="${minio_user:-bulk$(token 4)}"
minio_password="${MINIO_ROOT_PASSWORD:-$(prev AWS_SECRET_ACCESS_KEY)}"
minio_password="${minio_password:-$(token 16)}"
nats_user="${BULK_NATS_USER:-$(prev BULK_NATS_USER)}"
nats_user="${nats_user:-bulk}"
nats_password="${BULK_NATS_PASSWORD:-$(prev BULK_NATS_PASSWORD)}"
nats_password="${nats_password:-$(token 16)}"
for v in "$minio_user" "$minio_password" "$nats_user" "$nats_password"; do
  [[ "$v" =~ ^[A-Za-z][A-Za-z0-9]*$ ]] || die "credentials must be a letter followed by letters and digits"
done
[ "${#minio_password}" -ge 8 ] || die "MINIO_ROOT_PASSWORD: MinIO wants at least 8 characters"

base="${FLEET_PORT_BASE:-}"
if [ -n "$base" ]; then
  [[ "$base" =~ ^[0-9]+$ ]] || die "FLEET_PORT_BASE=$base: want a port number"
  block_free "$base" || die "a port in $base..$((base + block_size - 1)) is in use (FLEET_PORT_BASE)"
else
  base="$(prev FLEET_PORT_BASE)"
  if [ -z "$base" ] || ! block_free "$base"; then
    base=""
    for _ in $(seq 1 50); do
      b=$((20000 + (RANDOM % 1200) * 10))
      if block_free "$b"; then
        base="$b"
        break
      fi
    done
    [ -n "$base" ] || die "no free block of $block_size ports found from 20000; set FLEET_PORT_BASE"
  fi
fi
client_port() { echo $((base + $1 - 1)); }  # node 1..3
route_port() { echo $((base + 2 + $1)); }
http_port() { echo $((base + 5 + $1)); }
minio_port=$((base + 9))
console_port=$((base + 10))
coordinator_metrics="127.0.0.1:$((base + 11))"
reader_metrics="127.0.0.1:$((base + 12))"
compressor_metrics() { echo "127.0.0.1:$((base + 12 + $1))"; } # compressor-N
nats_urls="nats://127.0.0.1:$(client_port 1),nats://127.0.0.1:$(client_port 2),nats://127.0.0.1:$(client_port 3)"
s3_url="http://127.0.0.1:$minio_port"

cat >"$envfile" <<EOF
# bulkbackup local fleet ($FLEET_DIR), written by scripts/fleet-up.sh.
# Use it with:  source $envfile
# (These would take precedence over, or spoil, the settings below.)
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL_S3 BULK_S3_ENDPOINT BULK_NATS_CREDS
export BULK_NATS='$nats_urls'
export BULK_NATS_USER='$nats_user'
export BULK_NATS_PASSWORD='$nats_password'
export AWS_ENDPOINT_URL='$s3_url'
export AWS_ACCESS_KEY_ID='$minio_user'
export AWS_SECRET_ACCESS_KEY='$minio_password'
export AWS_REGION='us-east-1'
export BULK_PASSWORD_FILE='$FLEET_DIR/password'
export BULK_KNOWN_HOSTS='$FLEET_DIR/known_hosts'
FLEET_PORT_BASE='$base'
EOF
chmod 600 "$envfile"
# The password of the repositories bulkctl init makes from this shell.
[ -s "$FLEET_DIR/password" ] || { token 24 >"$FLEET_DIR/password" && chmod 600 "$FLEET_DIR/password"; }

# --- binaries --------------------------------------------------------------
if [ -n "${FLEET_BIN:-}" ]; then
  bin="$(cd "$FLEET_BIN" && pwd)"
else
  bin="$FLEET_DIR/bin"
  echo "fleet-up: building the binaries into $bin" >&2
  # Stamped with the version, as the Makefile does (--version,
  # bulk_build_info, the coordinator's micro service).
  version="$(cd "$root" && git describe --tags --always --dirty 2>/dev/null || true)"
  (cd "$root" && go build -ldflags "-X github.com/bulkbackup/bulkbackup/pkg/version.Version=$version" \
    -o "$bin/" ./cmd/... ./scripts/mkvolume)
fi
for b in coordinator reader compressor bulkctl; do
  [ -x "$bin/$b" ] || die "$bin/$b: not found (FLEET_BIN)"
done
nats_bin="$(bash "$root/scripts/install-nats.sh")"
minio_bin="${BULK_MINIO_BIN:-}"
[ -n "$minio_bin" ] || minio_bin="$(bash "$root/scripts/install-minio.sh")"
[ -x "$minio_bin" ] || die "$minio_bin: not executable (BULK_MINIO_BIN)"

# --- processes ------------------------------------------------------------
# start NAME VAR=VALUE... -- COMMAND...: run COMMAND in the background with
# the variables in its environment only (secrets never go on a command
# line), its output in logs/NAME.log and its PID in pids/NAME.pid. The
# caller's own AWS_*, BULK_*, MINIO_* and NATS_* variables (a real AWS
# profile, a BULK_CONFIG) are not passed on: the fleet is configured here.
start() {
  local name="$1" vars=()
  shift
  while [ "$1" != "--" ]; do
    vars+=("$1")
    shift
  done
  shift
  (
    while read -r v; do
      case "$v" in
      AWS_* | BULK_* | MINIO_* | NATS_*) unset "$v" ;;
      esac
    done < <(compgen -e)
    for v in ${vars[@]+"${vars[@]}"}; do
      export "${v?}"
    done
    exec "$@"
  ) </dev/null >>"$logs/$name.log" 2>&1 &
  echo "$!" >"$pids/$name.pid"
  started=1
}

alive() {
  running "$(cat "$pids/$1.pid")"
}

http_ok() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null
    return
  fi
  # No curl: plain HTTP/1.0 over bash's /dev/tcp, in a subshell so a
  # refused connection fails only the check.
  (
    hostport="${1#http://}"
    path="/${hostport#*/}"
    hostport="${hostport%%/*}"
    exec 3<>"/dev/tcp/${hostport%:*}/${hostport#*:}"
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
    read -r -t 2 _ status _ <&3
    [ "$status" = 200 ]
  ) 2>/dev/null
}

# wait_for WHAT NAME... -- CHECK...: poll CHECK until it succeeds, failing
# when one of the named processes exits or FLEET_TIMEOUT passes.
wait_for() {
  local what="$1" names=() deadline=$((SECONDS + FLEET_TIMEOUT)) n
  shift
  while [ "$1" != "--" ]; do
    names+=("$1")
    shift
  done
  shift
  until "$@"; do
    for n in ${names[@]+"${names[@]}"}; do
      if ! alive "$n"; then
        echo "fleet-up: $n exited; the end of $logs/$n.log:" >&2
        tail -n 20 "$logs/$n.log" >&2
        exit 1
      fi
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "fleet-up: $what not ready after ${FLEET_TIMEOUT}s; logs in $logs" >&2
      exit 1
    fi
    sleep 0.2
  done
}

logged() { # logged NAME MESSAGE: the service logged MESSAGE (JSON logs)
  grep -q "\"msg\":\"$2\"" "$logs/$1.log" 2>/dev/null
}

nats_ready() {
  local i
  for i in 1 2 3; do
    http_ok "http://127.0.0.1:$(http_port "$i")/healthz" || return 1
  done
}

services_ready() {
  logged reader "reader serving" && ready reader "$reader_metrics" || return 1
  local i
  for ((i = 1; i <= COMPRESSORS; i++)); do
    logged "compressor-$i" "compressor serving" && ready "compressor-$i" "$(compressor_metrics "$i")" || return 1
  done
}

echo "fleet-up: starting 3 NATS nodes on 127.0.0.1:$(client_port 1)-$(client_port 3), MinIO on $s3_url" >&2
routes=()
for i in 1 2 3; do
  routes+=("NATS_ROUTE_$i=nats-route://127.0.0.1:$(route_port "$i")")
done
for i in 1 2 3; do
  start "nats$i" \
    "NATS_SERVER_NAME=nats$i" \
    "NATS_LISTEN=127.0.0.1:$(client_port "$i")" \
    "NATS_HTTP=127.0.0.1:$(http_port "$i")" \
    "NATS_CLUSTER_LISTEN=127.0.0.1:$(route_port "$i")" \
    "NATS_STORE_DIR=$FLEET_DIR/nats$i" \
    "${routes[@]}" \
    "BULK_NATS_USER=$nats_user" "BULK_NATS_PASSWORD=$nats_password" \
    -- "$nats_bin" -c "$root/configs/nats-server.conf"
done
start minio \
  "MINIO_ROOT_USER=$minio_user" "MINIO_ROOT_PASSWORD=$minio_password" \
  MINIO_BROWSER=off MINIO_UPDATE=off \
  -- "$minio_bin" server "$FLEET_DIR/minio" --address "127.0.0.1:$minio_port" --console-address "127.0.0.1:$console_port"
wait_for "the NATS cluster" nats1 nats2 nats3 -- nats_ready
wait_for "MinIO" minio -- http_ok "$s3_url/minio/health/live"

# The bulkbackup services get the fleet's settings and secrets from the
# environment, as in compose.yaml.
svc_env=(
  "BULK_NATS_USER=$nats_user" "BULK_NATS_PASSWORD=$nats_password"
  "AWS_ENDPOINT_URL=$s3_url" "AWS_ACCESS_KEY_ID=$minio_user"
  "AWS_SECRET_ACCESS_KEY=$minio_password" "AWS_REGION=us-east-1"
)
log_flags=(--log-format json --log-level "$FLEET_LOG_LEVEL")
# ready NAME ADDR: the service's /readyz answers 200.
ready() { http_ok "http://$2/readyz"; }
# The coordinator exits when it cannot set up its streams. Right after a
# restart of the cluster the streams' leaders may still be being elected, and
# the coordinator's requests time out: start it again, as compose's restart
# policy would, a few times.
start_coordinator() {
  start coordinator "${svc_env[@]}" "BULK_WRITE_KEY_FILE=$FLEET_DIR/keys/coordinator" -- \
    "$bin/coordinator" --nats "$nats_urls" --replicas 3 --metrics-addr "$coordinator_metrics" "${log_flags[@]}"
}
coordinator_ready() {
  # /readyz: its streams, buckets and API are set up.
  ready coordinator "$coordinator_metrics" && return 0
  alive coordinator && return 1
  if [ "$coordinator_starts" -ge 5 ]; then
    echo "fleet-up: the coordinator exited $coordinator_starts times; the end of $logs/coordinator.log:" >&2
    tail -n 20 "$logs/coordinator.log" >&2
    exit 1
  fi
  echo "fleet-up: the coordinator exited ($(tail -n 1 "$logs/coordinator.log")); starting it again" >&2
  coordinator_starts=$((coordinator_starts + 1))
  start_coordinator
  return 1
}
echo "fleet-up: starting the coordinator" >&2
coordinator_starts=1
start_coordinator
wait_for "the coordinator" -- coordinator_ready

echo "fleet-up: starting reader $READER_HOST and $COMPRESSORS compressor(s)" >&2
start reader "${svc_env[@]}" "BULK_WRITE_KEY_FILE=$FLEET_DIR/keys/worker" "BULK_HOST_IDENTITY_FILE=$FLEET_DIR/host-identity" -- \
  "$bin/reader" --nats "$nats_urls" --host "$READER_HOST" --metrics-addr "$reader_metrics" "${log_flags[@]}"
workers=()
[ -z "$COMPRESSOR_WORKERS" ] || workers=(--workers "$COMPRESSOR_WORKERS")
names=(reader)
for ((i = 1; i <= COMPRESSORS; i++)); do
  start "compressor-$i" "${svc_env[@]}" "BULK_WRITE_KEY_FILE=$FLEET_DIR/keys/worker" -- \
    "$bin/compressor" --nats "$nats_urls" --name "compressor-$i" --metrics-addr "$(compressor_metrics "$i")" \
    ${workers[@]+"${workers[@]}"} "${log_flags[@]}"
  names+=("compressor-$i")
done
wait_for "the reader and compressors" "${names[@]}" coordinator -- services_ready

more="compressor-$((COMPRESSORS + 1))"
more_metrics="$(compressor_metrics $((COMPRESSORS + 1)))"
# A Prometheus configuration that scrapes the fleet, with the alert rules.
compressor_targets=""
compressor_urls=""
for ((i = 1; i <= COMPRESSORS + 1; i++)); do
  compressor_targets="$compressor_targets${compressor_targets:+, }'$(compressor_metrics "$i")'"
  if [ "$i" -le "$COMPRESSORS" ]; then
    compressor_urls="$compressor_urls, compressor-$i http://$(compressor_metrics "$i")"
  fi
done
cat >"$FLEET_DIR/prometheus.yml" <<EOF
# Written by scripts/fleet-up.sh: scrapes the fleet in $FLEET_DIR.
# prometheus --config.file=$FLEET_DIR/prometheus.yml
global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files:
  - $root/configs/prometheus-alerts.yml
scrape_configs:
  - job_name: bulk-coordinator
    static_configs: [{targets: ['$coordinator_metrics']}]
  - job_name: bulk-reader
    static_configs: [{targets: ['$reader_metrics']}]
  - job_name: bulk-compressor
    static_configs: [{targets: [$compressor_targets]}]
EOF
sample=""
if [ -x "$bin/mkvolume" ]; then
  sample="$bin/mkvolume -size 256MiB -o $FLEET_DIR/sample.img    # a sample volume
  "
fi
cat <<EOF
bulkbackup fleet up in $FLEET_DIR:
  NATS cluster  $nats_urls (user $nats_user)
  MinIO (S3)    $s3_url
  coordinator, reader for host "$READER_HOST", $COMPRESSORS compressor(s)
  logs in $logs/, PIDs in $pids/
  /metrics, /healthz, /readyz: coordinator http://$coordinator_metrics, reader http://$reader_metrics$compressor_urls
  Prometheus configuration (scrapes them, with configs/prometheus-alerts.yml): $FLEET_DIR/prometheus.yml

$envfile exports BULK_NATS, BULK_NATS_USER, BULK_NATS_PASSWORD,
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION.
Use the fleet from a shell (sources and targets are HOST:PATH, absolute paths
on this machine, where the reader for host "$READER_HOST" runs):

  source $envfile
  $bin/bulkctl init -r s3://backups/demo             # encrypted, with the password in \$BULK_PASSWORD_FILE
  $bin/bulkctl key write-key -r s3://backups/demo --for coordinator -o $FLEET_DIR/keys/coordinator/demo.key
  $bin/bulkctl key write-key -r s3://backups/demo --for worker -o $FLEET_DIR/keys/worker/demo.key
  $sample$bin/bulkctl backup $READER_HOST:$FLEET_DIR/sample.img -r s3://backups/demo
  $bin/bulkctl restore latest $READER_HOST:$FLEET_DIR/restored.img -r s3://backups/demo
  $bin/bulkctl snapshots -r s3://backups/demo

One more compressor, which fleet-down.sh stops too:

  (umask 077; (source $envfile && BULK_WRITE_KEY_FILE=$FLEET_DIR/keys/worker exec $bin/compressor --nats "\$BULK_NATS" --name $more --metrics-addr $more_metrics --log-format json </dev/null >>$logs/$more.log 2>&1) & echo \$! >$pids/$more.pid)

Stop the fleet: FLEET_DIR=$FLEET_DIR scripts/fleet-down.sh [--clean]
EOF
