package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/snapdiff"
)

// TestDiffAndFind changes a tree in every way diff tells apart, compares
// its two snapshots, and finds files across them.
func TestDiffAndFind(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src, repo := filepath.Join(dir, "src"), plainRepo(t, filepath.Join(dir, "repo"))
	writeTree(t, src, 6)
	a := backup(t, src, repo, "--tag", "first")

	at := func(p string) string { return filepath.Join(src, p) }
	later := time.Now().Add(time.Hour)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chtimes(at("many/f0001.txt"), later, later)) // touched: read again, same bytes
	must(os.WriteFile(at("many/f0002.txt"), []byte("line X\nline 2\nline 2\n"), 0o644))
	must(os.Chtimes(at("many/f0002.txt"), later, later)) // edited, same size
	must(os.WriteFile(at("many/f0003.txt"), []byte("grown\n"), 0o644))
	must(os.Remove(at("many/f0004.txt")))
	must(os.Chmod(at("many/f0005.txt"), 0o600))
	must(os.Remove(at("notes")))
	must(os.Symlink("many/f0000.txt", at("notes")))
	must(os.Remove(at("many/f0000.txt")))
	must(os.Mkdir(at("many/f0000.txt"), 0o755))
	must(os.WriteFile(at("added.conf"), []byte("new\n"), 0o644))
	b := backup(t, src, repo)

	r := ok(t, "diff", a.SnapshotID, b.SnapshotID, "-r", repo)
	for _, want := range []string{
		"+    added.conf\n",
		"U    many/  (mtime)\n",
		"T    many/f0000.txt/  (file -> dir)\n",
		"U    many/f0001.txt  (mtime)\n",
		"M    many/f0002.txt  (content, mtime)\n",
		"M    many/f0003.txt  (content, mtime; ",
		"-    many/f0004.txt\n",
		"U    many/f0005.txt  (mode)\n",
		"M    notes  (target, mtime)\n",
		"U    ./  (mtime)\n",
		"1 added (4 B), 1 removed (35 B), 3 modified, 4 metadata only, 1 type changed",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("diff does not show %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "docs") {
		t.Errorf("diff shows the unchanged docs:\n%s", r.stdout)
	}
	r = ok(t, "diff", a.SnapshotID, "latest", "-r", repo, "--json")
	var res diffResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if res.Summary == nil || *res.Summary != (snapdiff.Summary{Added: 1, Removed: 1, Modified: 3, Metadata: 4, Type: 1, AddedBytes: 4, RemovedBytes: 35}) ||
		res.From.ID != a.SnapshotID || res.To.ID != b.SnapshotID {
		t.Errorf("diff --json: %+v %+v", res.Summary, res)
	}
	r = ok(t, "diff", b.SnapshotID, b.SnapshotID, "-r", repo)
	if !strings.Contains(r.stdout, "0 added (0 B), 0 removed (0 B), 0 modified, 0 metadata only, 0 type changed") {
		t.Errorf("a snapshot against itself:\n%s", r.stdout)
	}
	fails(t, exitUsage, []string{"want SNAPSHOT1 SNAPSHOT2"}, "diff", a.SnapshotID, "-r", repo)
	v := backup(t, writeVolume(t, filepath.Join(dir, "small.img"), 1<<20, 3), repo)
	fails(t, exitError, []string{"only two trees or two volumes"}, "diff", a.SnapshotID, v.SnapshotID, "-r", repo)

	// find: by name anywhere, anchored at the tree or at the host's root.
	r = ok(t, "find", "f0002.txt", "-r", repo)
	if !strings.Contains(r.stdout, "2 matches in 2 snapshots of 2 searched; 1 volume snapshot skipped") || strings.Count(r.stdout, "many/f0002.txt") != 2 {
		t.Errorf("find f0002.txt:\n%s", r.stdout)
	}
	r = ok(t, "find", "*.conf", "-r", repo)
	if !strings.Contains(r.stdout, "snapshot "+b.SnapshotID) || strings.Contains(r.stdout, "snapshot "+a.SnapshotID) || !strings.Contains(r.stdout, "1 match in 1 snapshot") {
		t.Errorf("find *.conf:\n%s", r.stdout)
	}
	r = ok(t, "find", src+"/many/f0000.txt/", "-r", repo, "--json")
	var found []findResult
	if err := json.Unmarshal([]byte(r.stdout), &found); err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Snapshot.ID != b.SnapshotID || len(found[0].Matches) != 1 || found[0].Matches[0].Type != "dir" {
		t.Errorf("find HOSTPATH/ (directories only): %s", r.stdout)
	}
	r = ok(t, "find", "docs/old/**", "-r", repo, "--tag", "first")
	if !strings.Contains(r.stdout, "1 match in 1 snapshot of 1 searched") || !strings.Contains(r.stdout, "docs/old/notes.txt") {
		t.Errorf("find docs/old/** --tag first:\n%s", r.stdout)
	}
	r = ok(t, "find", "nothing-like-this", "-r", repo)
	if !strings.Contains(r.stdout, "0 matches in 0 snapshots of 2 searched") {
		t.Errorf("find with no match:\n%s", r.stdout)
	}
	fails(t, exitUsage, []string{`"!x"`}, "find", "!x", "-r", repo)
	fails(t, exitUsage, []string{"at least one PATTERN"}, "find", "-r", repo)
}

// TestDiffVolumes compares two backups of a volume of which one chunk
// changed.
func TestDiffVolumes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	img, repo := filepath.Join(dir, "v.img"), plainRepo(t, filepath.Join(dir, "repo"))
	writeVolume(t, img, 3<<20, 5)
	a := backup(t, img, repo, "--chunk-size", "1MiB")
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("changed"), 1<<20+10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b := backup(t, img, repo, "--chunk-size", "1MiB")
	r := ok(t, "diff", a.SnapshotID, b.SnapshotID, "-r", repo)
	if !strings.Contains(r.stdout, "volume: 1 of 3 chunks differ (1 MiB); size 3 MiB -> 3 MiB") {
		t.Errorf("volume diff:\n%s", r.stdout)
	}
}
