#!/usr/bin/env bash
# bench.sh: end-to-end benchmark of bulkbackup against a zstd baseline.
#
#   bash scripts/bench.sh                  # from the repository root (make bench)
#   BENCH_SIZE=4GiB BENCH_DIR=/mnt/fast/bench bash scripts/bench.sh
#
# Environment:
#   BENCH_DIR          work directory (default: .bench/ in the repository, gitignored)
#   BENCH_SIZE         size of the generated sample volume (default 1GiB)
#   BENCH_SEED         mkvolume seed (default 1)
#   BENCH_COMPRESSORS  --compressors for bulkctl (default: bulkctl's, one per CPU)
#   BENCH_SWEEP        chunk sizes of the sweep in MiB (default "1 2 4 8 16 32")
#   BENCH_RUNS         runs per measurement; the fastest is reported (default 3)
#
# What it measures, all on the same mixed volume (text, binary, zeros, random;
# see pkg/volgen), in one run so the numbers are comparable:
#   a. zstd -T0 -1 compress and zstd -d decompress: the baseline every other
#      number is divided by. Same data, same disk, all cores.
#   b. bulkctl backup into a fresh directory repository through the embedded
#      fleet (coordinator, reader, compressors on an in-process NATS server),
#      default settings.
#   c. bulkctl restore of that snapshot to a file, and bulkctl verify.
#   d. a second, incremental backup of the unchanged volume into the same repo.
#   e. a chunk-size sweep: one backup per chunk size, each into a fresh repo.
#   f. the pkg/chunk micro-benchmarks (Seal per level and size, Sum, Open).
#
# Wall-clock time, peak RSS and CPU time come from /usr/bin/time -f '%e %M %U %S'
# around the whole command (process start, embedded server, job, commit);
# bulkctl --json also reports the job's own seconds, shown as a second MB/s
# column. Every measurement runs BENCH_RUNS times and the fastest run is
# reported: other work on the machine (a shared 2-core CI box is noisy) can
# only add time, so the minimum is the best estimate of what the code does
# alone. results.json keeps every run's wall time, so the spread is visible.
#
# The page cache cannot be dropped portably (and not at all without root), so
# it is made warm instead: right before every run, the run's inputs (the
# volume, the .zst file, the repository) are read once, so every contender
# reads from memory. Once is not enough: some VMs (this project's CI among
# them) proactively page out memory idle for ~30 s (DAMON reclaim), which
# silently turns a "warm" volume cold between measurements. Each run also
# starts with `sync`, so no contender pays for an earlier one's dirty pages.
# The results say so too.
#
# Output: one Markdown table on stdout and in $BENCH_DIR/results.md (with the
# micro-benchmarks appended), and the raw figures in $BENCH_DIR/results.json.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BENCH_DIR=${BENCH_DIR:-$ROOT/.bench}
BENCH_SIZE=${BENCH_SIZE:-1GiB}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_COMPRESSORS=${BENCH_COMPRESSORS:-}
BENCH_SWEEP=${BENCH_SWEEP:-1 2 4 8 16 32}
BENCH_RUNS=${BENCH_RUNS:-3}

BULKCTL=$ROOT/bin/bulkctl
MKVOLUME=$ROOT/bin/mkvolume
VOL=$BENCH_DIR/vol-$BENCH_SIZE-seed$BENCH_SEED.img
LOGS=$BENCH_DIR/logs
ROWS_MD=$BENCH_DIR/rows.md       # table rows, filled by add_row
ROWS_JSON=$BENCH_DIR/rows.jsonl  # one JSON object per row
NOTES=$BENCH_DIR/notes.md        # lines printed under the table

# The embedded broker's max payload (pkg/broker.DefaultMaxPayload); the reader
# stages a chunk through the repository when it is longer than this minus
# 4 KiB of headroom (pkg/reader), i.e. from 8 MiB up.
NATS_MAX_PAYLOAD=$((8 << 20))

HAVE_ZSTD=1
HAVE_TIME=1
HAVE_JQ=1

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
note() { printf -- '- %s\n' "$*" >>"$NOTES"; }

# ensure_tool CMD PACKAGE: succeed if CMD is on PATH, installing PACKAGE with
# apt-get when missing and running as root; fail otherwise (the caller decides
# what to do without it).
ensure_tool() {
	local cmd=$1 pkg=$2
	command -v "$cmd" >/dev/null 2>&1 && return 0
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		log "$cmd missing and not root (or no apt-get): not installing $pkg"
		return 1
	fi
	log "installing $pkg"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >"$LOGS/apt-$pkg.log" 2>&1; then
		apt-get update >>"$LOGS/apt-$pkg.log" 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >>"$LOGS/apt-$pkg.log" 2>&1 || return 1
	fi
	command -v "$cmd" >/dev/null 2>&1
}

setup_tools() {
	ensure_tool zstd zstd || HAVE_ZSTD=0
	# /usr/bin/time, not the shell keyword: it reports peak RSS.
	[[ -x /usr/bin/time ]] || ensure_tool /usr/bin/time time || HAVE_TIME=0
	ensure_tool jq jq || HAVE_JQ=0
	((HAVE_TIME)) || log "no /usr/bin/time: wall clock from date, peak RSS not measured"
}

build() {
	log "building bin/bulkctl and bin/mkvolume"
	mkdir -p "$ROOT/bin"
	go build -o "$BULKCTL" ./cmd/bulkctl
	go build -o "$MKVOLUME" ./scripts/mkvolume
}

# make_volume generates the sample volume once; later runs reuse it (the same
# size and seed always give the same bytes).
make_volume() {
	if [[ -s $VOL ]]; then
		log "reusing $VOL"
		return
	fi
	log "generating $BENCH_SIZE volume (seed $BENCH_SEED) at $VOL"
	"$MKVOLUME" -size "$BENCH_SIZE" -seed "$BENCH_SEED" -o "$VOL.tmp" >&2
	mv "$VOL.tmp" "$VOL"
}

# warm PATH...: read files (directories recursively) into the page cache, so
# the next run starts warm. Dropping the cache instead is not portable and
# needs root.
warm() {
	local p
	for p; do
		[[ -e $p ]] && find "$p" -type f -exec cat {} + >/dev/null
	done
	return 0
}

# --- small helpers ----------------------------------------------------------

calc() { awk "BEGIN { x = $1; printf \"%.${2:-2}f\", x }"; }

# mbps BYTES SECONDS: throughput in MB/s (10^6 bytes, as bulkctl reports).
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f", b / 1e6 / s; else printf "0" }'; }

# div A B: A/B with two decimals, "n/a" when B is not positive.
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else printf "n/a" }'; }

# jget FILE KEY: a top-level field of a one-object JSON file.
jget() {
	if ((HAVE_JQ)); then
		jq -r ".$2" "$1"
	else
		sed -n "s/.*\"$2\":\(\"\([^\"]*\)\"\|\([^,}]*\)\).*/\2\3/p" "$1"
	fi
}

# jnum VALUE: a JSON number, or null when VALUE is not numeric.
jnum() { [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?$ ]] && printf '%s' "$1" || printf 'null'; }

# measure NAME OUT PREP CMD...: run CMD BENCH_RUNS times, each after the shell
# function PREP (":" for none; e.g. removing the repository so every run
# starts fresh), reading the paths in WARM into the page cache, and `sync`;
# stdout to OUT.i and stderr to logs/NAME.i.log.
# Reports the run with the shortest wall-clock time: M_WALL (seconds), M_RSS_MIB
# (peak RSS; n/a without /usr/bin/time), M_CPU (user+sys seconds), M_OUT (its
# stdout), and M_WALLS (every run's seconds, a JSON array). M_LAST_OUT is the
# last run's stdout: the one whose side effects (a snapshot) still exist.
measure() {
	local name=$1 out=$2 prep=$3
	shift 3
	local i tf err wall rss user sys results=()
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		tf=$LOGS/$name.$i.time err=$LOGS/$name.$i.log
		"$prep"
		warm "${WARM[@]}"
		sync
		if ((HAVE_TIME)); then
			/usr/bin/time -f '%e %M %U %S' -o "$tf" "$@" >"$out.$i" 2>"$err" ||
				die "$name failed (exit $?); see $err"
			read -r wall rss user sys < <(tail -n 1 "$tf")
			rss=$(calc "$rss / 1024" 0)
		else
			local t0 t1
			t0=$(date +%s.%N)
			"$@" >"$out.$i" 2>"$err" || die "$name failed (exit $?); see $err"
			t1=$(date +%s.%N)
			wall=$(calc "$t1 - $t0" 2) rss=n/a user=0 sys=0
		fi
		log "$name run $i/$BENCH_RUNS: ${wall}s, peak RSS $rss MiB, CPU ${user}s user + ${sys}s sys"
		results+=("$wall $rss $(calc "$user + $sys" 2) $i")
	done
	local best
	best=$(printf '%s\n' "${results[@]}" | sort -n -k1,1 | head -n 1)
	read -r M_WALL M_RSS_MIB M_CPU i <<<"$best"
	M_OUT=$out.$i
	M_LAST_OUT=$out.$BENCH_RUNS
	M_WALLS=[$(printf '%s\n' "${results[@]}" | cut -d' ' -f1 | paste -sd,)]
}

# add_row CONTENDER WALL_MBPS JOB_MBPS RATIO RSS_MIB VS_ZSTD [EXTRA_JSON]:
# one line of the results table (with the fastest run's CPU time), and its
# JSON twin.
add_row() {
	local extra=${7:-}
	printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$5" "$6" "$M_CPU" >>"$ROWS_MD"
	printf '{"contender":"%s","mb_per_s_wall":%s,"mb_per_s_job":%s,"ratio":%s,"peak_rss_mib":%s,"mb_per_s_vs_zstd":%s%s}\n' \
		"$1" "$(jnum "$2")" "$(jnum "$3")" "$(jnum "$4")" "$(jnum "$5")" "$(jnum "$6")" "${extra:+,$extra}" >>"$ROWS_JSON"
}

# vs_zstd MBPS BASELINE_MBPS: throughput as a multiple of the baseline's.
vs_zstd() { ((HAVE_ZSTD)) && div "$1" "$2" || printf 'n/a'; }

BULK_FLAGS=()
[[ -n $BENCH_COMPRESSORS ]] && BULK_FLAGS+=(--compressors "$BENCH_COMPRESSORS")

# --- measurements -----------------------------------------------------------

ZSTD_C_MBPS=0
ZSTD_D_MBPS=0

# timing_json: the JSON fields every row carries about the fastest run.
timing_json() { printf '"wall_s":%s,"cpu_s":%s,"wall_s_runs":%s' "$M_WALL" "$(jnum "$M_CPU")" "$M_WALLS"; }

# a. The baseline: what one well-tuned compressor does with every core of this
# machine on the same data, reading and writing the same disk. zstd -1 is the
# level closest to our default (klauspost zstd "fastest"). Note that zstd
# writes through the page cache without fsync, while the directory repository
# fsyncs every chunk it stores.
bench_zstd() {
	if ((!HAVE_ZSTD)); then
		note "zstd not installed (not root): baseline skipped, no ratios to it"
		return
	fi
	local zf=$BENCH_DIR/vol.zst out=$BENCH_DIR/vol.zstd-restored stored
	WARM=("$VOL")
	measure zstd-compress "$zf" : zstd -q -T0 -1 -c "$VOL"
	stored=$(stat -c %s "$M_OUT")
	ZSTD_C_MBPS=$(mbps "$VOL_BYTES" "$M_WALL")
	add_row "zstd -T0 -1 (compress)" "$ZSTD_C_MBPS" "-" "$(div "$VOL_BYTES" "$stored")" "$M_RSS_MIB" "1.00" \
		"$(timing_json),\"stored_bytes\":$stored"

	WARM=("$M_OUT")
	ZSTD_RESTORED=$out
	measure zstd-decompress "$out" drop_zstd_restored zstd -q -d -c "$M_OUT"
	ZSTD_D_MBPS=$(mbps "$VOL_BYTES" "$M_WALL")
	add_row "zstd -d (restore baseline)" "$ZSTD_D_MBPS" "-" "-" "$M_RSS_MIB" "1.00" "$(timing_json)"
	rm -f "$zf".* "$out".*
}

# drop_zstd_restored removes earlier decompressed copies: 1 GiB each.
drop_zstd_restored() { rm -f "$ZSTD_RESTORED".*; }

# backup NAME REPO CHUNK_SIZE PREP: measure bulkctl backup (the volume warm).
backup() {
	local name=$1 repo=$2 cs=$3 prep=$4
	WARM=("$VOL")
	[[ -d $repo ]] && WARM+=("$repo")
	measure "$name" "$LOGS/$name.json" "$prep" "$BULKCTL" backup "$VOL" -r "$repo" --json \
		--chunk-size "$cs" --level fastest "${BULK_FLAGS[@]}"
}

# backup_row CONTENDER: the table row for the backup just measured.
backup_row() {
	local js=$M_OUT seconds stored wall_mbps
	seconds=$(jget "$js" seconds)
	stored=$(jget "$js" stored_bytes)
	wall_mbps=$(mbps "$VOL_BYTES" "$M_WALL")
	add_row "$1" "$wall_mbps" "$(mbps "$VOL_BYTES" "$seconds")" "$(div "$VOL_BYTES" "$stored")" "$M_RSS_MIB" \
		"$(vs_zstd "$wall_mbps" "$ZSTD_C_MBPS")" \
		"$(timing_json),\"job_s\":$(jnum "$seconds"),\"stored_bytes\":$(jnum "$stored"),\"new_bytes\":$(jnum "$(jget "$js" new_bytes)"),\"chunks\":$(jnum "$(jget "$js" chunks)"),\"zero_chunks\":$(jnum "$(jget "$js" zero_chunks)")"
}

REPO=$BENCH_DIR/repo
RESTORED=$BENCH_DIR/restored.img
SNAP=
FIRST_WALL=0
INCR_SPEEDUP=

fresh_repo() { rm -rf "$REPO"; }
fresh_restore() { rm -f "$RESTORED"; }

# b. The product's default path on one machine: the whole command, including
# starting the embedded NATS server and fleet, planning, reading, compressing,
# fsyncing each chunk into the directory repository, and committing. Each run
# starts from an empty repository.
bench_backup() {
	backup backup "$REPO" 4MiB fresh_repo
	FIRST_WALL=$M_WALL
	backup_row "bulkctl backup (4 MiB default, fresh repo)"
	SNAP=$(jget "$M_LAST_OUT" snapshot_id) # the last run's repository is the one left
}

# c. Restore checks each chunk's hash and writes it back at its offset; verify
# reads back and checks every stored chunk without writing. Both compare with
# zstd -d, the baseline's way back. The restored file is compared with the
# source afterwards (not timed): a fast wrong restore is worthless.
bench_restore_verify() {
	local seconds wall_mbps
	WARM=("$REPO")
	measure restore "$LOGS/restore.json" fresh_restore "$BULKCTL" restore "$SNAP" "$RESTORED" -r "$REPO" --json "${BULK_FLAGS[@]}"
	seconds=$(jget "$M_OUT" seconds)
	wall_mbps=$(mbps "$VOL_BYTES" "$M_WALL")
	add_row "bulkctl restore (to a file)" "$wall_mbps" "$(mbps "$VOL_BYTES" "$seconds")" "-" "$M_RSS_MIB" \
		"$(vs_zstd "$wall_mbps" "$ZSTD_D_MBPS")" "$(timing_json),\"job_s\":$(jnum "$seconds")"
	cmp -s "$VOL" "$RESTORED" || die "restored volume differs from the source: $RESTORED"
	note "restore output compared with the source byte for byte: identical"
	rm -f "$RESTORED"

	measure verify "$LOGS/verify.json" : "$BULKCTL" verify "$SNAP" -r "$REPO" --json
	[[ $(jget "$M_OUT" ok) == true ]] || die "verify reported damage; see $M_OUT"
	seconds=$(jget "$M_OUT" seconds)
	wall_mbps=$(mbps "$VOL_BYTES" "$M_WALL")
	add_row "bulkctl verify" "$wall_mbps" "$(mbps "$VOL_BYTES" "$seconds")" "-" "$M_RSS_MIB" \
		"$(vs_zstd "$wall_mbps" "$ZSTD_D_MBPS")" "$(timing_json),\"job_s\":$(jnum "$seconds")"
}

# d. The unchanged volume again, into the same repository: every chunk is
# still read and hashed, but none needs compressing or writing (its
# content-addressed key exists; the reader also knows the previous snapshot's
# hashes and need not send an unchanged chunk at all). This is the daily
# backup of a volume that did not change. Repeating it is harmless: each run
# adds a snapshot, no chunk.
bench_incremental() {
	backup backup-incremental "$REPO" 4MiB :
	backup_row "bulkctl backup, incremental (unchanged)"
	INCR_SPEEDUP=$(div "$FIRST_WALL" "$M_WALL")
	note "incremental backup speed-up vs the first backup (fastest runs): ${INCR_SPEEDUP}x; new bytes stored: $(jget "$M_OUT" new_bytes)"
	rm -rf "$REPO"
}

# e. Chunk size trades per-chunk overhead (a message, an fsync'd object, a
# manifest entry, an ack) against parallelism and memory in flight. Chunks of
# 8 MiB and more do not fit in one NATS message and are staged through the
# repository (written once raw, read back by the compressor, deleted).
SWEEP_REPO=
fresh_sweep_repo() { rm -rf "$SWEEP_REPO"; }
bench_sweep() {
	local mib label
	for mib in $BENCH_SWEEP; do
		SWEEP_REPO=$BENCH_DIR/repo-sweep-${mib}MiB
		backup "sweep-${mib}MiB" "$SWEEP_REPO" "${mib}MiB" fresh_sweep_repo
		label="sweep: backup ${mib} MiB chunks"
		if ((mib * 1048576 > NATS_MAX_PAYLOAD - 4096)); then
			label+=" (staged)"
		fi
		backup_row "$label"
		rm -rf "$SWEEP_REPO"
	done
}

# f. Per-core building blocks: zstd Seal per level and chunk size, SHA-256
# Sum, Open (decompress + verify). These bound what one compressor core can do;
# note Seal's input (a repeated log line, random and zero bytes) compresses
# far faster than the volume does, so the "CPU s" of the zstd row above is the
# better per-core figure for this data.
GO_BENCH=$BENCH_DIR/go-bench.txt
bench_go() {
	log "go test -bench ./pkg/chunk/"
	if ! go test -run '^$' -bench . -benchtime 20x ./pkg/chunk/ >"$GO_BENCH" 2>&1; then
		note "go test -bench ./pkg/chunk/ failed; output below"
	fi
}

# go_bench_json: the micro-benchmarks as JSON objects {name, mb_per_s, ns_per_op}.
go_bench_json() {
	awk '/^Benchmark/ {
		mb = "null"; ns = "null"
		for (i = 2; i <= NF; i++) { if ($i == "MB/s") mb = $(i-1); if ($i == "ns/op") ns = $(i-1) }
		printf "%s{\"name\":\"%s\",\"mb_per_s\":%s,\"ns_per_op\":%s}", sep, $1, mb, ns; sep = ","
	}' "$GO_BENCH"
}

# --- report -----------------------------------------------------------------

report() {
	local md=$BENCH_DIR/results.md json=$BENCH_DIR/results.json
	local model go_version date commit
	model=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
	go_version=$(go version)
	# The code measured: the commit, and whether the working tree differed.
	commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	git diff --quiet HEAD 2>/dev/null || commit+=" (working tree modified)"
	date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	{
		printf '# bulkbackup benchmark, %s\n\n' "$date"
		printf 'Machine: %s CPUs (%s), %s. Code: %s. Volume: %s (%s bytes, mkvolume seed %s).\n\n' \
			"$(nproc)" "${model:-unknown CPU}" "$go_version" "$commit" "$BENCH_SIZE" "$VOL_BYTES" "$BENCH_SEED"
		printf '| contender | MB/s (wall) | MB/s (job) | ratio | peak RSS MiB | MB/s vs zstd | CPU s |\n'
		printf '|---|---:|---:|---:|---:|---:|---:|\n'
		cat "$ROWS_MD"
		printf '\n'
		printf -- '- MB/s = 10^6 bytes of source per second; wall = the whole command under /usr/bin/time, job = the seconds bulkctl --json reports.\n'
		printf -- '- ratio = source bytes / stored bytes. MB/s vs zstd: backups against zstd -T0 -1, restore and verify against zstd -d.\n'
		printf -- '- Warm cache: the inputs of every run (volume, .zst file, repository) were read right before it, then sync; the page cache was not dropped.\n'
		printf -- '- Each figure is the fastest of %s runs by wall clock (other load only adds time); results.json has every run. CPU s = user + sys seconds of that run (all threads).\n' "$BENCH_RUNS"
		cat "$NOTES"
	} >"$md"
	cat "$md"
	{
		printf '\n## pkg/chunk micro-benchmarks\n\n```\n$ go test -run %s -bench . -benchtime 20x ./pkg/chunk/\n' "'^\$'"
		cat "$GO_BENCH"
		printf '```\n'
	} >>"$md"

	{
		printf '{"date":"%s","nproc":%s,"cpu":"%s","go":"%s","commit":"%s","volume":{"size":"%s","bytes":%s,"seed":%s},' \
			"$date" "$(nproc)" "$model" "$go_version" "$commit" "$BENCH_SIZE" "$VOL_BYTES" "$BENCH_SEED"
		printf '"warm_cache":true,"runs":%s,"incremental_speedup":%s,' "$BENCH_RUNS" "$(jnum "$INCR_SPEEDUP")"
		printf '"rows":[%s],' "$(paste -sd, "$ROWS_JSON")"
		printf '"go_bench":[%s]}\n' "$(go_bench_json)"
	} >"$json.tmp"
	if ((HAVE_JQ)); then
		jq . "$json.tmp" >"$json" && rm -f "$json.tmp"
	else
		mv "$json.tmp" "$json"
	fi
	log "wrote $md and $json"
}

main() {
	rm -rf "$LOGS"
	mkdir -p "$BENCH_DIR" "$LOGS"
	: >"$ROWS_MD"
	: >"$ROWS_JSON"
	: >"$NOTES"
	setup_tools
	build
	make_volume
	VOL_BYTES=$(stat -c %s "$VOL")
	WARM=()
	# Other work on the machine skews every figure; record how busy it was.
	LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)
	if awk -v l="${LOAD_START%% *}" -v n="$(nproc)" 'BEGIN { exit !(l + 0 > n / 2) }'; then
		log "warning: load average $LOAD_START on $(nproc) CPUs; other work will skew the figures"
		note "warning: the machine was busy at the start (load average $LOAD_START on $(nproc) CPUs)"
	fi

	bench_zstd
	bench_backup
	bench_restore_verify
	bench_incremental
	bench_sweep
	note "load average (1, 5, 15 min) at start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"
	bench_go
	report
}

main "$@"
