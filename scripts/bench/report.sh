# shellcheck shell=bash
# shellcheck disable=SC2016 # jq programs: $names are jq variables
# report.sh: turns the rows of scripts/bench.sh into results.json and
# results.md (one table, the issue #6 targets, notes). Sourced, not run.
#
# Globals: ROWS (one JSON object per row, from add_row), NOTES, GO_BENCH,
# BENCH_DIR, and META (a JSON object: machine, settings, versions).

# The jq program: derive MB/s, ratio, CPU-s per GB and the comparisons of
# every row, then the targets of issue #6 and of the data plane from the
# rows they name. A comparison is MB/s of the row divided by MB/s of the row
# its "vs" names; a row's "embedded" names the embedded-fleet row the
# process fleet is compared with. Missing rows (a peer not installed, a
# section not run) give null, shown as "-".
REPORT_JQ='
def div(a; b): if a != null and b != null and b != 0 then a / b else null end;
def mbs(s): if s != null and s > 0 then .bytes / 1e6 / s else null end;
(map(. + {mb_s: mbs(.wall_s), mb_s_job: mbs(.job_s), ratio: div(.bytes; .stored_bytes),
  cpu_s_per_gb: div(.cpu_s; .bytes / 1e9)})) as $rows0
| ($rows0 | INDEX(.id)) as $by0
| ($rows0 | map(. as $r | . + {x: (.vs | with_entries(.value = div($r.mb_s; $by0[.value].mb_s)))})) as $rows
| ($rows | INDEX(.id)) as $by
| def r(a; b): div($by[a].mb_s; $by[b].mb_s);
  def t(name; v; op; goal): {target: name, value: v, op: op, goal: goal,
    met: (if v == null then null elif op == ">=" then v >= goal else v <= goal end)};
  def rss_growth(suffix; f):
    [$rows[] | select(.id | startswith("mem/") and endswith(suffix))] | sort_by(.bytes)
    | if length >= 2 then div(.[-1] | f; .[0] | f) else null end;
  def procmax: [(.rss_procs // {})[]] | max;
  def emb(a; f): $by[a] as $p | if $p == null or $p.embedded == null then null
    else div($p | f; $by[$p.embedded] | f) end;
  [
    t("1. backup, embedded fleet ÷ zstd -T0 -1 (throughput)"; r("vol/backup"; "vol/zstd"); ">="; 1.0),
    t("1. backup, embedded fleet ÷ zstd -T0 -1 (compression ratio)"; div($by["vol/backup"].ratio; $by["vol/zstd"].ratio); ">="; 0.95),
    t("1. backup, separate processes ÷ zstd -T0 -1"; r("vol/procs"; "vol/zstd"); ">="; 0.9),
    t("2. backup, embedded fleet ÷ in-memory ceiling"; r("vol/backup"; "vol/ceiling"); ">="; 0.85),
    t("3. restore ÷ zstd -d"; r("vol/restore"; "vol/zstd-d"); ">="; 1.0),
    t("3. verify ÷ restore"; r("vol/verify"; "vol/restore"); ">="; 1.5),
    t("4. backup ÷ restic, volume"; r("vol/backup"; "vol/restic"); ">="; 3),
    t("4. backup ÷ Borg, volume"; r("vol/backup"; "vol/borg"); ">="; 5),
    t("4. backup ÷ restic, tree"; r("tree/backup"; "tree/restic"); ">="; 3),
    t("4. backup ÷ Borg, tree"; r("tree/backup"; "tree/borg"); ">="; 5),
    t("5. 2 ÷ 1 compressors (one rate-limited worker each)"; r("scale/2"; "scale/1"); ">="; 1.8),
    t("6. peak RSS, largest ÷ smallest volume (embedded)"; rss_growth("/embedded"; .peak_rss_mib); "<="; 1.2),
    t("6. peak RSS per process, largest ÷ smallest volume (processes)"; rss_growth("/procs"; procmax); "<="; 1.2),
    t("7. incremental ÷ first backup, volume"; r("vol/incr"; "vol/backup"); ">="; 5),
    t("7. incremental ÷ first backup, tree"; r("tree/incr"; "tree/backup"); ">="; 20),
    t("trees (issue 20): first backup ÷ restic"; r("tree/backup"; "tree/restic"); ">="; 4),
    t("trees (issue 20): unchanged re-backup ÷ restic unchanged"; r("tree/incr"; "tree/restic-incr"); ">="; 3),
    t("trees (issue 20): repository growth of an unchanged re-backup (bytes)"; $by["tree/incr"].repo_growth_bytes; "<="; 10240),
    t("trees (issue 20): peak RSS of any process, 2,000,000 files, backup, unchanged, restore (MiB)";
      [$rows[] | select(.id | startswith("treescale-2000000/")) | .peak_rss_mib] | max; "<="; 500),
    t("data plane: process fleet (reader --compress 0) ÷ embedded fleet (throughput)"; emb("vol/procs-c0"; .mb_s); ">="; 0.8),
    t("data plane: process fleet (reader --compress 0) ÷ embedded fleet (CPU-s per GB)"; emb("vol/procs-c0"; .cpu_s_per_gb); "<="; 1.25),
    t("encryption (issue 17): encrypted ÷ plaintext backup"; r("enc/backup"; "enc/backup-plain"); ">="; 0.95),
    t("encryption (issue 17): encrypted ÷ plaintext restore"; r("enc/restore"; "enc/restore-plain"); ">="; 0.95)
  ] as $targets
| $meta + {rows: $rows, targets: $targets, notes: ($notes | split("\n") | map(select(length > 0))), go_bench: $gobench}
'

# The Markdown of results.json.
REPORT_MD_JQ='
def f(d): if . == null then "-" else (. * pow(10; d) | round / pow(10; d) | tostring) end;
def x: if . == null then "-" else f(2) + "×" end;
"# bulkbackup benchmark, \(.date)\n",
"Machine: \(.machine.nproc) CPUs (\(.machine.cpu)), \(.machine.mem_gib) GiB RAM, \(.machine.kernel); disk: \(.machine.disk). \(.go); zstd \(.versions.zstd); restic \(.versions.restic); Borg \(.versions.borg).",
"Code: \(.commit). Settings: \(.settings | to_entries | map("\(.key)=\(.value)") | join(", ")).\n",
"| data | tool / mode | MB/s | MB/s (job) | ratio | peak RSS MiB | CPU s | × zstd | × restic | × borg | × ceiling |",
"|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
(.rows[] | "| \(.data) | \(.name | gsub("\\|"; "\\|")) | \(.mb_s | f(1)) | \(.mb_s_job | f(1)) | \(.ratio | f(2)) | \(.peak_rss_mib | f(0)) | \(.cpu_s | f(2)) | \(.x.zstd | x) | \(.x.restic | x) | \(.x.borg | x) | \(.x.ceiling | x) |"),
"",
"## Targets of issue #6 and of the data plane (same run, same data)\n",
"| target | measured | goal | met |",
"|---|---:|---:|---|",
(.targets[] | "| \(.target) | \(.value | f(2)) | \(.op) \(.goal) | \(if .met == null then "not measured" elif .met then "yes" else "no" end) |"),
"",
"## Notes\n",
(.notes[] | "- \(.)")
'

report() {
	local md=$BENCH_DIR/results.md json=$BENCH_DIR/results.json gobench
	gobench=$(go_bench_json)
	jq -s --argjson meta "$META" --rawfile notes "$NOTES" --argjson gobench "$gobench" "$REPORT_JQ" "$ROWS" >"$json.tmp"
	mv "$json.tmp" "$json"
	jq -r "$REPORT_MD_JQ" "$json" >"$md"
	cat "$md"
	if [[ -s $GO_BENCH ]]; then
		{
			printf '\n## Go benchmarks (same run)\n\n```\n'
			cat "$GO_BENCH"
			printf '```\n'
		} >>"$md"
	fi
	log "wrote $md and $json"
}

# go_bench_json: the Go benchmark lines as JSON objects {name, mb_per_s, ns_per_op}.
go_bench_json() {
	[[ -s $GO_BENCH ]] || {
		printf '[]'
		return
	}
	awk '/^Benchmark/ {
		mb = "null"; ns = "null"
		for (i = 2; i <= NF; i++) { if ($i == "MB/s") mb = $(i-1); if ($i == "ns/op") ns = $(i-1) }
		printf "%s{\"name\":\"%s\",\"mb_per_s\":%s,\"ns_per_op\":%s}", sep, $1, mb, ns; sep = ","
	} BEGIN { printf "[" } END { printf "]" }' "$GO_BENCH"
}
