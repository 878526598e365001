# shellcheck shell=bash
# fleet.sh: the process fleet of scripts/bench.sh. Sourced, not run.
#
# The same topology as scripts/fleet-up.sh, made lighter so that what is
# measured is the services, not a cluster: one coordinator embedding its
# NATS server (its default; one process is the whole control plane), one
# reader, N compressors, each a separate process on this machine, and a
# directory repository (as in the embedded-fleet rows, so the two compare).
# fleet-up.sh's 3 replicated NATS nodes and MinIO would add replication and
# S3 to the figures.
#
# Globals: BIN (the binaries), BENCH_DIR, LOGS; FLEET_READER_ARGS and
# FLEET_COMPRESSOR_ARGS, the next fleet's extra flags. Sets FLEET_URL and
# FLEET_PIDS / FLEET_NAMES while a fleet is up, FLEET_DIR (its logs) until
# the next one.

FLEET_PIDS=()
FLEET_NAMES=()
FLEET_URL=
FLEET_HOST=bench # the reader's host name: sources are bench:/path
FLEET_DIR=
# Extra flags of the reader and of every compressor that fleet_up starts,
# e.g. FLEET_READER_ARGS=(--compress 0) (all chunks to the compressor
# processes) or FLEET_COMPRESSOR_ARGS=(--workers 1 --rate-limit 16MiB);
# empty: each binary's defaults (the reader compresses with one worker per
# CPU and holds the overflow for the compressors).
FLEET_READER_ARGS=()
FLEET_COMPRESSOR_ARGS=()
# Environment of the coordinator and of the reader and compressors that
# fleet_up starts, e.g. FLEET_WORKER_ENV=(BULK_WRITE_KEY_FILE=worker.key)
# for an encrypted repository; empty: this script's.
FLEET_COORDINATOR_ENV=()
FLEET_WORKER_ENV=()

# free_port prints a TCP port on 127.0.0.1 nobody listens on.
free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 12000))
		if ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			printf '%s\n' "$p"
			return 0
		fi
	done
	return 1
}

# fleet_start NAME [VAR=VALUE...] -- CMD...: run CMD in the background with
# the variables in its environment, output to FLEET_DIR/NAME.log.
fleet_start() {
	local name=$1 vars=()
	shift
	while [[ $1 != -- ]]; do
		vars+=("$1")
		shift
	done
	shift
	env ${vars[@]+"${vars[@]}"} "$@" </dev/null >>"$FLEET_DIR/$name.log" 2>&1 &
	FLEET_PIDS+=("$!")
	FLEET_NAMES+=("$name")
}

# fleet_wait_logged NAME MESSAGE: wait until NAME's JSON log has MESSAGE;
# fail when it exits first or after 60 s.
fleet_wait_logged() {
	local name=$1 msg=$2 i pid deadline=$((SECONDS + 60))
	until grep -q "\"msg\":\"$msg\"" "$FLEET_DIR/$name.log" 2>/dev/null; do
		for i in "${!FLEET_NAMES[@]}"; do
			[[ ${FLEET_NAMES[$i]} == "$name" ]] && pid=${FLEET_PIDS[$i]}
		done
		kill -0 "$pid" 2>/dev/null || die "fleet: $name exited; see $FLEET_DIR/$name.log"
		((SECONDS < deadline)) || die "fleet: $name not serving after 60 s; see $FLEET_DIR/$name.log"
		sleep 0.1
	done
}

# fleet_up N [LABEL]: start a coordinator (embedded NATS), a reader with
# FLEET_READER_ARGS and N compressors with FLEET_COMPRESSOR_ARGS. Logs in
# logs/fleet-LABEL/ (default: N).
fleet_up() {
	local n=$1 label=${2:-$1} port i
	((${#FLEET_PIDS[@]} == 0)) || die "fleet_up: a fleet is already up"
	FLEET_DIR=$LOGS/fleet-$label
	rm -rf "$FLEET_DIR"
	mkdir -p "$FLEET_DIR/data"
	port=$(free_port) || die "no free port for NATS"
	FLEET_URL=nats://127.0.0.1:$port
	log "process fleet $label: coordinator (NATS on :$port), reader ${FLEET_READER_ARGS[*]-}, $n compressor(s) ${FLEET_COMPRESSOR_ARGS[*]-}"
	fleet_start coordinator -- env ${FLEET_COORDINATOR_ENV[@]+"${FLEET_COORDINATOR_ENV[@]}"} \
		"$BIN/coordinator" --listen "127.0.0.1:$port" --data "$FLEET_DIR/data" --log-format json --log-level info
	fleet_wait_logged coordinator "coordinator serving"
	fleet_start reader -- env ${FLEET_WORKER_ENV[@]+"${FLEET_WORKER_ENV[@]}"} \
		"$BIN/reader" --nats "$FLEET_URL" --host "$FLEET_HOST" --log-format json \
		${FLEET_READER_ARGS[@]+"${FLEET_READER_ARGS[@]}"}
	for ((i = 1; i <= n; i++)); do
		fleet_start "compressor-$i" -- env ${FLEET_WORKER_ENV[@]+"${FLEET_WORKER_ENV[@]}"} \
			"$BIN/compressor" --nats "$FLEET_URL" --name "compressor-$i" --log-format json \
			${FLEET_COMPRESSOR_ARGS[@]+"${FLEET_COMPRESSOR_ARGS[@]}"}
	done
	fleet_wait_logged reader "reader serving"
	for ((i = 1; i <= n; i++)); do
		fleet_wait_logged "compressor-$i" "compressor serving"
	done
}

# fleet_down: SIGTERM every fleet process (they drain), SIGKILL what is left
# after 40 s. Only the PIDs this script started are touched.
fleet_down() {
	local pid deadline=$((SECONDS + 40))
	((${#FLEET_PIDS[@]} > 0)) || return 0
	for pid in "${FLEET_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${FLEET_PIDS[@]}"; do
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	FLEET_PIDS=()
	FLEET_NAMES=()
}

# proc_cpu_ticks PID: user + system clock ticks process PID has used so far
# (0 once it is gone).
proc_cpu_ticks() {
	local stat f
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || {
		printf '0\n'
		return
	}
	stat=${stat##*) } # fields after the command name, from field 3 (state)
	read -r -a f <<<"$stat"
	printf '%s\n' "$((f[11] + f[12]))" # utime, stime: fields 14 and 15
}

# fleet_cpu_ticks: user + system clock ticks the fleet's processes have
# used so far (0 with no fleet); measure adds the difference to its CPU.
fleet_cpu_ticks() {
	local pid sum=0
	for pid in ${FLEET_PIDS[@]+"${FLEET_PIDS[@]}"}; do
		sum=$((sum + $(proc_cpu_ticks "$pid")))
	done
	printf '%s\n' "$sum"
}

# fleet_cpu_json: each fleet process's clock ticks so far, as a JSON object
# {"coordinator": 120, "reader": 310, "compressor-1": 900, ...} ({} with no
# fleet); measure keeps each process's difference (M_CPU_PROCS).
fleet_cpu_json() {
	local i args=()
	for i in ${FLEET_PIDS[@]+"${!FLEET_PIDS[@]}"}; do
		args+=("${FLEET_NAMES[$i]}" "$(proc_cpu_ticks "${FLEET_PIDS[$i]}")")
	done
	names_json ${args[@]+"${args[@]}"}
}

# fleet_rss_json: each fleet process's peak RSS so far in MiB (VmHWM), as a
# JSON object {"coordinator": 80, "reader": 60, "compressor-1": 150, ...}.
fleet_rss_json() {
	local i kib args=()
	for i in ${FLEET_PIDS[@]+"${!FLEET_PIDS[@]}"}; do
		kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/${FLEET_PIDS[$i]}/status" 2>/dev/null || echo 0)
		args+=("${FLEET_NAMES[$i]}" "$((kib / 1024))")
	done
	names_json ${args[@]+"${args[@]}"}
}

# names_json NAME NUMBER...: the pairs as one JSON object ({} for none).
names_json() {
	(($# > 0)) || {
		printf '{}\n'
		return
	}
	printf '%s\n' "$@" | jq -Rn '[inputs] | [range(0; length; 2) as $i | {(.[$i]): (.[$i + 1] | tonumber)}] | add // {}'
}

# fleet_reader_stopped: the last fleet's reader's counts from its log line
# at stop, as JSON {"chunks": N, "stored_here": M} (chunks it read and sent
# on, and of those the ones its own workers compressed and stored), summed
# over every backup that fleet ran; {} when the line is missing. Call it
# after fleet_down.
fleet_reader_stopped() {
	grep -h '"msg":"reader stopped"' "$FLEET_DIR/reader.log" 2>/dev/null |
		jq -cs 'last // {} | {chunks, stored_here} | with_entries(select(.value != null))'
}
