#!/usr/bin/env bash
# fleet-down.sh: stop the local fleet started by scripts/fleet-up.sh.
#
#   scripts/fleet-down.sh            # stop; keep $FLEET_DIR (logs, data, env)
#   scripts/fleet-down.sh --clean    # stop, then remove $FLEET_DIR
#
# Processes are stopped by their PID files, in tiers: compressors and the
# reader first (SIGTERM makes them finish or hand back their in-flight work),
# then the coordinator, then MinIO and the NATS nodes. Each tier gets SIGTERM
# and FLEET_STOP_TIMEOUT seconds (default 40: the services drain for up to
# 30 s) before SIGKILL. A PID whose process is not the program the file names
# (the PID was reused) is left alone.
#
# Environment: FLEET_DIR (default .fleet), FLEET_STOP_TIMEOUT (default 40).
set -euo pipefail

# Stopping must finish even when nobody reads the messages any more (a
# closed pipe, as with `fleet-down.sh | head`).
trap '' PIPE
say() {
  echo "fleet-down: $*" >&2 2>/dev/null || true
}

FLEET_DIR="${FLEET_DIR:-.fleet}"
FLEET_STOP_TIMEOUT="${FLEET_STOP_TIMEOUT:-40}"
clean=0
for arg in "$@"; do
  case "$arg" in
  --clean) clean=1 ;;
  -h | --help)
    sed -n '2,14s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
  *)
    say "unknown argument $arg (want --clean)"
    exit 2
    ;;
  esac
done
[[ "$FLEET_STOP_TIMEOUT" =~ ^[0-9]+$ ]] || {
  say "FLEET_STOP_TIMEOUT=$FLEET_STOP_TIMEOUT: want seconds"
  exit 2
}

if [ ! -d "$FLEET_DIR" ]; then
  say "no fleet directory $FLEET_DIR"
  exit 0
fi
pids="$FLEET_DIR/pids"

# program NAME prints the program a PID file's name stands for.
program() {
  case "$1" in
  nats*) echo nats-server ;;
  minio) echo minio ;;
  coordinator) echo coordinator ;;
  reader*) echo reader ;;
  compressor*) echo compressor ;;
  *) echo "" ;;
  esac
}

# running PID: the process is alive and not a zombie (a zombie waits for a
# parent that may never reap it, as in a container whose init does not).
running() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)"
  [ "$state" != Z ]
}

# ours PID NAME: the process PID is alive and runs NAME's program.
ours() {
  local comm
  running "$1" || return 1
  comm="$(cat "/proc/$1/comm" 2>/dev/null || ps -o comm= -p "$1" 2>/dev/null || true)"
  [ -n "$comm" ] && [ "$comm" = "$(program "$2")" ]
}

# wait_gone SECONDS ENTRY...: wait until the PID:NAME entries have exited;
# print the ones still running when SECONDS pass.
wait_gone() {
  local deadline=$((SECONDS + $1)) entry still
  shift
  while :; do
    still=()
    for entry in "$@"; do
      if running "${entry%%:*}"; then
        still+=("$entry")
      fi
    done
    if [ "${#still[@]}" -eq 0 ] || [ "$SECONDS" -ge "$deadline" ]; then
      break
    fi
    sleep 0.2
  done
  for entry in ${still[@]+"${still[@]}"}; do
    echo "$entry"
  done
}

# stop_tier PATTERN...: SIGTERM the tier's processes, wait, SIGKILL the rest.
stop_tier() {
  local pattern f name pid entry live=() stuck=()
  for pattern in "$@"; do
    for f in "$pids"/$pattern.pid; do
      [ -e "$f" ] || continue
      name="$(basename "$f" .pid)"
      pid="$(cat "$f")"
      if [[ "$pid" =~ ^[0-9]+$ ]] && ours "$pid" "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        live+=("$pid:$name")
      fi
      rm -f "$f"
    done
  done
  [ "${#live[@]}" -gt 0 ] || return 0
  mapfile -t stuck < <(wait_gone "$FLEET_STOP_TIMEOUT" "${live[@]}")
  for entry in ${stuck[@]+"${stuck[@]}"}; do
    say "${entry#*:} (pid ${entry%%:*}) still running after ${FLEET_STOP_TIMEOUT}s; SIGKILL"
    kill -KILL "${entry%%:*}" 2>/dev/null || true
  done
  if [ "${#stuck[@]}" -gt 0 ]; then
    mapfile -t stuck < <(wait_gone 5 "${stuck[@]}")
    for entry in ${stuck[@]+"${stuck[@]}"}; do
      say "${entry#*:} (pid ${entry%%:*}) survived SIGKILL"
    done
  fi
  for entry in "${live[@]}"; do
    say "stopped ${entry#*:}"
  done
}

if [ -d "$pids" ]; then
  stop_tier 'compressor*' 'reader*'
  stop_tier coordinator
  stop_tier minio 'nats*'
fi

if [ "$clean" -eq 1 ]; then
  # Remove only what looks like a fleet directory.
  if [ -f "$FLEET_DIR/env" ] && [ -d "$FLEET_DIR/logs" ]; then
    rm -rf "$FLEET_DIR"
    say "removed $FLEET_DIR"
  else
    say "$FLEET_DIR does not look like a fleet directory (no env, logs); not removed"
    exit 1
  fi
fi
