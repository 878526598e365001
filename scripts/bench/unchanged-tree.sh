#!/bin/bash
# Unchanged re-backups of a tree through a process fleet (external
# nats-server, coordinator, reader, compressor, bulkctl --nats): the
# repository's growth per backup, each snapshot's objects, and each
# process's peak RSS (VmHWM). The coordinator is restarted before each
# unchanged backup, so its peak is that backup's alone. With RESTORE=1 the
# last snapshot is then restored through the fleet (coordinator and reader
# started afresh, so their peaks are the restore's) into WORKDIR/restored,
# compared with the tree (diff -r, unless NOCOMPARE=1) and removed. With
# SUMMARY=FILE each step also appends a JSON line to FILE: its name, files,
# wall seconds, files/s, each process's peak RSS in MiB and, for the
# unchanged backups, the repository's growth (bench.sh's treescale section).
#
#   scripts/bench/unchanged-tree.sh TREE [WORKDIR]
#
# BIN names another build's binaries (default bin/); BREAKDOWN=0 skips the
# breakdown of the last snapshot (scripts/manifestcost) at the end.
#
# Needs bin/ (make build), nats-server on PATH or in $(go env GOPATH)/bin,
# jq and /usr/bin/time. docs/benchmarks.md, "Manifests at 100,000 files".
set -euo pipefail
TREE=$(realpath "$1"); W=${2:-.bench/unchanged-tree}; BIN=$(realpath "${BIN:-bin}")
NATS_BIN=$(command -v nats-server || echo "$(go env GOPATH)/bin/nats-server")
PORT=${PORT:-14222}; URL=nats://127.0.0.1:$PORT
rm -rf "$W"; mkdir -p "$W/logs"; W=$(realpath "$W")
"$NATS_BIN" -js -sd "$W/js" -p "$PORT" -a 127.0.0.1 > "$W/logs/nats.log" 2>&1 & NATS=$!
sleep 1
start_coord() { "$BIN/coordinator" --nats "$URL" --data "$W/coord" --log-format json > "$W/logs/coord-$1.log" 2>&1 & COORD=$!; sleep 1; }
start_coord 1
start_reader() { "$BIN/reader" --nats "$URL" --host bench --log-format json > "$W/logs/reader-$1.log" 2>&1 & READER=$!; }
start_reader 1
"$BIN/compressor" --nats "$URL" --log-format json > "$W/logs/comp.log" 2>&1 & COMP=$!
trap 'kill $COORD $READER $COMP $NATS 2>/dev/null || true' EXIT
sleep 2
hwm() { awk '/VmHWM/{print int($2/1024)}' "/proc/$1/status"; }
size() { du -sb --apparent-size "$W/repo" | cut -f1; }
# summary STEP FILES WALL [GROWTH]: SUMMARY's line for a step.
summary() {
	[[ -n ${SUMMARY:-} ]] || return 0
	jq -cn --arg step "$1" --argjson files "$2" --argjson wall "$3" --argjson growth "${4:-null}" \
		--argjson c "$(hwm $COORD)" --argjson r "$(hwm $READER)" --argjson p "$(hwm $COMP)" --argjson n "$(hwm $NATS)" \
		'{step: $step, files: $files, wall_s: $wall, files_per_s: ($files / $wall | floor), repo_growth_bytes: $growth,
		  rss_mib: {coordinator: $c, reader: $r, compressor: $p, "nats-server": $n}}' >> "$SUMMARY"
}
RUN_WALL=0
run() {
	local n=$1 id start
	start=$(date +%s.%N)
	/usr/bin/time -f "%e s" "$BIN/bulkctl" backup "bench:$TREE" -r "$W/repo" --nats "$URL" --json > "$W/logs/backup-$n.json" 2> "$W/logs/backup-$n.err"
	RUN_WALL=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
	echo "backup $n: $RUN_WALL s wall, $(jq -c --argjson wall "$RUN_WALL" '{files,new_files,unchanged_files,new_bytes,job_seconds:.seconds,files_per_s:(.files/$wall|floor)}' "$W/logs/backup-$n.json")"
	echo "  peak RSS MiB: coordinator $(hwm $COORD), reader $(hwm $READER), compressor $(hwm $COMP), nats-server $(hwm $NATS)"
	id=$(jq -r .snapshot_id "$W/logs/backup-$n.json")
	echo "  snapshots/$id $(stat -c %s "$W/repo/snapshots/$id") bytes, headers/$id $(stat -c %s "$W/repo/headers/$id") bytes"
}
"$BIN/bulkctl" init -r "$W/repo" --plaintext > /dev/null
run 1
summary backup "$(jq .files "$W/logs/backup-1.json")" "$RUN_WALL"
for n in 2 3; do
	before=$(size)
	kill $COORD; wait $COORD || true; start_coord $n
	run $n
	growth=$(( $(size) - before ))
	echo "  repository growth $growth bytes"
	summary "unchanged-$((n - 1))" "$(jq .files "$W/logs/backup-$n.json")" "$RUN_WALL" "$growth"
done
if [[ ${RESTORE:-0} == 1 ]]; then
	kill $COORD $READER; wait $COORD $READER || true; start_coord restore; start_reader restore; sleep 2
	start=$(date +%s.%N)
	if ! "$BIN/bulkctl" restore latest "bench:$W/restored" -r "$W/repo" --nats "$URL" > "$W/logs/restore.out" 2>&1; then
		echo "restore failed:"; cat "$W/logs/restore.out"; exit 1
	fi
	wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
	files=$(jq .files "$W/logs/backup-3.json")
	awk -v s="$wall" -v files="$files" 'BEGIN { printf "restore: %.1f s, %d files/s\n", s, files / s }'
	summary restore "$files" "$wall"
	echo "  peak RSS MiB: coordinator $(hwm $COORD), reader $(hwm $READER), compressor $(hwm $COMP) (cumulative), nats-server $(hwm $NATS) (cumulative)"
	if [[ ${NOCOMPARE:-0} != 1 ]]; then
		diff -r "$TREE" "$W/restored" > /dev/null && echo "  restored tree equals the source (diff -r)" || echo "  RESTORED TREE DIFFERS (diff -r)"
	fi
	rm -rf "$W/restored"
fi
if [[ ${BREAKDOWN:-1} == 1 ]]; then
	echo "breakdown of the last snapshot (GOGC=50):"
	GOGC=50 go run ./scripts/manifestcost "$W/repo" "$(jq -r .snapshot_id "$W/logs/backup-3.json")"
fi
