# shellcheck shell=bash
# shellcheck disable=SC2034 # globals set here are read by bench.sh
# tree.sh: the file-tree section of scripts/bench.sh. Sourced, not run.
#
# Issue #6 measures the same contenders on a tree of BENCH_TREE_FILES files
# (default 100,000) built by scripts/mkcorpus from this machine's files.
# The baselines are `tar -cf - DIR | zstd -T0 -1`, restic and Borg; bulkctl
# backs the tree up with `--mode files`, measured only when this build's
# `bulkctl backup -h` lists that flag (file mode is being added on another
# branch), so the section runs unchanged before and after it lands.
#
# Globals: BIN, BENCH_DIR, BENCH_TREE_FILES, BENCH_SEED, HAVE_RESTIC,
# HAVE_BORG, and the peer functions of bench.sh (peer_restic, peer_borg).

TREE=
TREE_BYTES=0
TREE_DATA=
VS_TREE='{"zstd":"tree/tar-zstd","restic":"tree/restic","borg":"tree/borg"}'

# make_tree builds the tree once; later runs reuse it while scripts/mkcorpus
# is unchanged (corpus_stamp; mkcorpus renames it into place only when
# complete).
make_tree() {
	TREE=$BENCH_DIR/tree-$BENCH_TREE_FILES-seed$BENCH_SEED
	if [[ -d $TREE && $(cat "$TREE.stamp" 2>/dev/null) == "$(corpus_stamp)" ]]; then
		log "reusing $TREE"
	else
		log "building a $BENCH_TREE_FILES-file tree at $TREE (scripts/mkcorpus tree)"
		rm -rf "$TREE" "$TREE.stamp"
		"$BIN/mkcorpus" tree -files "$BENCH_TREE_FILES" -seed "$BENCH_SEED" -o "$TREE" 2>&1 | sed 's/^/  /' >&2
		corpus_stamp >"$TREE.stamp"
	fi
	TREE_BYTES=$(tree_bytes "$TREE")
	TREE_DATA="tree $BENCH_TREE_FILES files"
	note "Tree: $TREE_DATA, $TREE_BYTES bytes in $(find "$TREE" -type d | wc -l) directories (manifest: $TREE.manifest)."
}

# bulkctl_has_files_mode: this build's bulkctl backs up file trees.
# (-h exits 2, which pipefail would pass on.)
bulkctl_has_files_mode() { { "$BIN/bulkctl" backup -h 2>&1 || true; } | grep -q -- '-mode'; }

# The baseline: the whole tree through tar into one zstd stream, on all
# cores. tar reads files one by one; zstd compresses in parallel.
bench_tree_tar_zstd() {
	WARM=("$TREE")
	# shellcheck disable=SC2016 # $1 is the inner shell's
	measure tree-tar-zstd "$BENCH_DIR/tree.tar.zst" : \
		bash -c 'tar -cf - -C "$1" . | zstd -q -T0 -1 -c' tar-zstd "$TREE"
	add_row tree/tar-zstd "$TREE_DATA" "tar -cf - | zstd -T0 -1" "$TREE_BYTES" "$(stat -c %s "$M_OUT")" "" '{}'
	rm -f "$BENCH_DIR"/tree.tar.zst.*
}

# bulkctl on the tree: a first backup into a fresh repository, then the
# unchanged tree again into the same one (target 7: >= 20x faster).
TREE_REPO=
fresh_tree_repo() {
	rm -rf "$TREE_REPO"
	"$BIN/bulkctl" init -r "$TREE_REPO" --plaintext >/dev/null
}
bench_tree_bulkctl() {
	local first
	TREE_REPO=$BENCH_DIR/repo-tree
	WARM=("$TREE")
	measure tree-backup "$LOGS/tree-backup.json" fresh_tree_repo "$BIN/bulkctl" backup "$TREE" --mode files \
		-r "$TREE_REPO" --json "${BULK_FLAGS[@]}"
	first=$M_WALL
	add_row tree/backup "$TREE_DATA" "bulkctl backup --mode files (embedded fleet)" "$TREE_BYTES" \
		"$(dir_bytes "$TREE_REPO")" "$(jget "$M_OUT" seconds)" "$VS_TREE" "$(files_per_s)"
	WARM=("$TREE" "$TREE_REPO")
	local before
	before=$(dir_bytes "$TREE_REPO")
	measure tree-incremental "$LOGS/tree-incremental.json" : "$BIN/bulkctl" backup "$TREE" --mode files \
		-r "$TREE_REPO" --json "${BULK_FLAGS[@]}"
	# Each run of the measurement adds a snapshot: the growth per run.
	add_row tree/incr "$TREE_DATA" "bulkctl backup --mode files, incremental (unchanged)" "$TREE_BYTES" \
		"" "$(jget "$M_OUT" seconds)" '{"restic":"tree/restic-incr"}' \
		"$(files_per_s | jq -c --argjson s "$(jnum "$(div "$first" "$M_WALL")")" \
			--argjson g "$((($(dir_bytes "$TREE_REPO") - before) / ${MEASURE_RUNS:-$BENCH_RUNS}))" '. + {speedup_vs_first: $s, repo_growth_bytes: $g}')"
	TREE_OUT=$BENCH_DIR/tree-restored
	WARM=("$TREE_REPO")
	measure tree-restore "$LOGS/tree-restore.json" fresh_tree_out "$BIN/bulkctl" restore latest "$TREE_OUT" \
		-r "$TREE_REPO" --json "${BULK_FLAGS[@]}"
	diff -r --no-dereference -q "$TREE" "$TREE_OUT" >/dev/null || die "the restored tree differs from $TREE"
	add_row tree/restore "$TREE_DATA" "bulkctl restore (whole tree)" "$TREE_BYTES" "" \
		"$(jget "$M_OUT" seconds)" '{}' "$(files_per_s)"
	rm -rf "$TREE_REPO" "$TREE_OUT"
}

# files_per_s: the tree's files per second of the measurement just made, as
# a JSON object for add_row's EXTRA.
files_per_s() { jq -cn --argjson f "$(calc "$BENCH_TREE_FILES / $M_WALL" 0)" '{files_per_s: $f}'; }
TREE_OUT=
fresh_tree_out() { rm -rf "$TREE_OUT"; }

bench_tree() {
	make_tree
	bench_tree_tar_zstd
	if ((HAVE_RESTIC)); then peer_restic tree "$TREE" "$TREE_BYTES" "$TREE_DATA"; fi
	if ((HAVE_BORG)); then peer_borg tree "$TREE" "$TREE_BYTES" "$TREE_DATA"; fi
	if bulkctl_has_files_mode; then
		bench_tree_bulkctl
	else
		note "bulkctl on the tree: not measured, this build's \`bulkctl backup\` has no --mode (file mode is not merged yet)."
	fi
}

# treescale: issue 20's scale targets. For each size of BENCH_TREE_SCALE a
# generated tree of that many small files (scripts/mkcorpus tree -small:
# log-like files of 0-4 KiB, 100 to a directory) is backed up, backed up
# unchanged twice and restored through a process fleet (an external
# nats-server, coordinator, reader, compressor; scripts/bench/unchanged-tree.sh
# with RESTORE=1, the coordinator and reader restarted before each step so
# that each peak is that step's own): rows with files/s and every process's
# peak RSS (rss_procs; the row's peak RSS is the largest).
bench_treescale() {
	local n tree w summary line step
	for n in $BENCH_TREE_SCALE; do
		tree=$BENCH_DIR/tree-small-$n-seed$BENCH_SEED
		if [[ -d $tree && $(cat "$tree.stamp" 2>/dev/null) == "$(corpus_stamp)" ]]; then
			log "reusing $tree"
		else
			log "building a $n-file tree of small files at $tree (scripts/mkcorpus tree -small)"
			rm -rf "$tree" "$tree.stamp"
			"$BIN/mkcorpus" tree -small -files "$n" -seed "$BENCH_SEED" -o "$tree" 2>&1 | sed 's/^/  /' >&2
			corpus_stamp >"$tree.stamp"
		fi
		w=$BENCH_DIR/treescale-$n
		summary=$LOGS/treescale-$n.jsonl
		rm -f "$summary"
		log "treescale $n: backup, two unchanged backups and a restore through a process fleet"
		SUMMARY=$summary RESTORE=1 bash "$ROOT/scripts/bench/unchanged-tree.sh" "$tree" "$w" >"$LOGS/treescale-$n.log" 2>&1 ||
			die "treescale $n failed; see $LOGS/treescale-$n.log"
		grep -q "RESTORED TREE DIFFERS" "$LOGS/treescale-$n.log" && die "treescale $n: the restored tree differs from $tree"
		while read -r line; do
			step=$(jq -r .step <<<"$line")
			[[ $step == unchanged-2 ]] && continue # the same as unchanged-1: one row
			M_WALL=$(jq .wall_s <<<"$line")
			M_WALLS="[$M_WALL]" M_MEDIAN='' M_CPU=''
			M_RSS_MIB=$(jq '[.rss_mib[]] | max' <<<"$line")
			add_row "treescale-$n/$step" "$n small files" "bulkctl $step, process fleet: $(jq .files_per_s <<<"$line") files/s" \
				"$(tree_bytes "$tree")" "" "" '{}' \
				"$(jq -c '{files_per_s, rss_procs: .rss_mib} + (if .repo_growth_bytes then {repo_growth_bytes} else {} end)' <<<"$line")"
		done <"$summary"
		rm -rf "$w"
	done
	note "treescale: generated trees of small files ($BENCH_TREE_SCALE files) through a process fleet; peak RSS is the largest process's (each in results.json, rss_procs); files/s in results.json (files_per_s)."
}
