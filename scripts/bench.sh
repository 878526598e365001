#!/usr/bin/env bash
# bench.sh: the benchmark suite of issue #6: bulkbackup against zstd,
# restic and Borg on the same data, in one run, so the ratios compare.
#
#   bash scripts/bench.sh                  # from the repository root (make bench)
#   BENCH_QUICK=1 bash scripts/bench.sh    # small sizes, one run: checks the suite end to end
#   BENCH_SIZE=4GiB BENCH_DIR=/mnt/fast/bench bash scripts/bench.sh
#
# Environment (BENCH_QUICK=1 changes the defaults marked "quick"):
#   BENCH_DIR          work directory (default .bench/ in the repository, gitignored)
#   BENCH_SIZE         size of the ext4 volume image (default 2GiB; quick 256MiB)
#   BENCH_VOL          an existing image to use instead (e.g. a copy of a real disk)
#   BENCH_SEED         selection and generator seed of the image and tree (default 1)
#   BENCH_RUNS         runs per measurement; the fastest is reported (default 3; quick 1)
#   BENCH_DROP_CACHES  1: drop the machine's whole page cache (sync; echo 3 >
#                      /proc/sys/vm/drop_caches; needs root) before each run, so every
#                      contender reads the disk. Default 0: the page cache is never
#                      dropped, nor probed by writing drop_caches.
#   BENCH_CACHE        warm (default unless BENCH_DROP_CACHES=1): inputs read into the
#                      page cache before each run; cold: the same as BENCH_DROP_CACHES=1
#   BENCH_SECTIONS     what to run, in order (default
#                      "volume encryption processes scaling reader sweep tree treescale memory
#                      maintenance go")
#   BENCH_PEERS        peer tools to compare with (default "restic borg"; "" for none)
#   BENCH_RESTIC       a restic binary to use (default: restic on PATH, else Debian's,
#                      else restic $BENCH_RESTIC_VERSION built from the Go module proxy)
#   BENCH_RESTIC_VERSION  the version built when needed (default v0.18.1)
#   BENCH_COMPRESSORS  --compressors of the embedded fleet (default: bulkctl's, one per CPU)
#   BENCH_FLEET_COMPRESSORS  compressor processes of the process fleet (processes, reader
#                      and memory sections; default 2)
#   BENCH_SCALE        compressor processes of the scaling curve, one worker each limited
#                      to BENCH_RATE (default "1 2 4 8 16")
#   BENCH_RATE         --rate-limit of each scaling compressor: raw bytes per second of
#                      its one worker (default 4MiB). The curve shows how the data plane
#                      scales when the compressors, not this machine, are the bottleneck,
#                      so the largest count times the rate must stay well under what the
#                      machine moves with nothing throttled. 4MiB was chosen on the 2-vCPU
#                      VM: there reader --compress 0 with 1, 2 or 16 unthrottled
#                      one-worker compressors moved 150-320 MB/s of a generated volume
#                      (less while other work ran) at 5.7-6.4 CPU-s per GB, and
#                      16 x 4MiB/s = 67 MB/s, under half of the least: about 0.5 CPU
#                      cores in all, measured. 0: unthrottled, to measure what a
#                      machine moves
#   BENCH_SCALE_SIZE   generated volume per scaling compressor: N compressors back up a
#                      volume of N x this (mkvolume, no zero regions; default 32MiB,
#                      quick 16MiB), so every point takes about BENCH_SCALE_SIZE /
#                      BENCH_RATE seconds (8 s by default) and fixed costs weigh the same
#   BENCH_SWEEP        chunk sizes of the sweep in MiB (default "1 2 4 8 16 32"; quick "4 16")
#   BENCH_MEM_SIZES    volume sizes of the memory section (default "1GiB 8GiB"; quick "512MiB 1GiB":
#                      both far above what the process fleet's reader holds in flight,
#                      2 chunks per live compressor worker)
#   BENCH_TREE_FILES   files in the tree (default 100000; quick 2000)
#   BENCH_TREE_SCALE   files in each generated tree of small files of the treescale
#                      section (default "100000 2000000"; quick "2000 20000")
#   BENCH_MAINT_CHUNKS chunks of the maintenance section's repository (default 100000;
#                      quick 5000)
#
# Sections (functions below; each adds rows to the one results table):
#   volume     on the ext4 image (built once by scripts/mkcorpus: real files of
#              this machine, ~25% free, ~10% incompressible): zstd -T0 -1 and
#              zstd -d (the baselines), restic --compression auto, Borg
#              --compression zstd,3, the in-memory ceiling (BenchmarkCompressCeiling
#              in pkg/fleet on the same image), bulkctl backup through the embedded
#              fleet (default settings, directory repository), restore, verify,
#              and an incremental backup of the unchanged image
#   encryption the backup and restore of the image into a plaintext and an encrypted
#              repository (issue 17), one after the other in this run: the
#              encrypted backup with the coordinator's write key (what a backup
#              host holds), the restore with an age identity; the ratios
#              encrypted ÷ plaintext (targets: ≥ 0.95×), whether the CPU has
#              AES-NI, and what unlocking with a password (scrypt) costs a command
#   processes  the same backup through separate processes: a coordinator with its
#              embedded NATS server, a reader, BENCH_FLEET_COMPRESSORS compressors
#              (scripts/bench/fleet.sh): the reader with --compress 0 (every chunk
#              fetched from it by the compressor processes: the distributed data
#              path), then with its default --compress auto (it compresses what its
#              own workers have room for, the compressors fetch the rest), and the
#              incremental; a note compares MB/s and CPU-s per GB with the embedded
#              fleet's backup of the same run (the volume section's, else measured
#              here)
#   scaling    a simulated scaling curve: reader --compress 0 and N compressor
#              processes with one worker each slowed to BENCH_RATE (--workers 1
#              --rate-limit), for each N in BENCH_SCALE, on a generated volume of
#              N x BENCH_SCALE_SIZE; efficiency MB/s(N) / (N x MB/s(first N)) and
#              the knee, the first N below 0.9
#   reader     one reader's cap: reader --compress 0 and BENCH_FLEET_COMPRESSORS
#              unthrottled compressors; the reader process's own CPU-s per GB of the
#              image and the GB/s one reader core could feed (1 / that)
#   sweep      one embedded backup per chunk size, chunks handed over as between
#              machines (--data-plane http)
#   tree       the same peers and tar | zstd on a BENCH_TREE_FILES-file tree
#              (scripts/bench/tree.sh), restic's unchanged re-backup too, and
#              bulkctl's first and unchanged backups and the repository's
#              growth (issue 20's targets)
#   treescale  a generated tree of small files of each BENCH_TREE_SCALE size
#              (scripts/bench/tree.sh): backup, unchanged backup and restore through
#              a process fleet, files/s and every process's peak RSS (issue 20)
#   memory     peak RSS of a backup (embedded, and each process of the fleet) of
#              generated volumes without zero regions of each BENCH_MEM_SIZES size
#   maintenance  a repository of BENCH_MAINT_CHUNKS 4 KiB chunks (a generated volume
#              without zeros, backed up with --chunk-size 4KiB, its first tenth
#              rewritten and backed up again, the first snapshot forgotten):
#              bulkctl prune (deleting the tenth only the forgotten snapshot named)
#              and bulkctl check --read-data, each one run, against that backup
#   go         the pkg/chunk micro-benchmarks (Seal per level and size, Sum, Open)
#
# Every command is timed whole under /usr/bin/time (wall, peak RSS, CPU);
# bulkctl --json also reports the job's own seconds (the "MB/s (job)"
# column). Every measurement runs BENCH_RUNS times and the fastest run is
# reported: other work on a shared machine only adds time. results.json keeps
# every run's time and the median.
#
# Output: one Markdown table on stdout and in $BENCH_DIR/results.md (with the
# issue's targets, notes and the Go benchmarks), the same as JSON in
# $BENCH_DIR/results.json, logs in $BENCH_DIR/logs/. See docs/benchmarks.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
	: "${BENCH_SIZE:=256MiB}" "${BENCH_RUNS:=1}" "${BENCH_SWEEP:=4 16}" "${BENCH_SCALE_SIZE:=16MiB}"
	: "${BENCH_MEM_SIZES:=512MiB 1GiB}" "${BENCH_TREE_FILES:=2000}" "${BENCH_MAINT_CHUNKS:=5000}"
	: "${BENCH_TREE_SCALE:=2000 20000}"
fi
BENCH_DIR=${BENCH_DIR:-$ROOT/.bench}
BENCH_SIZE=${BENCH_SIZE:-2GiB}
BENCH_VOL=${BENCH_VOL:-}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_DROP_CACHES=${BENCH_DROP_CACHES:-0}
if [[ $BENCH_DROP_CACHES == 1 ]]; then
	BENCH_CACHE=${BENCH_CACHE:-cold}
else
	BENCH_CACHE=${BENCH_CACHE:-warm}
fi
BENCH_SECTIONS=${BENCH_SECTIONS:-volume encryption processes scaling reader sweep tree treescale memory maintenance go}
BENCH_MAINT_CHUNKS=${BENCH_MAINT_CHUNKS:-100000}
BENCH_PEERS=${BENCH_PEERS-restic borg}
BENCH_RESTIC=${BENCH_RESTIC:-}
BENCH_RESTIC_VERSION=${BENCH_RESTIC_VERSION:-v0.18.1}
BENCH_COMPRESSORS=${BENCH_COMPRESSORS:-}
BENCH_FLEET_COMPRESSORS=${BENCH_FLEET_COMPRESSORS:-2}
BENCH_SCALE=${BENCH_SCALE:-1 2 4 8 16}
BENCH_RATE=${BENCH_RATE:-4MiB}
BENCH_SCALE_SIZE=${BENCH_SCALE_SIZE:-32MiB}
BENCH_SWEEP=${BENCH_SWEEP:-1 2 4 8 16 32}
BENCH_MEM_SIZES=${BENCH_MEM_SIZES:-1GiB 8GiB}
BENCH_TREE_FILES=${BENCH_TREE_FILES:-100000}
BENCH_TREE_SCALE=${BENCH_TREE_SCALE:-100000 2000000}

BIN=$ROOT/bin
LOGS=$BENCH_DIR/logs
ROWS=$BENCH_DIR/rows.jsonl   # one JSON object per table row (add_row)
NOTES=$BENCH_DIR/notes.txt   # lines printed under the table (note)
GO_BENCH=$BENCH_DIR/go-bench.txt
WARM=()                      # inputs of the next measurement, for prepare_cache

# shellcheck source=scripts/bench/lib.sh
source "$ROOT/scripts/bench/lib.sh"
# shellcheck source=scripts/bench/fleet.sh
source "$ROOT/scripts/bench/fleet.sh"
# shellcheck source=scripts/bench/tree.sh
source "$ROOT/scripts/bench/tree.sh"
# shellcheck source=scripts/bench/report.sh
source "$ROOT/scripts/bench/report.sh"

# What a backup row is compared with: each baseline's row on the same data.
VS_VOL='{"zstd":"vol/zstd","restic":"vol/restic","borg":"vol/borg","ceiling":"vol/ceiling"}'
VS_RESTORE='{"zstd":"vol/zstd-d"}'

BULK_FLAGS=()
[[ -n $BENCH_COMPRESSORS ]] && BULK_FLAGS+=(--compressors "$BENCH_COMPRESSORS")

# --- setup ------------------------------------------------------------------

HAVE_RESTIC=0
HAVE_BORG=0
RESTIC=
RESTIC_VERSION=n/a
BORG_VERSION=n/a

# setup_tools installs what is missing: zstd (the baseline), /usr/bin/time
# (peak RSS), jq (the report) are required; the peers are optional, each
# skipped with a note when it cannot be installed.
setup_tools() {
	ensure_tool zstd zstd || die "zstd is required (the baseline) and could not be installed"
	ensure_tool /usr/bin/time time || die "/usr/bin/time is required (peak RSS) and could not be installed"
	ensure_tool jq jq || die "jq is required (the report) and could not be installed"
	local peer
	for peer in $BENCH_PEERS; do
		case $peer in
		restic) setup_restic ;;
		borg) setup_borg ;;
		*) die "BENCH_PEERS: unknown peer $peer (want restic, borg)" ;;
		esac
	done
}

# setup_restic: BENCH_RESTIC, else restic on PATH, else Debian's (0.14 has
# --compression), else a newer one built from the Go module proxy.
setup_restic() {
	if [[ -n $BENCH_RESTIC ]]; then
		RESTIC=$BENCH_RESTIC
	elif command -v restic >/dev/null 2>&1 || apt_install restic; then
		RESTIC=$(command -v restic)
	else
		RESTIC=$(build_restic "$BENCH_RESTIC_VERSION") || RESTIC=
	fi
	if [[ -z $RESTIC ]] || ! "$RESTIC" version >/dev/null 2>&1; then
		note "restic: not installed (apt-get and the Go module build failed; see logs/); its rows are missing."
		return
	fi
	RESTIC_VERSION=$("$RESTIC" version | awk '{ print $2 }')
	if ! "$RESTIC" backup --help 2>&1 | grep -q -- '--compression'; then
		note "restic $RESTIC_VERSION has no --compression (0.14 or newer needed): restic skipped."
		return
	fi
	HAVE_RESTIC=1
}

setup_borg() {
	if ! ensure_tool borg borgbackup; then
		note "Borg: not installed (apt-get install borgbackup failed; see logs/); its rows are missing."
		return
	fi
	BORG_VERSION=$(borg --version | awk '{ print $2 }')
	HAVE_BORG=1
}

build() {
	log "building bin/: bulkctl, coordinator, reader, compressor, mkvolume, mkcorpus"
	go build -o "$BIN/" ./cmd/... ./scripts/mkvolume ./scripts/mkcorpus
}

VOL=
VOL_BYTES=0
VOL_DATA=

# corpus_stamp: a digest of scripts/mkcorpus, kept beside each cached image
# and tree (NAME.stamp), so that a change to how they are made rebuilds them.
corpus_stamp() { cat "$ROOT"/scripts/mkcorpus/*.go | sha256sum | cut -c1-16; }

# make_volume builds the ext4 image once (scripts/mkcorpus image); later runs
# reuse it while scripts/mkcorpus is unchanged (corpus_stamp). BENCH_VOL
# names another image instead.
make_volume() {
	if [[ -n $BENCH_VOL ]]; then
		VOL=$BENCH_VOL
		VOL_DATA="$(basename "$VOL")"
		[[ -s $VOL ]] || die "BENCH_VOL=$VOL: no such file"
	else
		VOL=$BENCH_DIR/ext4-$BENCH_SIZE-seed$BENCH_SEED.img
		VOL_DATA="ext4 $BENCH_SIZE"
		if [[ -s $VOL && $(cat "$VOL.stamp" 2>/dev/null) == "$(corpus_stamp)" ]]; then
			log "reusing $VOL"
		else
			log "building the $BENCH_SIZE ext4 image $VOL (scripts/mkcorpus image)"
			rm -f "$VOL" "$VOL.stamp"
			"$BIN/mkcorpus" image -size "$BENCH_SIZE" -seed "$BENCH_SEED" -o "$VOL" 2>&1 | sed 's/^/  /' >&2
			corpus_stamp >"$VOL.stamp"
		fi
	fi
	VOL_BYTES=$(stat -c %s "$VOL")
	local desc="Volume: $VOL_DATA, $VOL_BYTES bytes"
	if command -v dumpe2fs >/dev/null 2>&1 && dumpe2fs -h "$VOL" >"$LOGS/dumpe2fs.txt" 2>/dev/null; then
		desc+=", ext4 $(awk -F: '/^Block count/ { n = $2 } /^Free blocks/ { f = $2 } END { printf "%.1f%% free", 100 * f / n }' "$LOGS/dumpe2fs.txt")"
	fi
	if [[ -s $VOL.manifest ]]; then
		desc+=$(awk -F'\t' -v size="$VOL_BYTES" -v m="$VOL.manifest" '{ b[$1] += $2; n++ } END {
			printf ", %d files: ", n
			split("binary library source doc log compressed", order, " ")
			for (i = 1; i <= 6; i++) { printf "%s%s %.1f%%", sep, order[i], 100 * b[order[i]] / size; sep = ", " }
			printf " of the image (manifest: %s)", m }' "$VOL.manifest")
	fi
	note "$desc."
}

# --- the volume -------------------------------------------------------------

fresh_zstd_restored() { rm -f "$BENCH_DIR"/vol.zstd-restored.*; }

# The baseline: one well-tuned compressor on all cores of this machine,
# reading and writing the same disk. zstd -1 is the level closest to our
# default (klauspost zstd "fastest"). zstd writes through the page cache
# without fsync, while the directory repository fsyncs every chunk.
bench_zstd() {
	local zf=$BENCH_DIR/vol.zst
	WARM=("$VOL")
	measure zstd-compress "$zf" : zstd -q -T0 -1 -c "$VOL"
	add_row vol/zstd "$VOL_DATA" "zstd -T0 -1 -c VOL > file" "$VOL_BYTES" "$(stat -c %s "$M_OUT")" "" '{}'
	WARM=("$M_OUT")
	measure zstd-decompress "$BENCH_DIR/vol.zstd-restored" fresh_zstd_restored zstd -q -d -c "$M_OUT"
	add_row vol/zstd-d "$VOL_DATA" "zstd -d -c file > out (restore baseline)" "$VOL_BYTES" "" "" '{}'
	rm -f "$zf".* "$BENCH_DIR"/vol.zstd-restored.*
}

# Peers back up SOURCE (the image as one file, or the tree) into a fresh
# repository on the same disk each run; the repository is created before
# the timer starts. restic always encrypts (it has no other mode); Borg runs
# with --encryption none, its fastest, like bulkbackup, which does not
# encrypt. Their caches live under BENCH_DIR, fresh every run, as for a
# first backup.
PEER_REPO=
PEER_CACHE=
fresh_restic() {
	rm -rf "$PEER_REPO" "$PEER_CACHE"
	RESTIC_PASSWORD=bench "$RESTIC" -r "$PEER_REPO" --cache-dir "$PEER_CACHE" init >>"$LOGS/restic-init.log" 2>&1 ||
		die "restic init failed; see $LOGS/restic-init.log"
}
fresh_borg() {
	rm -rf "$PEER_REPO" "$PEER_CACHE"
	BORG_BASE_DIR=$PEER_CACHE borg init --encryption none "$PEER_REPO" >>"$LOGS/borg-init.log" 2>&1 ||
		die "borg init failed; see $LOGS/borg-init.log"
}

# peer_restic SECTION SOURCE BYTES DATA / peer_borg ...: one peer's row.
peer_restic() {
	local section=$1 src=$2 bytes=$3 data=$4
	PEER_REPO=$BENCH_DIR/repo-restic PEER_CACHE=$BENCH_DIR/cache-restic
	WARM=("$src")
	measure "$section-restic" "$LOGS/$section-restic.out" fresh_restic \
		env RESTIC_PASSWORD=bench "$RESTIC" -r "$PEER_REPO" --cache-dir "$PEER_CACHE" \
		backup --compression auto --host bench -q "$src"
	add_row "$section/restic" "$data" "restic $RESTIC_VERSION backup --compression auto" "$bytes" \
		"$(dir_bytes "$PEER_REPO")" "" '{}'
	if [[ $section == tree ]]; then # issue 20: the unchanged tree again, into the same repository
		WARM=("$src" "$PEER_REPO" "$PEER_CACHE")
		local before
		before=$(dir_bytes "$PEER_REPO")
		measure "$section-restic-incr" "$LOGS/$section-restic-incr.out" : \
			env RESTIC_PASSWORD=bench "$RESTIC" -r "$PEER_REPO" --cache-dir "$PEER_CACHE" \
			backup --compression auto --host bench -q "$src"
		add_row "$section/restic-incr" "$data" "restic $RESTIC_VERSION backup, unchanged (into the same repository)" "$bytes" \
			"" "" '{}' "$(jq -cn --argjson g "$((($(dir_bytes "$PEER_REPO") - before) / ${MEASURE_RUNS:-$BENCH_RUNS}))" '{repo_growth_bytes: $g}')"
	fi
	rm -rf "$PEER_REPO" "$PEER_CACHE"
}
peer_borg() {
	local section=$1 src=$2 bytes=$3 data=$4
	PEER_REPO=$BENCH_DIR/repo-borg PEER_CACHE=$BENCH_DIR/cache-borg
	WARM=("$src")
	measure "$section-borg" "$LOGS/$section-borg.out" fresh_borg \
		env BORG_BASE_DIR="$PEER_CACHE" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes \
		borg create --compression zstd,3 "$PEER_REPO::bench" "$src"
	add_row "$section/borg" "$data" "borg $BORG_VERSION create --compression zstd,3" "$bytes" \
		"$(dir_bytes "$PEER_REPO")" "" '{}'
	rm -rf "$PEER_REPO" "$PEER_CACHE"
}

REPO=$BENCH_DIR/repo
RESTORED=$BENCH_DIR/restored.img
SNAP=
# fresh_repo: an empty plaintext repository (backups do not create one).
fresh_repo() {
	rm -rf "$REPO"
	"$BIN/bulkctl" init -r "$REPO" --plaintext >/dev/null
}
fresh_restore() { rm -f "$RESTORED"; }
# empty_repo, empty_enc_repo: remove the chunks, snapshots and headers of
# REPO or ENC_REPO, keeping its config and keys (for a fleet that holds
# them).
empty_repo() { rm -rf "$REPO/chunks" "$REPO/snapshots" "$REPO/headers" "$REPO/writers"; }
empty_enc_repo() { rm -rf "$ENC_REPO/chunks" "$ENC_REPO/snapshots" "$ENC_REPO/headers" "$ENC_REPO/writers"; }

# backup_row ID NAME VS [EXTRA]: the row of the bulkctl backup just measured
# into REPO.
backup_row() {
	add_row "$1" "$VOL_DATA" "$2" "$VOL_BYTES" "$(dir_bytes "$REPO")" "$(jget "$M_OUT" seconds)" "$3" "${4:-"{}"}"
}

# The product's default path on one machine: the whole command, including
# starting the embedded NATS server and fleet, planning, reading,
# compressing, fsyncing each chunk into the directory repository, and
# committing; each run into an empty repository. Then restore (each chunk's
# hash checked, written at its offset, compared with the source afterwards,
# untimed: a fast wrong restore is worthless), verify (every stored chunk
# read back and checked), and an incremental backup of the unchanged image
# into the same repository (read and hash only; nothing new stored).
bench_ours() {
	local first
	WARM=("$VOL")
	measure backup "$LOGS/backup.json" fresh_repo "$BIN/bulkctl" backup "$VOL" -r "$REPO" --json "${BULK_FLAGS[@]}"
	first=$M_WALL
	backup_row vol/backup "bulkctl backup (embedded fleet, defaults)" "$VS_VOL"
	SNAP=$(jget "$M_LAST_OUT" snapshot_id) # the last run's repository is the one left

	WARM=("$REPO")
	measure restore "$LOGS/restore.json" fresh_restore "$BIN/bulkctl" restore "$SNAP" "$RESTORED" -r "$REPO" --json \
		"${BULK_FLAGS[@]}"
	add_row vol/restore "$VOL_DATA" "bulkctl restore (to a file)" "$VOL_BYTES" "" "$(jget "$M_OUT" seconds)" "$VS_RESTORE"
	cmp -s "$VOL" "$RESTORED" || die "restored volume differs from the source: $RESTORED"
	note "bulkctl restore output compared with the source byte for byte: identical."
	rm -f "$RESTORED"

	measure verify "$LOGS/verify.json" : "$BIN/bulkctl" verify "$SNAP" -r "$REPO" --json
	[[ $(jget "$M_OUT" ok) == true ]] || die "verify reported damage; see $M_OUT"
	add_row vol/verify "$VOL_DATA" "bulkctl verify" "$VOL_BYTES" "" "$(jget "$M_OUT" seconds)" "$VS_RESTORE"

	WARM=("$VOL" "$REPO")
	measure incremental "$LOGS/incremental.json" : "$BIN/bulkctl" backup "$VOL" -r "$REPO" --json "${BULK_FLAGS[@]}"
	add_row vol/incr "$VOL_DATA" "bulkctl backup, incremental (unchanged)" "$VOL_BYTES" "" "$(jget "$M_OUT" seconds)" '{}' \
		"{\"speedup_vs_first\":$(jnum "$(div "$first" "$M_WALL")"),\"new_bytes\":$(jnum "$(jget "$M_OUT" new_bytes)")}"
	rm -rf "$REPO"

	# The first backup again with the chunks handed from reader to
	# compressors as across machines, instead of stored by the reader's own
	# workers: the reader holds each chunk and the compressors fetch it from
	# its HTTP data server, or through the embedded NATS server: what the
	# hop costs, same data.
	local plane
	local -A via=([http]="from the reader's HTTP data server" [nats]="through the NATS server")
	for plane in http nats; do
		WARM=("$VOL")
		measure "backup-$plane" "$LOGS/backup-$plane.json" fresh_repo "$BIN/bulkctl" backup "$VOL" -r "$REPO" --json \
			--data-plane "$plane" "${BULK_FLAGS[@]}"
		backup_row "vol/backup-$plane" "bulkctl backup --data-plane $plane (embedded fleet, chunks fetched ${via[$plane]}, as across machines)" "$VS_VOL"
		rm -rf "$REPO"
	done
}

# Encryption (issue 17). The same image backed up into a plaintext and an
# encrypted repository, then restored from each, one after the other in
# this run, so the ratios compare like with like. The encrypted backup
# holds only the coordinator's write key (BULK_WRITE_KEY_FILE), as a
# backup host does: no password to unlock; its chunks are named by an HMAC,
# compressed, then encrypted (AES-256-GCM), its manifest sealed. The
# encrypted restore opens the keys with an age identity (BULK_IDENTITY_FILE)
# and grants the in-process reader the keys of the snapshot's chunks. A
# password (scrypt, work factor 18) costs every command that unlocks with
# it about a second more: measured once, noted apart.
ENC_REPO=$BENCH_DIR/repo-enc
ENC_KEYS=$BENCH_DIR/keys
fresh_enc_repo() {
	rm -rf "$ENC_REPO" "$ENC_KEYS/coordinator.key"
	"$BIN/bulkctl" init -r "$ENC_REPO" --recipient "$(cat "$ENC_KEYS/recipient")" >/dev/null
	BULK_IDENTITY_FILE=$ENC_KEYS/identity "$BIN/bulkctl" key write-key -r "$ENC_REPO" --for coordinator \
		-o "$ENC_KEYS/coordinator.key" >/dev/null
}

# ratio_rows A B: MB/s of row A ÷ MB/s of row B, whole command and job.
ratio_rows() {
	jq -rn --argjson a "$(row_json "$1")" --argjson b "$(row_json "$2")" '
		def f: . * 100 | round / 100 | tostring;
		"\($a.mb_s / $b.mb_s | f)× (\($a.mb_s * 10 | round / 10) ÷ \($b.mb_s * 10 | round / 10) MB/s; job: \(($b.job_s // 0) as $bj | ($a.job_s // 0) as $aj | if $aj > 0 and $bj > 0 then ($bj / $aj | f) + "×" else "n/a" end))"'
}

bench_encryption() {
	local plain_snap enc_snap aesni t0
	mkdir -p "$ENC_KEYS"
	chmod 700 "$ENC_KEYS"
	[[ -s $ENC_KEYS/identity ]] || "$BIN/bulkctl" key identity -o "$ENC_KEYS/identity" >"$ENC_KEYS/recipient"

	WARM=("$VOL")
	measure enc-backup-plain "$LOGS/enc-backup-plain.json" fresh_repo "$BIN/bulkctl" backup "$VOL" -r "$REPO" --json "${BULK_FLAGS[@]}"
	backup_row enc/backup-plain "bulkctl backup, plaintext repository (the encrypted rows' reference)" "$VS_VOL"
	plain_snap=$(jget "$M_LAST_OUT" snapshot_id)
	WARM=("$VOL")
	measure enc-backup "$LOGS/enc-backup.json" fresh_enc_repo env BULK_WRITE_KEY_FILE="$ENC_KEYS/coordinator.key" \
		"$BIN/bulkctl" backup "$VOL" -r "$ENC_REPO" --json "${BULK_FLAGS[@]}"
	add_row enc/backup "$VOL_DATA" "bulkctl backup, encrypted repository (coordinator's write key)" "$VOL_BYTES" \
		"$(dir_bytes "$ENC_REPO")" "$(jget "$M_OUT" seconds)" "$VS_VOL"
	enc_snap=$(jget "$M_LAST_OUT" snapshot_id)

	WARM=("$REPO")
	measure enc-restore-plain "$LOGS/enc-restore-plain.json" fresh_restore "$BIN/bulkctl" restore "$plain_snap" "$RESTORED" \
		-r "$REPO" --json "${BULK_FLAGS[@]}"
	add_row enc/restore-plain "$VOL_DATA" "bulkctl restore, plaintext repository (reference)" "$VOL_BYTES" "" \
		"$(jget "$M_OUT" seconds)" "$VS_RESTORE"
	cmp -s "$VOL" "$RESTORED" || die "restored volume differs from the source: $RESTORED"
	WARM=("$ENC_REPO")
	measure enc-restore "$LOGS/enc-restore.json" fresh_restore env BULK_IDENTITY_FILE="$ENC_KEYS/identity" \
		"$BIN/bulkctl" restore "$enc_snap" "$RESTORED" -r "$ENC_REPO" --json "${BULK_FLAGS[@]}"
	add_row enc/restore "$VOL_DATA" "bulkctl restore, encrypted repository (age identity, grant to the reader)" "$VOL_BYTES" "" \
		"$(jget "$M_OUT" seconds)" "$VS_RESTORE"
	cmp -s "$VOL" "$RESTORED" || die "restored encrypted volume differs from the source: $RESTORED"
	rm -f "$RESTORED"

	# The process fleet with a reader that compresses nothing (--compress
	# 0): every chunk is handed to a compressor process, sealed for the
	# encrypted repository (docs/encryption.md section 3.1), raw for the
	# plaintext one. Each run empties the repository's chunks and
	# snapshots and keeps its config and keys, which the fleet's processes
	# hold.
	local n=$BENCH_FLEET_COMPRESSORS
	fresh_repo
	rm -f "$ENC_KEYS/worker.key"
	BULK_IDENTITY_FILE=$ENC_KEYS/identity "$BIN/bulkctl" key write-key -r "$ENC_REPO" --for worker \
		-o "$ENC_KEYS/worker.key" >/dev/null
	FLEET_READER_ARGS=(--compress 0)
	fleet_up "$n" enc-procs-plain
	WARM=("$VOL")
	fleet_measure enc/procs-plain "$VOL" empty_repo "$REPO"
	add_row enc/procs-plain "$VOL_DATA" "bulkctl backup --nats, reader --compress 0, $n compressors: plaintext repository (raw hand-over)" \
		"$VOL_BYTES" "$(dir_bytes "$REPO")" "$(jget "$M_OUT" seconds)" "$VS_VOL" "$M_FLEET"
	fleet_down
	FLEET_COORDINATOR_ENV=(BULK_WRITE_KEY_FILE="$ENC_KEYS/coordinator.key")
	FLEET_WORKER_ENV=(BULK_WRITE_KEY_FILE="$ENC_KEYS/worker.key")
	fleet_up "$n" enc-procs
	WARM=("$VOL")
	fleet_measure enc/procs "$VOL" empty_enc_repo "$ENC_REPO"
	add_row enc/procs "$VOL_DATA" "bulkctl backup --nats, reader --compress 0, $n compressors: encrypted repository (sealed hand-over)" \
		"$VOL_BYTES" "$(dir_bytes "$ENC_REPO")" "$(jget "$M_OUT" seconds)" "$VS_VOL" "$M_FLEET"
	fleet_down
	FLEET_READER_ARGS=() FLEET_COORDINATOR_ENV=() FLEET_WORKER_ENV=()

	printf 'a password for the benchmark\n' >"$ENC_KEYS/password"
	chmod 600 "$ENC_KEYS/password"
	BULK_IDENTITY_FILE=$ENC_KEYS/identity BULK_NEW_PASSWORD_FILE=$ENC_KEYS/password \
		"$BIN/bulkctl" key add -r "$ENC_REPO" >/dev/null
	t0=$(date +%s.%N)
	BULK_PASSWORD_FILE=$ENC_KEYS/password "$BIN/bulkctl" snapshots -r "$ENC_REPO" >/dev/null
	local pw_s id_s
	pw_s=$(calc "$(date +%s.%N) - $t0" 2)
	t0=$(date +%s.%N)
	BULK_IDENTITY_FILE=$ENC_KEYS/identity "$BIN/bulkctl" snapshots -r "$ENC_REPO" >/dev/null
	id_s=$(calc "$(date +%s.%N) - $t0" 2)
	rm -rf "$ENC_REPO" "$REPO"

	aesni=no
	grep -qw aes /proc/cpuinfo && aesni=yes
	note "Encryption, same run and image (targets ≥ 0.95×): backup encrypted ÷ plaintext $(ratio_rows enc/backup enc/backup-plain); restore encrypted ÷ plaintext $(ratio_rows enc/restore enc/restore-plain); process fleet, every chunk handed over, encrypted (sealed) ÷ plaintext (raw): $(vs_embedded enc/procs enc/procs-plain). CPU AES-NI: $aesni (PCLMULQDQ: $(grep -qw pclmulqdq /proc/cpuinfo && echo yes || echo no), SHA-NI: $(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no)). A command that unlocks the keys with a password (scrypt, work factor 18) took $pw_s s (bulkctl snapshots), with an age identity $id_s s: backup hosts use write keys, restores an identity or pay that second once."
}

# fleet_measure ID SOURCE PREP [REPO]: measure `bulkctl backup --nats` of
# SOURCE (a path on this machine) into REPO (default $REPO) through the
# process fleet that is up, each run after PREP (fresh_repo: into an empty
# repository), its inputs in WARM.
# M_RSS_MIB becomes the largest peak RSS of any one process (the fleet's and
# the client's); M_FLEET is a JSON object for add_row's EXTRA: each
# process's peak RSS in MiB so far (rss_procs) and CPU seconds during the
# fastest run (cpu_procs).
M_FLEET='{}'
fleet_measure() {
	local id=$1 src=$2 prep=$3 repo=${4:-$REPO} rss_procs
	measure "${id//\//-}" "$LOGS/${id//\//-}.json" "$prep" \
		"$BIN/bulkctl" backup "$FLEET_HOST:$src" -r "$repo" --nats "$FLEET_URL" --json
	rss_procs=$(fleet_rss_json)
	M_RSS_MIB=$(jq -n --argjson p "$rss_procs" --argjson c "$M_RSS_MIB" '[$p[], $c] | max')
	M_FLEET=$(jq -cn --argjson r "$rss_procs" --argjson c "$M_CPU_PROCS" '{rss_procs: $r, cpu_procs: $c}')
}

# fleet_backup ID NAME [EXTRA]: a first backup of the image through the
# process fleet that is up, each run into an empty repository, and its row
# (with M_FLEET and EXTRA).
fleet_backup() {
	local id=$1 name=$2 extra=${3:-"{}"}
	WARM=("$VOL")
	fleet_measure "$id" "$VOL" fresh_repo
	backup_row "$id" "$name" "$VS_VOL" "$(jq -cn --argjson a "$M_FLEET" --argjson b "$extra" '$a + $b')"
}

# row_json ID: the row ID of this run as JSON ("" when there is none), with
# mb_s and cpu_s_per_gb as report.sh derives them.
row_json() {
	jq -c --arg id "$1" 'select(.id == $id) | . + {mb_s: (.bytes / 1e6 / .wall_s),
		cpu_s_per_gb: (if .cpu_s == null then null else .cpu_s / (.bytes / 1e9) end)}' "$ROWS" | tail -n 1
}

# vs_embedded ID EMBEDDED: "MB/s A ÷ B = X×, CPU-s per GB C ÷ D = Y×" of
# row ID against row EMBEDDED.
vs_embedded() {
	jq -rn --argjson p "$(row_json "$1")" --argjson e "$(row_json "$2")" '
		def f(d): . * pow(10; d) | round / pow(10; d) | tostring;
		"MB/s \($p.mb_s | f(1)) ÷ \($e.mb_s | f(1)) = \($p.mb_s / $e.mb_s | f(2))×, " +
		"CPU-s per GB \($p.cpu_s_per_gb | f(2)) ÷ \($e.cpu_s_per_gb | f(2)) = \($p.cpu_s_per_gb / $e.cpu_s_per_gb | f(2))×"'
}

# EMBEDDED_ID: the embedded fleet's first backup of the image in this run
# that the process fleet is compared with: vol/backup when the volume
# section ran before, else procs/embedded, measured by embedded_reference.
EMBEDDED_ID=
embedded_reference() {
	if [[ -n $(row_json vol/backup) ]]; then
		EMBEDDED_ID=vol/backup
		return
	fi
	EMBEDDED_ID=procs/embedded
	WARM=("$VOL")
	measure procs-embedded "$LOGS/procs-embedded.json" fresh_repo "$BIN/bulkctl" backup "$VOL" -r "$REPO" --json \
		"${BULK_FLAGS[@]}"
	backup_row "$EMBEDDED_ID" "bulkctl backup (embedded fleet, defaults: the processes' reference)" "$VS_VOL"
	rm -rf "$REPO"
}

# The same backup through separate processes, the deployed topology on one
# machine. With reader --compress 0 every chunk takes the distributed data
# path: the reader holds it, a compressor process fetches it from the
# reader's HTTP data server, compresses and stores it. With the reader's
# default (--compress auto) the reader stores what its own workers have
# room for and the compressors fetch the rest. Each is compared with the
# embedded fleet's backup of the same run (MB/s, and CPU-s per GB of all
# processes). Then the incremental backup through a fresh fleet, so that
# its processes' peak RSS is the incremental's own.
bench_processes() {
	local first n=$BENCH_FLEET_COMPRESSORS counts zero
	embedded_reference
	FLEET_READER_ARGS=(--compress 0)
	fleet_up "$n" procs-compress0
	fleet_backup vol/procs-c0 "bulkctl backup --nats: coordinator, reader --compress 0, $n compressors (processes)" \
		"{\"embedded\":\"$EMBEDDED_ID\"}"
	fleet_down
	FLEET_READER_ARGS=()
	fleet_up "$n" procs
	fleet_backup vol/procs "bulkctl backup --nats: coordinator, reader (--compress auto), $n compressors (processes)" \
		"{\"embedded\":\"$EMBEDDED_ID\"}"
	first=$M_WALL zero=$(jget "$M_OUT" zero_chunks)
	fleet_down
	counts=$(fleet_reader_stopped)
	note "Process fleet ÷ embedded fleet ($EMBEDDED_ID), same run and image, CPU of all processes: reader --compress 0: $(vs_embedded vol/procs-c0 "$EMBEDDED_ID") (targets: MB/s ≥ 0.8×, CPU-s per GB ≤ 1.25×); reader --compress auto: $(vs_embedded vol/procs "$EMBEDDED_ID")$(jq -r --argjson runs "$BENCH_RUNS" --argjson zero "$(jnum "$zero")" '
		if .chunks and $zero != null then "; that reader compressed and stored \(.stored_here) of the \(.chunks - $runs * $zero) non-zero chunks itself (\(.chunks) read in \($runs) run(s)), the compressor processes the rest" else "" end' <<<"$counts")."
	fleet_up "$n" procs-incr
	WARM=("$VOL" "$REPO")
	fleet_measure vol/procs-incr "$VOL" :
	add_row vol/procs-incr "$VOL_DATA" "bulkctl backup --nats, incremental (unchanged)" "$VOL_BYTES" "" \
		"$(jget "$M_OUT" seconds)" '{}' "$(jq -cn --argjson a "$M_FLEET" --argjson s "$(jnum "$(div "$first" "$M_WALL")")" \
			'$a + {speedup_vs_first: $s}')"
	fleet_down
	rm -rf "$REPO"
}

# gen_volume SIZE: GEN_VOL, a generated volume of SIZE without zero
# regions (mkvolume), made once (BENCH_DIR/mem-SIZE-seedN.img, shared by
# the memory and scaling sections); GEN_BYTES its size.
GEN_VOL=
GEN_BYTES=0
gen_volume() {
	GEN_VOL=$BENCH_DIR/mem-$1-seed$BENCH_SEED.img
	if [[ ! -s $GEN_VOL ]]; then
		log "generating $GEN_VOL (mkvolume, no zero regions)"
		"$BIN/mkvolume" -size "$1" -seed "$BENCH_SEED" -mix 35,25,0,15 -o "$GEN_VOL.tmp" >&2
		mv "$GEN_VOL.tmp" "$GEN_VOL"
	fi
	GEN_BYTES=$(stat -c %s "$GEN_VOL")
}

# Scaling, simulated: what this machine's 2 cores cannot show with real
# compressors (each core would be shared by the reader, the NATS server and
# every compressor) it shows with slow ones. Each compressor process runs
# one worker slowed to BENCH_RATE raw bytes per second (--rate-limit: it
# holds its turn until compressing took that long), so N of them take at
# most N x BENCH_RATE, well under what the machine moves; the reader
# (--compress 0) hands every chunk to them. N compressors back up a volume
# of N x BENCH_SCALE_SIZE, generated without zero regions (every chunk goes
# to a compressor), so each point takes about as long and the fixed costs
# of a backup (start, first chunk, commit) weigh the same at every N. A data
# plane that scales keeps MB/s(N) near N x MB/s(1): efficiency 1. The knee
# is the first N below 0.9.
bench_scaling() {
	local n per size data mbs base='' first='' eff knee='' rate effs=() last=''
	per=$(size_bytes "$BENCH_SCALE_SIZE")
	((per % 1048576 == 0)) || die "BENCH_SCALE_SIZE=$BENCH_SCALE_SIZE: want whole MiB"
	rate=$(size_bytes "$BENCH_RATE")
	FLEET_READER_ARGS=(--compress 0)
	FLEET_COMPRESSOR_ARGS=(--workers 1 --rate-limit "$BENCH_RATE")
	for n in $BENCH_SCALE; do
		size=$((n * per / 1048576))MiB
		gen_volume "$size"
		data="mkvolume $size, no zeros"
		fleet_up "$n" "scale-$n"
		WARM=("$GEN_VOL")
		fleet_measure "scale/$n" "$GEN_VOL" fresh_repo
		mbs=$(mbps "$GEN_BYTES" "$M_WALL")
		[[ -n $base ]] || base=$mbs first=$n
		eff=$(calc "$mbs / ($n / $first * $base)" 2)
		add_row "scale/$n" "$data" \
			"processes: reader --compress 0, $n compressor(s), --workers 1 --rate-limit $BENCH_RATE each ($n x $BENCH_SCALE_SIZE)" \
			"$GEN_BYTES" "$(dir_bytes "$REPO")" "$(jget "$M_OUT" seconds)" '{}' \
			"$(jq -cn --argjson a "$M_FLEET" --argjson n "$n" --argjson r "$rate" --argjson e "$eff" \
				'$a + {compressors: $n, rate_limit: $r, efficiency: $e}')"
		fleet_down
		rm -rf "$REPO"
		effs+=("N=$n: $mbs MB/s, $eff")
		if [[ -z $knee ]] && awk -v e="$eff" 'BEGIN { exit !(e < 0.9) }'; then
			knee=$n
		fi
		last=$n
	done
	FLEET_READER_ARGS=() FLEET_COMPRESSOR_ARGS=()
	[[ -n $base ]] || return 0
	if ((rate > 0)); then
		rate="one worker at $BENCH_RATE/s = $(calc "$rate / 1e6" 2) MB/s each"
	else
		rate="one unthrottled worker each (BENCH_RATE=0: what this machine moves)"
	fi
	note "Scaling (simulated: reader --compress 0, N compressor processes with $rate, N x $BENCH_SCALE_SIZE of mkvolume without zeros): MB/s and efficiency MB/s(N) ÷ (N/$first × MB/s($first)): $(
		IFS=';'
		printf '%s' "${effs[*]}" | sed 's/;/; /g'
	). Knee (first N below 0.9): ${knee:-none up to N=$last}."
}

# One reader's cap: a reader that compresses nothing (--compress 0) only
# reads, hashes, holds and serves chunks; with enough unthrottled
# compressors fetching from it, its own CPU per GB of the image says how
# many GB/s one reader core could feed a fleet (the host's disk and network
# aside).
bench_reader() {
	local n=$BENCH_FLEET_COMPRESSORS cpu per_gb chunks zero
	FLEET_READER_ARGS=(--compress 0)
	fleet_up "$n" reader
	fleet_backup reader/compress0 "bulkctl backup --nats: reader --compress 0, $n compressors (one reader's cap)"
	fleet_down
	FLEET_READER_ARGS=()
	cpu=$(jq -r '.reader // empty' <<<"$M_CPU_PROCS")
	[[ -n $cpu ]] || die "reader section: no CPU figure for the reader process"
	per_gb=$(calc "$cpu / ($VOL_BYTES / 1e9)" 3)
	chunks=$(jget "$M_OUT" chunks) zero=$(jget "$M_OUT" zero_chunks)
	jq -c --argjson c "$cpu" --argjson g "$per_gb" \
		'if .id == "reader/compress0" then . + {reader_cpu_s: $c, reader_cpu_s_per_gb: $g,
			reader_core_gb_s: (if $g > 0 then (1 / $g * 100 | round / 100) else null end)} else . end' \
		"$ROWS" >"$ROWS.tmp"
	mv "$ROWS.tmp" "$ROWS"
	note "One reader's cap (reader --compress 0, $n compressors, $VOL_DATA): the reader process used $cpu CPU-s for $(calc "$VOL_BYTES / 1e9" 3) GB of source ($((chunks - zero)) of $chunks chunks non-zero, each read, hashed and fetched by a compressor; zero chunks only read): $per_gb CPU-s per GB, so one reader core could feed about $(div 1 "$per_gb") GB/s."
}

# Chunk size trades per-chunk overhead (a descriptor, a fetch, an fsync'd
# object, a manifest entry, an ack) against parallelism and memory in
# flight. The sweep hands chunks from the reader to the compressors as
# between machines (--data-plane http: held by the reader, fetched from its
# data server), as a fleet of processes does.
bench_sweep() {
	local mib
	for mib in $BENCH_SWEEP; do
		WARM=("$VOL")
		measure "sweep-${mib}MiB" "$LOGS/sweep-${mib}MiB.json" fresh_repo \
			"$BIN/bulkctl" backup "$VOL" -r "$REPO" --json --data-plane http --chunk-size "${mib}MiB" "${BULK_FLAGS[@]}"
		backup_row "sweep/${mib}MiB" "sweep: bulkctl backup --data-plane http --chunk-size ${mib}MiB" "$VS_VOL"
		rm -rf "$REPO"
	done
}

# Memory: peak RSS of a backup should not grow with the volume (chunks in
# flight are bounded). Generated volumes without zero regions, so no chunk
# is skipped and the file has no holes; one run each (peak RSS, not speed,
# is the point), through the embedded fleet and through the processes.
bench_memory() {
	local size vol bytes data rss_procs
	for size in $BENCH_MEM_SIZES; do
		gen_volume "$size"
		vol=$GEN_VOL bytes=$GEN_BYTES
		data="mkvolume $size, no zeros"
		WARM=("$vol")
		MEASURE_RUNS=1 measure "mem-$size" "$LOGS/mem-$size.json" fresh_repo \
			"$BIN/bulkctl" backup "$vol" -r "$REPO" --json "${BULK_FLAGS[@]}"
		add_row "mem/$size/embedded" "$data" "bulkctl backup (embedded fleet)" "$bytes" "$(dir_bytes "$REPO")" \
			"$(jget "$M_OUT" seconds)" '{}'
		rm -rf "$REPO"

		fleet_up "$BENCH_FLEET_COMPRESSORS" "mem-$size"
		MEASURE_RUNS=1 fleet_measure "mem/$size/procs" "$vol" fresh_repo
		rss_procs=$(jq -c .rss_procs <<<"$M_FLEET")
		add_row "mem/$size/procs" "$data" "bulkctl backup --nats, $BENCH_FLEET_COMPRESSORS compressors (largest process)" \
			"$bytes" "$(dir_bytes "$REPO")" "$(jget "$M_OUT" seconds)" '{}' "$M_FLEET"
		note "Memory, $data: peak RSS per process $(jq -c . <<<"$rss_procs") MiB (process fleet); embedded fleet in its row."
		fleet_down
		rm -rf "$REPO"
	done
}

# The in-memory ceiling (target 2): BenchmarkCompressCeiling hashes and
# seals the image's chunks, already in memory, at the same level and chunk
# size with one goroutine per CPU, and nothing else. Its best MB/s becomes a
# row (no RSS or CPU: it runs inside go test, which also loads the image).
bench_ceiling() {
	local out=$LOGS/ceiling.txt best
	log "go test -bench BenchmarkCompressCeiling ./pkg/fleet/ on $VOL"
	BULK_BENCH_VOLUME=$VOL go test -run '^$' -bench '^BenchmarkCompressCeiling$' -benchtime 2x \
		-count "$BENCH_RUNS" ./pkg/fleet/ >"$out" 2>&1 || die "BenchmarkCompressCeiling failed; see $out"
	best=$(awk '/^BenchmarkCompressCeiling/ { for (i = 2; i <= NF; i++) if ($i == "MB/s" && $(i-1) > m) m = $(i-1) } END { print m + 0 }' "$out")
	[[ $best != 0 ]] || die "no MB/s in $out"
	M_WALL=$(calc "$VOL_BYTES / ($best * 1e6)" 3) M_MEDIAN='' M_CPU='' M_RSS_MIB=''
	M_WALLS=[$(awk -v b="$VOL_BYTES" '/^BenchmarkCompressCeiling/ { for (i = 2; i <= NF; i++) if ($i == "MB/s") { printf "%s%.3f", sep, b / ($(i-1) * 1e6); sep = "," } }' "$out")]
	add_row vol/ceiling "$VOL_DATA" "in-memory ceiling: chunk.Sum + Seal, $(nproc) goroutines (Go benchmark)" "$VOL_BYTES" "" "" '{}'
	cat "$out" >>"$GO_BENCH"
}

# The pkg/chunk micro-benchmarks: Seal per level and size, Sum, Open. They
# bound what one compressor core can do; Seal's input (a repeated log line,
# random and zero bytes) compresses far faster than real data.
# Maintenance: prune and check --read-data of a repository of
# BENCH_MAINT_CHUNKS chunks, through the embedded fleet, each one run (a
# second prune would find nothing to do). The backup that filled the
# repository is the baseline. A prune's wall time includes the protocol's
# fixed waits (docs/format.md section 10.6: 15 s before it lists the running
# backups, 45 s after its sweeps); the note gives its working time, from
# the phases' times it records.
bench_maintenance() {
	local chunks=$BENCH_MAINT_CHUNKS vol repo=$BENCH_DIR/maint-repo bytes data first second deleted work
	vol=$BENCH_DIR/maint-$chunks.img
	bytes=$((chunks * 4096))
	log "generating $vol ($chunks chunks of 4 KiB, no zeros)"
	"$BIN/mkvolume" -size "$bytes" -seed "$BENCH_SEED" -mix 0,0,0,1 -o "$vol" >&2
	data="$chunks chunks of 4 KiB (mkvolume, random)"
	maint_repo() { rm -rf "$repo"; }
	WARM=("$vol")
	MEASURE_RUNS=1 measure maint-backup "$LOGS/maint-backup.json" maint_repo \
		"$BIN/bulkctl" backup "$vol" -r "$repo" --chunk-size 4KiB --json "${BULK_FLAGS[@]}"
	add_row maint/backup "$data" "bulkctl backup --chunk-size 4KiB (the baseline)" "$bytes" "$(dir_bytes "$repo")" \
		"$(jget "$M_OUT" seconds)" '{}'
	first=$(jget "$M_LAST_OUT" snapshot_id)
	# A tenth of the chunks change; the first snapshot is forgotten.
	dd if=/dev/urandom of="$vol" bs=4096 count=$((chunks / 10)) conv=notrunc status=none
	second=$("$BIN/bulkctl" backup "$vol" -r "$repo" --chunk-size 4KiB --json "${BULK_FLAGS[@]}" | jq -r .snapshot_id)
	"$BIN/bulkctl" forget "$first" -r "$repo" >&2
	WARM=("$repo")
	no_prep() { :; }
	MEASURE_RUNS=1 measure maint-prune "$LOGS/maint-prune.json" no_prep \
		"$BIN/bulkctl" prune -r "$repo" --json "${BULK_FLAGS[@]}"
	deleted=$(jget "$M_OUT" deleted)
	work=$(jq -r 'def t: (sub("\\.[0-9]+"; "") | fromdateiso8601) + ((capture("\\.(?<f>[0-9]+)") | "0." + .f | tonumber) // 0);
		(.condemned_at | t) - (.started | t) + (.closing_at | t) - (.sweeping_at | t) | . * 100 | round / 100' "$M_OUT" 2>/dev/null || echo "?")
	add_row maint/prune "$data" "bulkctl prune (deleted $deleted chunks)" "$bytes" "$(dir_bytes "$repo")" '' '{}'
	MEASURE_RUNS=1 measure maint-check "$LOGS/maint-check.json" no_prep \
		"$BIN/bulkctl" check -r "$repo" --read-data --json "${BULK_FLAGS[@]}"
	add_row maint/check "$data" "bulkctl check --read-data ($(jget "$M_OUT" read) chunks read back)" "$bytes" "$(dir_bytes "$repo")" '' '{}'
	note "Maintenance, $data: prune deleted $deleted chunks that only a forgotten snapshot named; its wall time includes the protocol's fixed 60 s of waits (marking and sweeping took ${work} s by the times it records); snapshot $second kept."
	rm -rf "$repo" "$vol"
}

bench_go() {
	log "go test -bench ./pkg/chunk/"
	go test -run '^$' -bench . -benchtime 20x ./pkg/chunk/ >>"$GO_BENCH" 2>&1 ||
		note "go test -bench ./pkg/chunk/ failed; output in the Go benchmarks below"
}

# --- main -------------------------------------------------------------------

# meta_json: the machine, the code, the settings and the tool versions.
meta_json() {
	local commit
	commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	git diff --quiet HEAD 2>/dev/null || commit+=" (working tree modified)"
	jq -n \
		--arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg commit "$commit" --arg go "$(go version)" \
		--argjson nproc "$(nproc)" --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
		--arg mem "$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)" --arg kernel "$(uname -sr)" \
		--arg disk "$(df -T "$BENCH_DIR" | awk 'NR == 2 { print $1 " (" $2 ")" }')" \
		--arg zstd "$(zstd --version | grep -o 'v[0-9.]*' | head -n 1)" --arg restic "$RESTIC_VERSION" --arg borg "$BORG_VERSION" \
		--arg vol "$VOL" --argjson vol_bytes "$VOL_BYTES" --arg cache "$BENCH_CACHE" --argjson drop "$DROP_CACHES" \
		--argjson runs "$BENCH_RUNS" --arg sections "$BENCH_SECTIONS" --arg quick "${BENCH_QUICK:-0}" \
		--arg load_start "$LOAD_START" --arg load_end "$(cut -d' ' -f1-3 /proc/loadavg)" \
		--argjson seconds "$((SECONDS - START))" --argjson section_seconds "$SECTION_SECONDS" \
		'{date: $date, commit: $commit, go: $go,
		  machine: {nproc: $nproc, cpu: $cpu, mem_gib: $mem, kernel: $kernel, disk: $disk},
		  versions: {zstd: $zstd, restic: $restic, borg: $borg},
		  settings: {runs: $runs, cache: $cache, quick: $quick, sections: $sections},
		  volume: {path: $vol, bytes: $vol_bytes},
		  drop_caches_possible: ($drop == 1), load_start: $load_start, load_end: $load_end,
		  seconds: $seconds, section_seconds: $section_seconds}'
}

cleanup() { fleet_down; }

main() {
	START=$SECONDS
	mkdir -p "$BENCH_DIR"
	rm -rf "$LOGS"
	mkdir -p "$LOGS"
	: >"$ROWS"
	: >"$NOTES"
	: >"$GO_BENCH"
	trap cleanup EXIT
	trap 'exit 130' INT TERM

	# A BULK_* variable in the caller's environment (BULK_NATS above all)
	# would send the embedded-fleet runs elsewhere or change their settings.
	local v
	for v in $(compgen -e); do
		if [[ $v == BULK_* ]]; then
			log "unsetting $v for the benchmark"
			unset "$v"
		fi
	done

	# Dropping the page cache slows everything else on the machine down,
	# so it is done (and probed, which drops it too) only when asked for.
	case $BENCH_CACHE in
	warm)
		if [[ $BENCH_DROP_CACHES == 1 ]]; then
			die "BENCH_DROP_CACHES=1 with BENCH_CACHE=warm: choose one"
		fi
		;;
	cold)
		check_drop_caches
		((DROP_CACHES)) || die "BENCH_DROP_CACHES=1 (BENCH_CACHE=cold): cannot write /proc/sys/vm/drop_caches here (not root, or not allowed in this VM)"
		;;
	*) die "BENCH_CACHE=$BENCH_CACHE: want warm or cold" ;;
	esac
	if [[ $BENCH_CACHE == warm ]]; then
		note "Warm cache: each run's inputs were read right before it, then sync; the page cache was not dropped (BENCH_DROP_CACHES=1 drops it before each run, as root)."
	else
		note "Cold cache: the page cache was dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before each run."
	fi

	setup_tools
	build
	make_volume

	# Other work on the machine skews every figure; record how busy it was.
	LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
	if awk -v l="${LOAD_START%% *}" -v n="$(nproc)" 'BEGIN { exit !(l + 0 > n / 2) }'; then
		log "warning: load average $LOAD_START on $(nproc) CPUs; other work will skew the figures"
		note "Warning: the machine was busy at the start (load average $LOAD_START on $(nproc) CPUs)."
	fi

	local section t0
	SECTION_SECONDS='{}'
	for section in $BENCH_SECTIONS; do
		t0=$SECONDS
		log "--- section $section"
		case $section in
		volume)
			bench_zstd
			bench_ceiling
			if ((HAVE_RESTIC)); then peer_restic vol "$VOL" "$VOL_BYTES" "$VOL_DATA"; fi
			if ((HAVE_BORG)); then peer_borg vol "$VOL" "$VOL_BYTES" "$VOL_DATA"; fi
			bench_ours
			;;
		encryption) bench_encryption ;;
		processes) bench_processes ;;
		scaling) bench_scaling ;;
		reader) bench_reader ;;
		sweep) bench_sweep ;;
		tree) bench_tree ;;
		treescale) bench_treescale ;;
		memory) bench_memory ;;
		maintenance) bench_maintenance ;;
		go) bench_go ;;
		*) die "BENCH_SECTIONS: unknown section $section" ;;
		esac
		SECTION_SECONDS=$(jq -c --arg s "$section" --argjson t "$((SECONDS - t0))" '. + {($s): $t}' <<<"$SECTION_SECONDS")
	done
	note "× zstd: backups against zstd -T0 -1 (the tree: tar | zstd -T0 -1), restore and verify against zstd -d; × restic, × Borg, × ceiling: against those rows on the same data. Peak RSS of the process rows: the largest single process (each process's in results.json, rss_procs); their CPU s: all processes, the client's included (each fleet process's in cpu_procs); CPU-s per GB: CPU s ÷ source GB (cpu_s_per_gb)."
	note "Each figure is the fastest of $BENCH_RUNS run(s) by wall clock (memory rows: one run); results.json has every run's time and the median."
	note "Load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg). Suite time: $((SECONDS - START)) s."
	META=$(meta_json)
	report
}

main "$@"
