#!/usr/bin/env bash
# alternate.sh: two builds against each other, alternating, on one volume.
#
#   bash scripts/bench/alternate.sh BEFORE_BIN AFTER_BIN VOL [ROUNDS]
#
# BEFORE_BIN and AFTER_BIN are directories holding bulkctl, coordinator,
# reader and compressor (e.g. `go build -o /tmp/before/ ./cmd/...` on the
# old commit). Each round backs VOL up with each build through the embedded
# fleet (bulkctl without --nats), then through a process fleet on this
# machine: a coordinator embedding its NATS server, a reader and COMPRESSORS
# compressors with GOMAXPROCS=1 each. Readers get BEFORE_READER_ARGS or
# AFTER_READER_ARGS (e.g. AFTER_READER_ARGS="--compress 0"). One line per
# backup: wall time, MB/s, CPU-s of every process (from /proc) and CPU-s per
# GB; compare lines of the same round, the machine being shared and noisy.
# Repositories are directories under WORK (default /dev/shm/bulk-alternate).
set -euo pipefail
(($# >= 3)) || { sed -n 2,16p "$0" >&2; exit 2; }
BEFORE=$1 AFTER=$2 VOL=$3 ROUNDS=${4:-3}
COMPRESSORS=${COMPRESSORS:-2}
WORK=${WORK:-/dev/shm/bulk-alternate}
size=$(stat -c %s "$VOL")
hz=$(getconf CLK_TCK)

cpu_of() { awk -v hz="$hz" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

report() { # label wall cpu [detail]
	awk -v l="$1" -v w="$2" -v c="$3" -v sz="$size" -v d="${4:-}" \
		'BEGIN { printf "%-24s wall %6.2fs  MB/s %6.0f  CPU-s %6.2f  CPU-s/GB %5.2f%s\n", l, w, sz / 1e6 / w, c, c / (sz / 1e9), d }'
}

embedded() { # label bin
	rm -rf "$WORK/repo"
	local t0 t1
	t0=$(date +%s.%N)
	/usr/bin/time -f "%U %S" -o "$WORK/time" "$2/bulkctl" backup "$VOL" -r "$WORK/repo" --json >/dev/null
	t1=$(date +%s.%N)
	read -r u s <"$WORK/time"
	report "$1" "$(echo "$t1 - $t0" | bc)" "$(echo "$u + $s" | bc)"
}

wait_log() { until grep -q "$2" "$1" 2>/dev/null; do sleep 0.05; done; } # polling a log

fleet() { # label bin reader-args
	local bin=$2 port pids=() i t0 t1 total=0 detail=""
	rm -rf "$WORK/fleet" "$WORK/repo"
	mkdir -p "$WORK/fleet"
	port=$((20000 + RANDOM % 10000))
	"$bin/coordinator" --listen "127.0.0.1:$port" --data "$WORK/fleet/data" --log-format json >"$WORK/fleet/coordinator.log" 2>&1 &
	pids+=($!)
	wait_log "$WORK/fleet/coordinator.log" "coordinator serving"
	# shellcheck disable=SC2086 # the reader's arguments are words
	"$bin/reader" --nats "nats://127.0.0.1:$port" --host bench --log-format json $3 >"$WORK/fleet/reader.log" 2>&1 &
	pids+=($!)
	for ((i = 1; i <= COMPRESSORS; i++)); do
		GOMAXPROCS=1 "$bin/compressor" --nats "nats://127.0.0.1:$port" --log-format json >"$WORK/fleet/compressor-$i.log" 2>&1 &
		pids+=($!)
	done
	wait_log "$WORK/fleet/reader.log" "reader serving"
	for ((i = 1; i <= COMPRESSORS; i++)); do wait_log "$WORK/fleet/compressor-$i.log" "compressor serving"; done
	declare -A before
	for i in "${pids[@]}"; do before[$i]=$(cpu_of "$i"); done
	t0=$(date +%s.%N)
	"$bin/bulkctl" backup "bench:$VOL" -r "$WORK/repo" --json --nats "nats://127.0.0.1:$port" >/dev/null
	t1=$(date +%s.%N)
	for i in "${pids[@]}"; do
		d=$(echo "$(cpu_of "$i") - ${before[$i]}" | bc)
		total=$(echo "$total + $d" | bc)
		detail="$detail $(printf %.2f "$d")"
	done
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	report "$1" "$(echo "$t1 - $t0" | bc)" "$total" "  [coordinator reader compressors:$detail]"
}

mkdir -p "$WORK"
for ((round = 1; round <= ROUNDS; round++)); do
	embedded "before embedded" "$BEFORE"
	embedded "after embedded" "$AFTER"
	fleet "before fleet" "$BEFORE" "${BEFORE_READER_ARGS:-}"
	fleet "after fleet" "$AFTER" "${AFTER_READER_ARGS:-}"
done
rm -rf "$WORK"
