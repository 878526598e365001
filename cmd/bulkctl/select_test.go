package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/source"
)

// selectionTree writes a tree with something for every selection flag to
// leave out, under a world-readable root, and returns the paths a backup
// with selectionFlags must list and must not.
func selectionTree(t *testing.T, src string) (listed, left []string) {
	t.Helper()
	writeTree(t, src, 5)
	files := map[string]string{
		"obj/a.o":            "object",
		"obj/keep.o":         "kept by a negation",
		"build/out":          "excluded by the exclude file",
		"sub/build/out":      "not excluded: /build/ is anchored",
		"cache/CACHEDIR.TAG": source.CacheTagSignature + "\n",
		"cache/blob":         "regenerable",
		"big.bin":            strings.Repeat("b", 300<<10),
		"secret.o":           "excluded and unreadable",
		"private/x":          "under an excluded, unreadable directory",
	}
	for p, data := range files {
		full := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Neither may be opened: the file is unreadable, the directory can be
	// neither listed nor entered (so not even stat'ed into).
	if err := os.Chmod(filepath.Join(src, "secret.o"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "private"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "private"), 0o755) })
	listed = []string{".", "obj", "obj/keep.o", "sub/build/out", "cache", "cache/CACHEDIR.TAG", "docs/old/notes.txt", "notes"}
	left = []string{"obj/a.o", "build", "build/out", "cache/blob", "big.bin", "secret.o", "private", "private/x", "repo"}
	return listed, left
}

// selectionFlags writes the exclude file the tree needs and returns the
// backup flags.
func selectionFlagsFor(t *testing.T, dir string) []string {
	t.Helper()
	file := filepath.Join(dir, "excludes")
	if err := os.WriteFile(file, []byte("# build output\r\n/build/\n\nprivate/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"--exclude", "*.o", "--exclude", "!keep.o", "--exclude-file", file, "--exclude-caches", "--exclude-larger-than", "200KiB"}
}

// checkListed checks a snapshot's listing (ls --json output).
func checkListed(t *testing.T, lsJSON string, listed, left []string) {
	t.Helper()
	var entries []manifest.Entry
	if err := json.Unmarshal([]byte(lsJSON), &entries); err != nil {
		t.Fatalf("ls --json: %v", err)
	}
	var paths []string
	for _, e := range entries {
		paths = append(paths, e.Path)
		if e.Warning != "" {
			t.Errorf("%s listed with a warning: %s", e.Path, e.Warning)
		}
	}
	for _, p := range listed {
		if !slices.Contains(paths, p) {
			t.Errorf("%s is not in the snapshot: %q", p, paths)
		}
	}
	for _, p := range left {
		if slices.Contains(paths, p) {
			t.Errorf("%s is in the snapshot, though left out", p)
		}
	}
}

// TestSelectionExcludes backs up a tree, with its repository inside it,
// leaving parts out with every selection flag: what is excluded is not in
// the snapshot, and excluded unreadable entries raise no warning because
// they are never opened. As root, which reads everything, the reader runs
// as an unprivileged user (a process fleet); otherwise in-process.
func TestSelectionExcludes(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		selectionAsNobody(t)
		return
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	listed, left := selectionTree(t, src)
	repo := plainRepo(t, filepath.Join(src, "repo"))
	flags := selectionFlagsFor(t, dir)
	r := ok(t, append([]string{"backup", src, "-r", repo}, flags...)...)
	if !strings.Contains(r.stdout, "excluded 7 entries") || !strings.Contains(r.stdout, "leaves some of it out") {
		t.Errorf("backup output does not count what was left out, or say why files mode:\n%s", r.stdout)
	}
	checkListed(t, ok(t, "ls", "latest", "-r", repo, "--json").stdout, listed, left)
	// The next backup starts from it, and the repository (now holding a
	// snapshot) is still left out.
	res := backup(t, src, repo, flags...)
	if res.Excluded != 7 || res.NewFiles != 0 || res.Warnings != 0 {
		t.Errorf("second backup: %+v, want 7 excluded, 0 new files, no warnings", res)
	}
}

// selectionAsNobody is TestSelectionExcludes for root: the reader runs as
// nobody, for whom secret.o and private/ are unreadable.
func selectionAsNobody(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	shared, readerBin := nobodyReaderDir(t)
	src := filepath.Join(shared, "src")
	listed, left := selectionTree(t, src)
	// The repository lies inside the source (compressors, as root, write
	// it; the reader, as nobody, must leave it out).
	repo := plainRepo(t, filepath.Join(src, "repo"))

	dir := t.TempDir()
	_, url := startCoordinator(t, filepath.Join(dir, "jetstream"))
	reader := startExeWith(t, "reader", readerBin, func(cmd *exec.Cmd) {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}, "--nats", url, "--host", "unpriv", "--log-format", "json", "--compress", "0") // nobody cannot write the repository
	comp := startProc(t, "compressor", "compressor", "--nats", url, "--log-format", "json")
	reader.waitLog(t, "reader serving")
	comp.waitLog(t, "compressor serving")

	flags := selectionFlagsFor(t, dir)
	r := bulkctlProc(t, append([]string{"backup", "unpriv:" + src, "-r", repo, "--nats", url}, flags...)...)
	if r.code != exitOK {
		t.Fatalf("backup: exit %d, want 0 (no warning for what is excluded)\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "excluded 7 entries") {
		t.Errorf("backup output does not count what was left out:\n%s", r.stdout)
	}
	checkListed(t, bulkctlProcOK(t, "ls", "latest", "-r", repo, "--json").stdout, listed, left)

	// Without the excludes, the same reader warns of both.
	r = bulkctlProc(t, "backup", "unpriv:"+src, "-r", plainRepo(t, filepath.Join(dir, "repo2")), "--nats", url)
	if r.code != exitWarnings || !strings.Contains(r.stderr, "secret.o: not readable") || !strings.Contains(r.stderr, "private: directory not listed") {
		t.Errorf("backup without excludes: exit %d, want %d naming secret.o and private\nstderr:\n%s", r.code, exitWarnings, r.stderr)
	}
}

// TestSelectionUsage checks the selection flags' errors.
func TestSelectionUsage(t *testing.T) {
	dir := t.TempDir()
	src, repo := filepath.Join(dir, "src"), plainRepo(t, filepath.Join(dir, "repo"))
	writeTree(t, src, 2)
	fails(t, exitUsage, []string{`--exclude: exclude: invalid pattern "a["`}, "backup", src, "-r", repo, "--exclude", "a[")
	fails(t, exitUsage, []string{"matches nothing"}, "backup", src, "-r", repo, "--exclude", "# x")
	fails(t, exitUsage, []string{"--exclude-file", "no such file"}, "backup", src, "-r", repo, "--exclude-file", filepath.Join(dir, "none"))
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("ok\n\nx//y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fails(t, exitUsage, []string{"line 3", "x//y"}, "backup", src, "-r", repo, "--exclude-file", bad)
	fails(t, exitUsage, []string{"need files mode"}, "backup", src, "-r", repo, "--mode", "volume", "--one-file-system")
	fails(t, exitUsage, []string{"control character"}, "backup", src, "-r", repo, "--tag", "a\tb")
	fails(t, exitUsage, []string{"host"}, "backup", src, "-r", repo, "--host", "no spaces")
	img := writeVolume(t, filepath.Join(dir, "v.img"), 1<<20, 1)
	fails(t, exitError, []string{"v.img is a file", "apply to a directory"}, "backup", img, "-r", repo, "--exclude-caches")
}

// TestProcessScheduleSelection adds a schedule with selection and label
// flags: the coordinator keeps them (patterns read from the exclude file
// here), and show names them.
func TestProcessScheduleSelection(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	testenv.Binaries(t)
	dir := t.TempDir()
	coord, url := startCoordinator(t, filepath.Join(dir, "jetstream"))
	deadline := time.Now().Add(30 * time.Second)
	for bulkctlProc(t, "schedule", "list", "--nats", url).code != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the coordinator's schedule API did not answer within 30s")
		}
		time.Sleep(100 * time.Millisecond) // polling the coordinator
	}
	file := filepath.Join(dir, "excludes")
	if err := os.WriteFile(file, []byte("# caches\n/var/cache/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := bulkctlProcOK(t, "schedule", "add", "home", "--source", "h1:/home", "-r", filepath.Join(dir, "repo"), "--cron", "0 3 * * *",
		"--exclude", "*.tmp", "--exclude-file", file, "--exclude-caches", "--exclude-larger-than", "1GiB", "--one-file-system",
		"--tag", "nightly,home", "--host", "laptop", "--nats", url, "--json")
	var s queue.Schedule
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("schedule add --json output %q: %v", r.stdout, err)
	}
	if !slices.Equal(s.Exclude, []string{"*.tmp", "/var/cache/"}) || !s.ExcludeCaches || s.ExcludeLargerThan != 1<<30 || !s.OneFileSystem ||
		!slices.Equal(s.Tags, []string{"home", "nightly"}) || s.Host != "laptop" {
		t.Errorf("added schedule %+v", s)
	}
	r = bulkctlProcOK(t, "schedule", "show", "home", "--nats", url)
	for _, want := range []string{`leaves out  exclude "*.tmp", exclude "/var/cache/", caches, files over 1073741824 bytes, other filesystems`,
		"labels      tags home, nightly; host laptop"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("schedule show does not say %q:\n%s", want, r.stdout)
		}
	}
	r = bulkctlProc(t, "schedule", "add", "bad", "--source", "h1:/home", "-r", filepath.Join(dir, "repo"), "--cron", "0 3 * * *",
		"--exclude", "x[", "--nats", url)
	if r.code != exitUsage || !strings.Contains(r.stderr, `"x["`) {
		t.Errorf("schedule add with a bad pattern: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	stop(t, coord)
}
