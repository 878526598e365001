# shellcheck shell=bash
# shellcheck disable=SC2034 # globals set here are read by bench.sh
# lib.sh: helpers of scripts/bench.sh: logging, installing tools, timing a
# command N times, and recording a result row. Sourced, not run.
#
# Globals it expects from bench.sh: BENCH_DIR, LOGS, ROWS, NOTES, BENCH_RUNS,
# BENCH_CACHE.

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
# note TEXT: a line printed under the results table (and kept in the JSON).
note() { printf '%s\n' "$*" >>"$NOTES"; }

# --- installing tools -------------------------------------------------------

# apt_install PACKAGE...: install Debian packages when root with apt-get;
# apt-get update only when the first attempt fails (a fresh machine's lists
# may be missing or stale). Output goes to logs/apt-*.log.
apt_install() {
	local logf=$LOGS/apt-$1.log
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		log "not root or no apt-get: cannot install $*"
		return 1
	fi
	log "installing $* (apt-get)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >"$logf" 2>&1 && return 0
	apt-get update >>"$logf" 2>&1 || true
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >>"$logf" 2>&1
}

# ensure_tool CMD PACKAGE: succeed if CMD is on PATH (or an executable
# path), installing PACKAGE with apt-get when missing.
ensure_tool() {
	local cmd=$1 pkg=$2
	command -v "$cmd" >/dev/null 2>&1 && return 0
	apt_install "$pkg" || return 1
	command -v "$cmd" >/dev/null 2>&1
}

# build_restic VERSION: build restic VERSION from the Go module proxy into
# $(go env GOPATH)/bin/restic-VERSION (cached) and print its path. A plain
# `go install module@version` is refused by some module proxies and
# sandboxes; downloading the module and building inside it works, with
# restic's own go.mod and go.sum.
build_restic() {
	local version=$1 bin dir
	bin=$(go env GOPATH)/bin/restic-$version
	if [[ -x $bin ]]; then
		printf '%s\n' "$bin"
		return 0
	fi
	log "building restic $version from the Go module proxy (about 3 min)"
	dir=$(go mod download -json "github.com/restic/restic@$version" 2>>"$LOGS/restic-build.log" | jq -r .Dir) || return 1
	[[ -n $dir && $dir != null ]] || return 1
	(cd "$dir" && go build -o "$bin" ./cmd/restic) >>"$LOGS/restic-build.log" 2>&1 || return 1
	printf '%s\n' "$bin"
}

# --- small helpers ----------------------------------------------------------

calc() { awk "BEGIN { x = $1; printf \"%.${2:-2}f\", x }"; }

# mbps BYTES SECONDS: throughput in MB/s (10^6 bytes, as bulkctl reports).
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f", b / 1e6 / s; else printf "0" }'; }

# div A B: A/B with two decimals, "n/a" when B is not positive.
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else printf "n/a" }'; }

# size_bytes SIZE: bytes of a size as the binaries' flags take it (4MiB,
# 16MiB, 1GiB, 10MB, 4096); dies on anything else.
size_bytes() {
	awk -v s="$1" 'BEGIN {
		split("b 1 k 1024 kib 1024 kb 1e3 m 1048576 mib 1048576 mb 1e6 g 1073741824 gib 1073741824 gb 1e9", u, " ")
		for (i = 1; i < 24; i += 2) mult[u[i]] = u[i + 1]
		mult[""] = 1
		if (!match(s, /^[0-9]+(\.[0-9]+)? */)) exit 1
		unit = tolower(substr(s, RLENGTH + 1))
		if (!(unit in mult)) exit 1
		printf "%.0f\n", substr(s, 1, RLENGTH) * mult[unit]
	}' || die "not a size: $1 (want e.g. 16MiB)"
}

# jnum VALUE: a JSON number, or null when VALUE is not numeric.
jnum() { [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?$ ]] && printf '%s' "$1" || printf 'null'; }

# jget FILE KEY: a top-level field of a one-object JSON file ("" if absent).
jget() { jq -r --arg k "$2" '.[$k] // empty' "$1"; }

# dir_bytes PATH: the apparent size of a file or directory tree in bytes,
# as a repository's size is compared with the source.
dir_bytes() { du -sb "$1" | cut -f1; }

# tree_bytes DIR: the bytes in the regular files under DIR.
tree_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }'; }

# --- page cache -------------------------------------------------------------

# DROP_CACHES is 1 when this process may drop the page cache (root, and
# the VM allows writing /proc/sys/vm/drop_caches); set by check_drop_caches,
# which finds out by dropping it, so bench.sh calls it only when asked to
# drop caches (BENCH_DROP_CACHES=1).
DROP_CACHES=0
check_drop_caches() {
	if [[ -w /proc/sys/vm/drop_caches ]] && sync && (echo 1 >/proc/sys/vm/drop_caches) 2>/dev/null; then
		DROP_CACHES=1
	fi
}

# warm PATH...: read files (directories recursively) into the page cache.
warm() {
	local p
	for p; do
		[[ -e $p ]] && find "$p" -type f -exec cat {} + >/dev/null
	done
	return 0
}

# prepare_cache PATH...: the page cache before a timed run. warm (default):
# read the run's inputs right before it, every time: this VM pages out
# cache idle for ~30 s (DAMON reclaim), so a single warm-up does not last.
# cold: drop the whole page cache, so every contender reads from the disk.
# Both end with sync, so no run pays for an earlier one's dirty pages.
prepare_cache() {
	if [[ $BENCH_CACHE == cold ]]; then
		sync
		echo 3 >/proc/sys/vm/drop_caches
	else
		warm "$@"
	fi
	sync
}

# --- timing -----------------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)

# measure NAME OUT PREP CMD...: run CMD BENCH_RUNS times (MEASURE_RUNS if
# set), each after the shell function PREP (":" for none; e.g. a fresh
# repository), prepare_cache on the paths in WARM, and sync; CMD's stdout to
# OUT.i, its stderr to logs/NAME.i.log, a failure is fatal.
#
# /usr/bin/time gives wall time, peak RSS and CPU of CMD and everything it
# waits for (a pipeline under bash -c included). When a process fleet is up
# (FLEET_PIDS, scripts/bench/fleet.sh), the CPU its processes spent during
# the run is added: the command is only a client then.
#
# Sets, for the run with the shortest wall time (other load only adds time,
# so the minimum is the best estimate of the code alone): M_WALL (s),
# M_RSS_MIB, M_CPU (user + sys s), M_CPU_PROCS (each fleet process's CPU s
# during the run, a JSON object; {} with no fleet), M_OUT (its stdout
# file); and M_MEDIAN (s),
# M_WALLS (every run's seconds, a JSON array), M_LAST_OUT (the last run's
# stdout: the run whose side effects, such as a repository, remain).
measure() {
	local name=$1 out=$2 prep=$3
	shift 3
	local runs=${MEASURE_RUNS:-$BENCH_RUNS}
	local i tf err wall rss user sys t0 t1 p0 p1 cpu results=() procs=()
	for ((i = 1; i <= runs; i++)); do
		tf=$LOGS/$name.$i.time err=$LOGS/$name.$i.log
		"$prep"
		prepare_cache "${WARM[@]}"
		p0=$(fleet_cpu_json)
		t0=$(fleet_cpu_ticks)
		/usr/bin/time -f '%e %M %U %S' -o "$tf" "$@" >"$out.$i" 2>"$err" ||
			die "$name failed (exit $?); see $err"
		t1=$(fleet_cpu_ticks)
		p1=$(fleet_cpu_json)
		read -r wall rss user sys < <(tail -n 1 "$tf")
		rss=$(calc "$rss / 1024" 0)
		cpu=$(calc "$user + $sys + ($t1 - $t0) / $CLK_TCK" 2)
		procs[i]=$(jq -cn --argjson a "$p0" --argjson b "$p1" --argjson hz "$CLK_TCK" \
			'$b | with_entries(.value = ((.value - ($a[.key] // 0)) / $hz * 100 | round / 100))')
		log "$name run $i/$runs: ${wall}s, peak RSS $rss MiB, CPU ${cpu}s"
		results+=("$wall $rss $cpu $i")
	done
	local best
	best=$(printf '%s\n' "${results[@]}" | sort -n -k1,1 | head -n 1)
	read -r M_WALL M_RSS_MIB M_CPU i <<<"$best"
	M_CPU_PROCS=${procs[i]}
	M_OUT=$out.$i
	M_LAST_OUT=$out.$runs
	M_WALLS=[$(printf '%s\n' "${results[@]}" | cut -d' ' -f1 | paste -sd,)]
	M_MEDIAN=$(printf '%s\n' "${results[@]}" | cut -d' ' -f1 | sort -n |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
}

# --- results ----------------------------------------------------------------

# add_row ID DATA NAME BYTES STORED JOB_S VS [EXTRA]: record the measurement
# just made as one row of the results (a JSON line in ROWS; report.sh turns
# the rows into the table). ID names the row for comparisons; DATA is the
# input ("ext4 2GiB", "tree 100000 files"); BYTES the source bytes; STORED
# the repository's or output's bytes ("" when nothing is stored); JOB_S the
# job's own seconds from bulkctl --json ("" for other tools); VS a JSON
# object naming the rows to compare with, by baseline ({"zstd":"vol/zstd"});
# EXTRA a JSON object merged into the row.
add_row() {
	local id=$1 data=$2 name=$3 bytes=$4 stored=$5 job=$6 vs=$7 extra=${8:-"{}"}
	jq -cn --arg id "$id" --arg data "$data" --arg name "$name" --argjson bytes "$bytes" \
		--argjson stored "$(jnum "$stored")" --argjson job "$(jnum "$job")" --argjson vs "$vs" \
		--argjson wall "$M_WALL" --argjson median "$(jnum "$M_MEDIAN")" --argjson cpu "$(jnum "$M_CPU")" \
		--argjson rss "$(jnum "$M_RSS_MIB")" --argjson runs "$M_WALLS" --argjson extra "$extra" \
		'{id: $id, data: $data, name: $name, bytes: $bytes, stored_bytes: $stored, job_s: $job,
		  wall_s: $wall, median_s: $median, cpu_s: $cpu, peak_rss_mib: $rss, runs_s: $runs, vs: $vs} + $extra' >>"$ROWS"
	log "row $id: $(mbps "$bytes" "$M_WALL") MB/s${stored:+, ratio $(div "$bytes" "$stored")}${M_RSS_MIB:+, peak RSS $M_RSS_MIB MiB}"
}
