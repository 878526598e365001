package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/version"
	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

// These tests check the command line's conventions, as the Go tools and
// restic keep them: which stream each output goes to, exit statuses, and
// the wording a newcomer meets.

// stream expectations of one invocation: the exit status, and for each
// stream either text it must hold or that it must be empty.
type streams struct {
	code int
	// stdout and stderr must each hold every string listed; "" alone
	// means the stream must be empty.
	stdout, stderr []string
	// stderrLines, if set, is how many lines stderr must have.
	stderrLines int
}

func (w streams) check(t *testing.T, args []string, r result) {
	t.Helper()
	if r.code != w.code {
		t.Errorf("bulkctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, w.code, r.stdout, r.stderr)
	}
	for _, s := range []struct {
		name, got string
		want      []string
	}{{"stdout", r.stdout, w.stdout}, {"stderr", r.stderr, w.stderr}} {
		if len(s.want) == 1 && s.want[0] == "" {
			if s.got != "" {
				t.Errorf("bulkctl %s: %s is not empty:\n%s", strings.Join(args, " "), s.name, s.got)
			}
			continue
		}
		for _, want := range s.want {
			if !strings.Contains(s.got, want) {
				t.Errorf("bulkctl %s: %s does not hold %q:\n%s", strings.Join(args, " "), s.name, want, s.got)
			}
		}
	}
	if w.stderrLines > 0 && strings.Count(r.stderr, "\n") != w.stderrLines {
		t.Errorf("bulkctl %s: stderr has %d lines, want %d:\n%s", strings.Join(args, " "), strings.Count(r.stderr, "\n"), w.stderrLines, r.stderr)
	}
}

var empty = []string{""}

func TestHelpAndUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want streams
	}{
		{"help", []string{"help"}, streams{code: exitOK, stdout: []string{"Usage:", "bulkctl backup SOURCE"}, stderr: empty}},
		{"--help", []string{"--help"}, streams{code: exitOK, stdout: []string{"Usage:"}, stderr: empty}},
		{"-h", []string{"-h"}, streams{code: exitOK, stdout: []string{"Usage:"}, stderr: empty}},
		{"no arguments", nil, streams{code: exitUsage, stdout: empty, stderr: []string{"Usage:"}}},
		{"command --help", []string{"backup", "--help"},
			streams{code: exitOK, stdout: []string{"Usage: bulkctl backup SOURCE -r REPO", "Flags:", "-chunk-size", "-mode"}, stderr: empty}},
		{"command -h after arguments", []string{"restore", "latest", "/tmp/x", "-h"},
			streams{code: exitOK, stdout: []string{"Usage: bulkctl restore SNAPSHOT TARGET...", "-overwrite"}, stderr: empty}},
		{"help command", []string{"help", "backup"},
			streams{code: exitOK, stdout: []string{"Usage: bulkctl backup SOURCE -r REPO", "-chunk-size"}, stderr: empty}},
		{"help subcommand", []string{"help", "schedule", "add"},
			streams{code: exitOK, stdout: []string{"Usage: bulkctl schedule add NAME", "-cron"}, stderr: empty}},
		{"schedule --help", []string{"schedule", "--help"},
			streams{code: exitOK, stdout: []string{"bulkctl schedule add NAME", "bulkctl schedule rm NAME"}, stderr: empty}},
		{"help of an unknown command", []string{"help", "frobnicate"},
			streams{code: exitUsage, stdout: empty, stderr: []string{`unknown command "frobnicate"`}, stderrLines: 1}},
		{"unknown command", []string{"frobnicate", "-r", "repo"},
			streams{code: exitUsage, stdout: empty, stderr: []string{`bulkctl: unknown command "frobnicate"; run 'bulkctl help'` + "\n"}, stderrLines: 1}},
		{"flag before the command", []string{"-r", "repo", "snapshots"},
			streams{code: exitUsage, stdout: empty, stderr: []string{"flag -r before the command", "bulkctl help"}, stderrLines: 1}},
		{"unknown flag", []string{"backup", "src", "-r", "repo", "--frobnicate"},
			streams{code: exitUsage, stdout: empty, stderr: []string{"bulkctl backup: flag provided but not defined: -frobnicate\n",
				"run 'bulkctl help backup' for usage\n"}, stderrLines: 2}},
		{"bad flag value", []string{"backup", "src", "-r", "repo", "--chunk-size", "lots"},
			streams{code: exitUsage, stdout: empty, stderr: []string{"chunk-size", "lots", "bulkctl help backup"}, stderrLines: 2}},
		{"missing argument", []string{"verify", "-r", "repo"},
			streams{code: exitUsage, stdout: empty, stderr: []string{"want one SNAPSHOT", "run 'bulkctl help verify' for usage"}, stderrLines: 2}},
		{"schedule without a command", []string{"schedule"},
			streams{code: exitUsage, stdout: empty, stderr: []string{"want a schedule command", "bulkctl help schedule"}, stderrLines: 2}},
		{"unknown schedule command", []string{"schedule", "frob"},
			streams{code: exitUsage, stdout: empty, stderr: []string{`unknown schedule command "frob"`, "bulkctl help schedule"}, stderrLines: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.want.check(t, tt.args, bulkctl(t, tt.args...))
		})
	}
}

// TestEveryCommandHasHelp: each command and schedule subcommand answers
// --help with its own synopsis and flags on stdout, exit 0.
func TestEveryCommandHasHelp(t *testing.T) {
	t.Parallel()
	names := slices.Sorted(maps.Keys(commands))
	for _, sub := range []string{"add", "list", "show", "pause", "resume", "rm"} {
		names = append(names, "schedule "+sub)
	}
	for _, name := range names {
		if name == "schedule" {
			continue // its own usage, checked in TestHelpAndUsage
		}
		args := append(strings.Fields(name), "--help")
		streams{code: exitOK, stdout: []string{"Usage: bulkctl " + name + " ", "Flags:", "-repo"}, stderr: empty}.check(t, args, bulkctl(t, args...))
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--version", "-version", "version"} {
		streams{code: exitOK, stdout: []string{version.String("bulkctl") + "\n"}, stderr: empty}.check(t, []string{arg}, bulkctl(t, arg))
	}
}

// TestProcessVersion runs every binary with --version, as built and
// stamped (like the Makefile does) by testenv.Binaries.
func TestProcessVersion(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	dir := testenv.Binaries(t)
	want := testenv.BinariesVersion(t)
	if want == "" {
		want = `\S+`
	} else {
		want = regexp.QuoteMeta(want)
	}
	for _, bin := range []string{"bulkctl", "coordinator", "reader", "compressor"} {
		t.Run(bin, func(t *testing.T) {
			r := runExe(t, dir+"/"+bin, "--version")
			re := regexp.MustCompile(fmt.Sprintf(`^%s %s \(%s, %s/%s\)\n$`, bin, want, regexp.QuoteMeta(runtime.Version()), runtime.GOOS, runtime.GOARCH))
			if r.code != 0 || !re.MatchString(r.stdout) || r.stderr != "" {
				t.Errorf("%s --version: exit %d, stdout %q, stderr %q; want exit 0 and a line matching %s", bin, r.code, r.stdout, r.stderr, re)
			}
		})
	}
}

// TestProcessHelpStreams checks the streams of the real binary, where
// stdout and stderr are the process's own.
func TestProcessHelpStreams(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	tests := []struct {
		args []string
		want streams
	}{
		{[]string{"help"}, streams{code: exitOK, stdout: []string{"Usage:"}, stderr: empty}},
		{nil, streams{code: exitUsage, stdout: empty, stderr: []string{"Usage:"}}},
		{[]string{"backup", "--help"}, streams{code: exitOK, stdout: []string{"Usage: bulkctl backup", "-chunk-size"}, stderr: empty}},
		{[]string{"x"}, streams{code: exitUsage, stdout: empty, stderr: []string{`bulkctl: unknown command "x"; run 'bulkctl help'`}, stderrLines: 1}},
	}
	for _, tt := range tests {
		tt.want.check(t, tt.args, bulkctlProc(t, tt.args...))
	}
}

func TestPlural(t *testing.T) {
	tests := []struct {
		n    int
		noun string
		want string
	}{
		{0, "chunk", "0 chunks"},
		{1, "chunk", "1 chunk"},
		{2, "snapshot", "2 snapshots"},
		{1, "entry", "1 entry"},
		{3, "entry", "3 entries"},
		{2, "day", "2 days"},
		{2, "hard link", "2 hard links"},
	}
	for _, tt := range tests {
		if got := plural(tt.n, tt.noun); got != tt.want {
			t.Errorf("plural(%d, %q) = %q, want %q", tt.n, tt.noun, got, tt.want)
		}
	}
}

// TestSummaryCounts: the files summary adds up (hard links are counted
// as such), and every count reads in the singular when it is one.
func TestSummaryCounts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src, repo := filepath.Join(dir, "src"), filepath.Join(dir, "repo")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"a.txt": "a\n", "c.txt": "c\n"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(src, "a.txt"), filepath.Join(src, "b.txt")); err != nil {
		t.Fatal(err)
	}

	res := backup(t, src, repo)
	if res.Files != 3 || res.NewFiles != 2 || res.HardLinks != 1 ||
		res.NewFiles+res.ChangedFiles+res.UnchangedFiles+res.HardLinks != res.Files {
		t.Errorf("backup --json: %d files = %d new + %d changed + %d unchanged + %d hard links; want 3 = 2 new + 1 hard link",
			res.Files, res.NewFiles, res.ChangedFiles, res.UnchangedFiles, res.HardLinks)
	}
	r := ok(t, "backup", src, "-r", repo)
	streams{code: exitOK, stdout: []string{"files   3: 0 new, 0 changed, 2 unchanged, 1 hard link;", "(0 B new in 0 chunks)"}}.check(t, nil, r)

	r = ok(t, "snapshots", "-r", repo)
	streams{code: exitOK, stdout: []string{"\n2 snapshots\n"}}.check(t, nil, r)

	out := filepath.Join(dir, "out")
	r = ok(t, "restore", "latest", out, "-r", repo)
	streams{code: exitOK, stdout: []string{"  3 files, "}}.check(t, nil, r)

	if err := syscall.Mkfifo(filepath.Join(src, "pipe"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = bulkctl(t, "backup", src, "-r", repo)
	streams{code: exitWarnings, stdout: []string{"(0 B new in 0 chunks)"}, stderr: []string{"saved with 1 warning ("}}.check(t, nil, r)
	r = bulkctl(t, "restore", "latest", filepath.Join(dir, "out2"), "-r", repo)
	streams{code: exitWarnings, stderr: []string{"restored with 1 warning ("}}.check(t, nil, r)
	r = ok(t, "verify", "latest", "-r", repo)
	if regexp.MustCompile(`\b1 [a-z ]*chunks\b`).MatchString(r.stdout) {
		t.Errorf("verify output counts one chunk in the plural:\n%s", r.stdout)
	}
}

func TestModeString(t *testing.T) {
	tests := []struct {
		typ, special string
		mode         uint32
		want         string
	}{
		{manifest.TypeFile, "", 0o644, "-rw-r--r--"},
		{manifest.TypeDir, "", 0o755, "drwxr-xr-x"},
		{manifest.TypeSymlink, "", 0o777, "lrwxrwxrwx"},
		{manifest.TypeFile, "", 0o4755, "-rwsr-xr-x"},
		{manifest.TypeFile, "", 0o4644, "-rwSr--r--"},
		{manifest.TypeFile, "", 0o2755, "-rwxr-sr-x"},
		{manifest.TypeFile, "", 0o2644, "-rw-r-Sr--"},
		{manifest.TypeDir, "", 0o1777, "drwxrwxrwt"},
		{manifest.TypeDir, "", 0o1770, "drwxrwx--T"},
		{manifest.TypeFile, "", 0o7000, "---S--S--T"},
		{manifest.TypeFile, "", 0, "----------"},
		{manifest.TypeSpecial, manifest.SpecialFIFO, 0o600, "prw-------"},
		{manifest.TypeSpecial, manifest.SpecialSocket, 0o755, "srwxr-xr-x"},
		{manifest.TypeSpecial, manifest.SpecialChar, 0o660, "crw-rw----"},
		{manifest.TypeSpecial, manifest.SpecialBlock, 0o660, "brw-rw----"},
		{manifest.TypeSpecial, "", 0o644, "?rw-r--r--"}, // a snapshot older than the kind
	}
	for _, tt := range tests {
		if got := modeString(manifest.Entry{Type: tt.typ, Special: tt.special, Mode: tt.mode}); got != tt.want {
			t.Errorf("modeString(%s %q %o) = %q, want %q", tt.typ, tt.special, tt.mode, got, tt.want)
		}
	}
}

func TestOwnerNames(t *testing.T) {
	n := newOwnerNames()
	calls := 0
	n.lookupUser = func(id string) (string, error) {
		calls++
		if id == "0" {
			return "root", nil
		}
		return "", user.UnknownUserIdError(7)
	}
	n.lookupGroup = func(id string) (string, error) { return "", user.UnknownGroupIdError(id) }
	if got := n.user(0); got != "root" {
		t.Errorf("user(0) = %q, want root", got)
	}
	if got := n.user(4242); got != "4242" {
		t.Errorf("user(4242) = %q, want the number", got)
	}
	if got := n.group(0); got != "0" {
		t.Errorf("group(0) = %q, want the number when no group resolves", got)
	}
	n.user(0)
	n.user(4242)
	if calls != 2 {
		t.Errorf("%d lookups for two IDs asked twice each, want 2 (cached)", calls)
	}
}

// TestLsAndPaths: ls reads like ls -l, and paths are taken as the user
// knows them: relative to the backed-up directory, or as on the host.
func TestLsAndPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src, repo := filepath.Join(dir, "src"), filepath.Join(dir, "repo")
	for _, d := range []string{"usr/share/doc/x", "tmp"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(src, "usr/share/doc/x/README"), []byte("read me\n"), 0o644))
	must(os.WriteFile(filepath.Join(src, "setuid"), []byte("#!/bin/true\n"), 0o755))
	must(syscall.Chmod(filepath.Join(src, "setuid"), 0o4755))
	must(syscall.Chmod(filepath.Join(src, "tmp"), 0o1777))
	must(os.Symlink("usr/share/doc/x/README", filepath.Join(src, "readme")))
	must(os.Link(filepath.Join(src, "usr/share/doc/x/README"), filepath.Join(src, "z-hard")))
	must(syscall.Mkfifo(filepath.Join(src, "pipe"), 0o600))
	fi, err := os.Stat(filepath.Join(src, "setuid"))
	must(err)
	st := fi.Sys().(*syscall.Stat_t)
	owner, group := strconv.Itoa(int(st.Uid)), strconv.Itoa(int(st.Gid))
	if u, err := user.LookupId(owner); err == nil {
		owner = u.Username
	}
	if g, err := user.LookupGroupId(group); err == nil {
		group = g.Name
	}
	if r := bulkctl(t, "backup", src, "-r", repo); r.code != exitWarnings { // the FIFO
		t.Fatalf("backup: exit %d, want %d (a FIFO skipped)\n%s", r.code, exitWarnings, r.stderr)
	}

	r := ok(t, "ls", "latest", "-r", repo)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) == 0 || !regexp.MustCompile(`^MODE\s+OWNER\s+GROUP\s+SIZE\s+MODIFIED\s+NAME$`).MatchString(lines[0]) {
		t.Errorf("ls: no header line:\n%s", r.stdout)
	}
	want := map[string]string{ // name column -> mode string
		".":                                "drwxr-xr-x",
		"setuid":                           "-rwsr-xr-x",
		"tmp":                              "drwxrwxrwt",
		"readme -> usr/share/doc/x/README": "lrwxrwxrwx",
		"z-hard (hard link of usr/share/doc/x/README)": "-rw-r--r--",
		"usr/share/doc/x/README":                       "-rw-r--r--",
	}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 7 {
			t.Errorf("ls line %q: want mode, owner, group, size, date, time, name", line)
			continue
		}
		if f[1] != owner || f[2] != group {
			t.Errorf("ls line %q: owner %s group %s, want %s %s", line, f[1], f[2], owner, group)
		}
		name := strings.Join(f[6:], " ")
		if strings.HasPrefix(name, "pipe") && f[0] != "prw-------" {
			t.Errorf("ls line %q: mode %s, want prw-------", line, f[0])
		}
		if m, ok := want[name]; ok {
			if f[0] != m {
				t.Errorf("ls line %q: mode %s, want %s", line, f[0], m)
			}
			delete(want, name)
		}
	}
	if len(want) > 0 {
		t.Errorf("ls does not list %v:\n%s", want, r.stdout)
	}

	r = ok(t, "ls", "latest", "-r", repo, "--json")
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	var entries []manifest.Entry
	if err := dec.Decode(&entries); err != nil || len(entries) != 11 || dec.More() {
		t.Errorf("ls --json: %d entries (%v), more documents %v; want one array of 11 entries:\n%s", len(entries), err, dec.More(), r.stdout)
	}

	hostPath := filepath.Join(src, "usr/share/doc/x")
	for _, p := range []string{"usr/share/doc/x", hostPath, hostPath + "/"} {
		r = ok(t, "ls", "latest", p, "-r", repo)
		if n := strings.Count(r.stdout, "\n"); n != 3 || !strings.Contains(r.stdout, " usr/share/doc/x/README\n") {
			t.Errorf("ls latest %s: %d lines, want the header, the directory and its README:\n%s", p, n, r.stdout)
		}
	}
	out := filepath.Join(dir, "out")
	ok(t, "restore", "latest", out, "-r", repo, "--path", hostPath+"/README")
	if got, err := os.ReadFile(filepath.Join(out, "usr/share/doc/x/README")); err != nil || string(got) != "read me\n" {
		t.Errorf("restore --path %s/README: %q, %v", hostPath, got, err)
	}
	// The host path less its leading "/" (as from a careless copy) names
	// nothing: the error says which path to use.
	fails(t, exitError, []string{"relative to the backed-up directory " + src, `use "usr/share/doc/x"`},
		"restore", "latest", filepath.Join(dir, "out2"), "-r", repo, "--path", strings.TrimPrefix(hostPath, "/")+"/../x/")
}

// TestVerifyTree: verify --compare works on trees (against the source and
// a restore of it), names each difference by path, and a damaged chunk
// names the files it holds, in text and --json.
func TestVerifyTree(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src, repo, out := filepath.Join(dir, "src"), filepath.Join(dir, "repo"), filepath.Join(dir, "out")
	writeTree(t, src, 20)
	res := backup(t, src, repo)
	ok(t, "restore", "latest", out, "-r", repo)
	for _, tree := range []string{src, out} {
		r := ok(t, "verify", "latest", "-r", repo, "--compare", tree)
		streams{code: exitOK, stdout: []string{"compared with " + tree, "\nOK\n"}, stderr: empty}.check(t, nil, r)
	}

	// One difference in the restored tree: named by path, in text and JSON.
	if err := os.Chmod(filepath.Join(out, "docs/old/notes.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := bulkctl(t, "verify", "latest", "-r", repo, "--compare", out)
	streams{code: exitError, stdout: []string{"DIFFERS docs/old/notes.txt: mode 0600, the snapshot has 0644\n"},
		stderr: []string{"1 difference from " + out}, stderrLines: 1}.check(t, nil, r)
	r = bulkctl(t, "verify", "latest", "-r", repo, "--compare", out, "--json")
	var vr verifyResult
	if err := json.Unmarshal([]byte(r.stdout), &vr); err != nil || r.code != exitError || vr.OK ||
		len(vr.Differences) != 1 || vr.Differences[0] != (treeDifference{Path: "docs/old/notes.txt", Difference: "mode 0600, the snapshot has 0644"}) {
		t.Errorf("verify --compare --json: exit %d, %+v (%v); want one difference at docs/old/notes.txt", r.code, vr, err)
	}

	// A damaged chunk names its files.
	snap := loadSnapshot(t, repo, res.SnapshotID)
	var victim int
	var files []string
	for i := range snap.Chunks {
		files = files[:0]
		for _, e := range snap.Files {
			if slices.ContainsFunc(e.Content, func(x manifest.Extent) bool { return x.Chunk == i }) {
				files = append(files, e.Path)
			}
		}
		if len(files) > 1 {
			victim = i
			break
		}
	}
	corruptChunk(t, repo, snap.Chunks[victim].Hash)
	r = bulkctl(t, "verify", "latest", "-r", repo)
	want := []string{fmt.Sprintf("DAMAGED chunk %d (%s) of %s", victim, snap.Chunks[victim].Hash, files[0])}
	for _, f := range files {
		want = append(want, "\n        "+f+"\n")
	}
	streams{code: exitError, stdout: want, stderr: []string{fmt.Sprintf("1 damaged chunk holding %d files", len(files))}, stderrLines: 1}.check(t, nil, r)
	r = bulkctl(t, "verify", "latest", "-r", repo, "--json")
	vr = verifyResult{}
	if err := json.Unmarshal([]byte(r.stdout), &vr); err != nil || !slices.Equal(vr.DamagedFiles, files) || !slices.Equal(vr.Damaged, []int{victim}) {
		t.Errorf("verify --json: %+v (%v); want chunk %d damaged, holding %q", vr, err, victim, files)
	}
}

// corruptChunk flips a byte in the middle of the stored chunk hash of a
// directory repository.
func corruptChunk(t *testing.T, repo, hash string) {
	t.Helper()
	p := filepath.Join(repo, "chunks", hash[:2], hash)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x55
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFleetLog: the in-process fleet's service logs stay off the
// terminal. A failed command prints one line, which names the log kept
// for it; a command that succeeds keeps none; --log-file - shows the log
// on stderr, --log-file FILE writes it there.
func TestFleetLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol.img")
	if err := volgen.WriteFile(t.Context(), vol, 2*mib, volgen.Options{Seed: 3, Mix: volgen.Mix{Random: 1}}); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	res := backup(t, vol, repo, "--chunk-size", "1MiB")
	corruptChunk(t, repo, loadSnapshot(t, repo, res.SnapshotID).Chunks[1].Hash)

	logRE := regexp.MustCompile(`\(the in-process fleet's log: (\S+\.log)\)\n$`)
	r := bulkctl(t, "restore", "latest", filepath.Join(dir, "out1"), "-r", repo, "--json")
	streams{code: exitError, stdout: empty, stderr: []string{"bulkctl restore: ", "is corrupt"}, stderrLines: 1}.check(t, nil, r)
	m := logRE.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("the error does not name the fleet's log:\n%s", r.stderr)
	}
	t.Cleanup(func() { os.Remove(m[1]) })
	if data, err := os.ReadFile(m[1]); err != nil || !strings.Contains(string(data), "level=ERROR") {
		t.Errorf("kept log %s: %v, want the reader's error in it:\n%s", m[1], err, data)
	}
	if strings.Contains(r.stderr, "level=") {
		t.Errorf("service log lines on stderr:\n%s", r.stderr)
	}

	r = bulkctl(t, "restore", "latest", filepath.Join(dir, "out2"), "-r", repo, "--json", "--log-file", "-")
	streams{code: exitError, stdout: empty, stderr: []string{"level=ERROR", "is corrupt"}}.check(t, nil, r)
	if logRE.MatchString(r.stderr) {
		t.Errorf("with --log-file -, the error names a kept log:\n%s", r.stderr)
	}

	logFile := filepath.Join(dir, "fleet.log")
	r = bulkctl(t, "restore", "latest", filepath.Join(dir, "out3"), "-r", repo, "--json", "--log-file", logFile)
	streams{code: exitError, stdout: empty, stderr: []string{"is corrupt"}, stderrLines: 1}.check(t, nil, r)
	if data, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(data), "level=ERROR") {
		t.Errorf("--log-file %s: %v, want the reader's error in it:\n%s", logFile, err, data)
	}
}

func TestSessionFinishKeepsLogOnFailure(t *testing.T) {
	t.Parallel()
	open := func(t *testing.T, content string) *session {
		t.Helper()
		d, err := newFleetDir()
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(d.path, fleetLogName))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(content); err != nil {
			t.Fatal(err)
		}
		return &session{tmpDir: d, log: f, logTemp: true}
	}
	failure := errors.New("chunk X is corrupt")
	tests := []struct {
		name    string
		content string
		err     error
		keep    bool
	}{
		{"success", "level=WARN msg=x\n", nil, false},
		{"failure", "level=ERROR msg=x\n", failure, true},
		{"failure, nothing logged", "", failure, false},
		{"warnings", "level=WARN msg=x\n", &exitCodeError{code: exitWarnings, err: failure}, false},
		{"usage", "level=WARN msg=x\n", usageError("bad"), false},
		{"failure with a status", "level=ERROR msg=x\n", &exitCodeError{code: exitError, err: failure}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := open(t, tt.content)
			got := s.finish(tt.err)
			if _, err := os.Stat(s.tmpDir.path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the fleet directory remains (%v)", err)
			}
			m := regexp.MustCompile(`\(the in-process fleet's log: (\S+)\)$`).FindStringSubmatch(fmt.Sprint(got))
			if (m != nil) != tt.keep {
				t.Fatalf("finish(%v) = %v; want the log named: %v", tt.err, got, tt.keep)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("finish(%v) = %v, which does not wrap the command's error", tt.err, got)
			}
			if m != nil {
				data, err := os.ReadFile(m[1])
				if err != nil || string(data) != tt.content {
					t.Errorf("kept log %s: %q, %v; want %q", m[1], data, err, tt.content)
				}
				os.Remove(m[1])
			}
		})
	}
}

func TestBarLine(t *testing.T) {
	pr := queue.Progress{BytesDone: 1234 << 20, BytesTotal: 50 << 30, MBps: 412, ETASeconds: 3725}
	for _, width := range []int{0, 10, 20, 39, 40, 60, 79, 120, 300} {
		line := barLine(pr, width)
		if len(line) > width {
			t.Errorf("width %d: line of %d columns: %q", width, len(line), line)
		}
		if width >= 79 && (!strings.HasPrefix(line, "[") || !strings.Contains(line, "ETA")) {
			t.Errorf("width %d: %q, want a bar and the whole summary", width, line)
		}
	}
	if line := barLine(pr, 200); len(line) > 100 {
		t.Errorf("a wide terminal stretches the bar to %d columns: %q", len(line), line)
	}
}

// TestProgressDraw: on a terminal the bar is redrawn in place at the
// terminal's width, each time erasing the rest of the line.
func TestProgressDraw(t *testing.T) {
	var out strings.Builder
	width := 50
	p := &progress{w: &out, tty: true, width: func() int { return width }}
	running := &queue.Event{State: queue.StateRunning, Progress: queue.Progress{BytesDone: 1 << 20, BytesTotal: 50 << 20, MBps: 10, ETASeconds: 5}}
	p.update(running)
	width = 30 // resized
	p.update(running)
	p.finish()
	draws := strings.Split(out.String(), "\r")[1:]
	if len(draws) != 3 {
		t.Fatalf("output %q: want two draws and a clear", out.String())
	}
	for i, w := range []int{50, 30} {
		line, ok := strings.CutSuffix(draws[i], "\033[K")
		if !ok || len(line) >= w {
			t.Errorf("draw %d at width %d: %q, want under %d columns and the rest of the line erased", i, w, draws[i], w)
		}
	}
	if draws[2] != "\033[K" {
		t.Errorf("finish wrote %q, want the line erased", draws[2])
	}
}

// TestProgressLines: off a terminal, progress is a line per state, and a
// succeeded job's reads as complete; with --json there is none.
func TestProgressLines(t *testing.T) {
	sparse := queue.Progress{BytesDone: 2 << 20, BytesTotal: 50 << 20, MBps: 52}
	events := []*queue.Event{
		{State: queue.StateQueued},
		{State: queue.StateRunning, Message: "scanning h:/src", Progress: sparse},
		{State: queue.StateSucceeded, Progress: sparse},
	}
	var out strings.Builder
	p := &progress{w: &out}
	for _, ev := range events {
		p.update(ev)
	}
	want := "queued\nscanning h:/src\nrunning    2 MiB / 50 MiB  52 MB/s\nsucceeded  50 MiB  52 MB/s\n"
	if out.String() != want {
		t.Errorf("progress lines:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	quiet := newProgress(&out, true)
	for _, ev := range events {
		quiet.update(ev)
	}
	if out.String() != "" {
		t.Errorf("with --json off a terminal, progress printed:\n%s", out.String())
	}
}

// oneJSON fails the test unless out is exactly one JSON document, which
// it decodes into v.
func oneJSON(t *testing.T, what, out string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: stdout is not JSON (%v):\n%s", what, err, out)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		t.Errorf("%s: stdout holds more than one JSON document:\n%s", what, out)
	}
}

// TestJSONOutput: with --json, stdout is the one result object and,
// off a terminal, stderr is silent: with the in-process fleet and with a
// running coordinator (--nats) alike.
func TestJSONOutput(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	testenv.Binaries(t)
	dir := t.TempDir()
	vol := writeVolume(t, filepath.Join(dir, "vol.img"), 3*mib, 5)

	coord, url := startCoordinator(t, filepath.Join(dir, "jetstream"))
	reader := startProc(t, "reader", "reader", "--nats", url, "--host", "jsonhost", "--log-format", "json")
	comp := startProc(t, "compressor", "compressor", "--nats", url, "--workers", "1", "--log-format", "json")
	reader.waitLog(t, "reader serving")
	comp.waitLog(t, "compressor serving")

	for _, fleet := range []struct {
		name       string
		src, out   func(string) string
		extra      []string
		repoSuffix string
	}{
		{"in-process", func(p string) string { return p }, func(p string) string { return p }, nil, "local"},
		{"--nats", func(p string) string { return "jsonhost:" + p }, func(p string) string { return "jsonhost:" + p }, []string{"--nats", url}, "remote"},
	} {
		repo := filepath.Join(dir, "repo-"+fleet.repoSuffix)
		args := append([]string{"backup", fleet.src(vol), "-r", repo, "--json", "--chunk-size", "1MiB"}, fleet.extra...)
		r := bulkctlProc(t, args...)
		var res backupResult
		oneJSON(t, fleet.name+" backup", r.stdout, &res)
		streams{code: exitOK, stderr: empty}.check(t, args, r)
		if res.SourceBytes != 3*mib || res.SnapshotID == "" {
			t.Errorf("%s backup --json: %+v", fleet.name, res)
		}
		out := filepath.Join(dir, "out-"+fleet.repoSuffix+".img")
		args = append([]string{"restore", "latest", fleet.out(out), "-r", repo, "--json"}, fleet.extra...)
		r = bulkctlProc(t, args...)
		var rr restoreResult
		oneJSON(t, fleet.name+" restore", r.stdout, &rr)
		streams{code: exitOK, stderr: empty}.check(t, args, r)
		sameFile(t, vol, out)
	}
	stop(t, comp, reader, coord)
}

// TestImageFileMode: a restored image file gets its source's mode, which
// the snapshot records, not the restore's 0600.
func TestImageFileMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vol := writeVolume(t, filepath.Join(dir, "vol.img"), 256*kib, 9)
	if err := os.Chmod(vol, 0o644); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	res := backup(t, vol, repo, "--chunk-size", "64KiB")
	if m := loadSnapshot(t, repo, res.SnapshotID).FileMode; m == nil || *m != 0o644 {
		t.Errorf("snapshot file_mode %v, want 0644", m)
	}
	out := filepath.Join(dir, "out.img")
	ok(t, "restore", "latest", out, "-r", repo)
	sameFile(t, vol, out)
	if fi, err := os.Stat(out); err != nil || fi.Mode() != 0o644 {
		t.Errorf("restored image: mode %v (%v), want -rw-r--r--", fi.Mode(), err)
	}
}
