package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTagsAndHosts labels snapshots with --tag and --host, lists them
// with snapshots' filters, restores the newest that matches, and starts
// an incremental backup from the snapshot of the host it names.
func TestTagsAndHosts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src1, src2, repo := filepath.Join(dir, "src1"), filepath.Join(dir, "src2"), plainRepo(t, filepath.Join(dir, "repo"))
	writeTree(t, src1, 3)
	writeTree(t, src2, 4)
	a := backup(t, src1, repo, "--tag", "nightly")
	time.Sleep(10 * time.Millisecond) // distinct times: "latest" goes by time
	if err := os.WriteFile(filepath.Join(src1, "added"), []byte("only in b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := backup(t, src1, repo, "--tag", "weekly,db", "--tag", "db")
	time.Sleep(10 * time.Millisecond)
	c := backup(t, src2, repo, "--host", "web1")
	if !slices.Equal(a.Tags, []string{"nightly"}) || !slices.Equal(b.Tags, []string{"db", "weekly"}) || c.Tags != nil {
		t.Errorf("backup --json tags: %q, %q, %q", a.Tags, b.Tags, c.Tags)
	}

	list := func(args ...string) []string {
		t.Helper()
		r := ok(t, append([]string{"snapshots", "-r", repo, "--json"}, args...)...)
		var entries []snapshotEntry
		if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
			t.Fatalf("snapshots --json: %v", err)
		}
		var ids []string
		for _, e := range entries {
			ids = append(ids, e.ID)
		}
		return ids
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{a.SnapshotID, b.SnapshotID, c.SnapshotID}},
		{[]string{"--tag", "nightly"}, []string{a.SnapshotID}},
		{[]string{"--tag", "nightly", "--tag", "weekly"}, []string{a.SnapshotID, b.SnapshotID}},
		{[]string{"--tag", "weekly,db"}, []string{b.SnapshotID}},
		{[]string{"--tag", "weekly,nightly"}, nil},
		{[]string{"--tag", ""}, []string{c.SnapshotID}},
		{[]string{"--host", "web1"}, []string{c.SnapshotID}},
		{[]string{"--path", src1}, []string{a.SnapshotID, b.SnapshotID}},
		{[]string{"--path", src2 + "/", "--host", "web1"}, []string{c.SnapshotID}},
		{[]string{"--path", src1, "--host", "web1"}, nil},
	} {
		if got := list(tc.args...); !slices.Equal(got, tc.want) {
			t.Errorf("snapshots %q = %q, want %q", tc.args, got, tc.want)
		}
	}
	r := ok(t, "snapshots", "-r", repo, "--tag", "db")
	if !strings.Contains(r.stdout, "TAGS") || !strings.Contains(r.stdout, "db,weekly") || !strings.Contains(r.stdout, "1 snapshot") {
		t.Errorf("snapshots --tag db:\n%s", r.stdout)
	}

	// "latest" among those that match.
	restore := func(out string, args ...string) restoreResult {
		t.Helper()
		r := ok(t, append([]string{"restore", "latest", out, "-r", repo, "--json"}, args...)...)
		var res restoreResult
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("restore --json: %v", err)
		}
		return res
	}
	if res := restore(filepath.Join(dir, "out-a"), "--tag", "nightly"); res.SnapshotID != a.SnapshotID {
		t.Errorf("restore latest --tag nightly restored %s, want %s", res.SnapshotID, a.SnapshotID)
	}
	if _, err := os.Stat(filepath.Join(dir, "out-a", "added")); !os.IsNotExist(err) {
		t.Errorf("the nightly snapshot's restore has b's file (%v)", err)
	}
	if res := restore(filepath.Join(dir, "out-b"), "--source-path", src1, "--path", "added"); res.SnapshotID != b.SnapshotID {
		t.Errorf("restore latest --source-path %s restored %s, want %s", src1, res.SnapshotID, b.SnapshotID)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "out-b", "added")); err != nil || string(got) != "only in b\n" {
		t.Errorf("restored added: %q, %v", got, err)
	}
	fails(t, exitError, []string{"no snapshot", `matches tag "monthly"`}, "restore", "latest", filepath.Join(dir, "out-x"), "-r", repo, "--tag", "monthly")
	fails(t, exitError, []string{"does not match", `host "web1"`}, "restore", a.SnapshotID, filepath.Join(dir, "out-y"), "-r", repo, "--host", "web1")

	// An incremental backup starts from the snapshot of the host it
	// records: web1's, not this machine's.
	if res := backup(t, src2, repo, "--host", "web1"); res.UnchangedFiles != 5 || res.NewFiles != 0 {
		t.Errorf("second backup as web1: %d unchanged, %d new; want 5, 0", res.UnchangedFiles, res.NewFiles)
	}
	if res := backup(t, src2, repo); res.NewFiles != 5 {
		t.Errorf("backup as this host: %d new, want 5 (no parent of this host)", res.NewFiles)
	}
}
