package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/version"
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
// stamped (like the Makefile does) by binaries.
func TestProcessVersion(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	dir := binaries(t)
	want := binVersion
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
