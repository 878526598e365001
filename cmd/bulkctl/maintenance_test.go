package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

func TestSubsetFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want float64
		bad  bool
	}{
		{in: "10%", want: 0.1},
		{in: "10", want: 0.1},
		{in: "0.25", want: 0.25},
		{in: "100%", want: 1},
		{in: "2.5%", want: 0.025},
		{in: "0", bad: true},
		{in: "0%", bad: true},
		{in: "101%", bad: true},
		{in: "-5%", bad: true},
		{in: "lots", bad: true},
	}
	for _, tt := range tests {
		var s subsetFlag
		err := s.Set(tt.in)
		switch {
		case tt.bad && err == nil:
			t.Errorf("Set(%q) = %v, want an error", tt.in, float64(s))
		case !tt.bad && err != nil:
			t.Errorf("Set(%q): %v", tt.in, err)
		case !tt.bad && float64(s) != tt.want:
			t.Errorf("Set(%q) = %v, want %v", tt.in, float64(s), tt.want)
		}
	}
}

// TestMaintenanceUsage: prune and check refuse bad command lines before
// they start anything.
func TestMaintenanceUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"prune without a repository", []string{"prune", "-r", ""}, "no repository given"},
		{"prune with arguments", []string{"prune", "-r", "repo", "now"}, "unexpected arguments"},
		{"check with both", []string{"check", "-r", "repo", "--read-data", "--read-data-subset", "10%"}, "give one"},
		{"check with a bad subset", []string{"check", "-r", "repo", "--read-data-subset", "200%"}, "read-data-subset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fails(t, exitUsage, []string{tt.want}, tt.args...)
		})
	}
}

func TestJobSubject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		job  queue.Job
		want string
	}{
		{queue.Job{Kind: queue.KindPrune, Prune: &queue.PruneRequest{Repo: "s3://b/r"}}, "prune s3://b/r"},
		{queue.Job{Kind: queue.KindCheck, Check: &queue.CheckRequest{Repo: "/srv/repo", ReadData: true}}, "check /srv/repo"},
		{queue.Job{Kind: queue.KindBackup, Backup: &queue.BackupRequest{Source: queue.Endpoint{Host: "h", Path: "/p"}, Repo: "/r"}}, "h:/p -> /r"},
	}
	for _, tt := range tests {
		if got := jobSubject(&tt.job); got != tt.want {
			t.Errorf("jobSubject(%s job) = %q, want %q", tt.job.Kind, got, tt.want)
		}
	}
}

// TestMaintenanceEncrypted: in an encrypted repository, forget drops a
// snapshot, a prune counts what only it named, a check finds every
// reference whole, and a check that would read the data is refused,
// saying why; the kept snapshot verifies.
func TestMaintenanceEncrypted(t *testing.T) {
	dir := t.TempDir()
	repo := passwordRepo(t, dir)
	vol := filepath.Join(dir, "v.img")
	var snaps []string
	for seed := range int64(2) {
		if err := volgen.WriteFile(t.Context(), vol, 1<<20, volgen.Options{Seed: 30 + seed, Mix: volgen.Mix{Random: 1}}); err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, backup(t, vol, repo, "--chunk-size", "256KiB").SnapshotID)
	}

	ok(t, "forget", "-r", repo, "--keep-last", "1")
	r := ok(t, "snapshots", "-r", repo, "--json")
	if strings.Contains(r.stdout, snaps[0]) || !strings.Contains(r.stdout, snaps[1]) {
		t.Errorf("after forget --keep-last 1, snapshots lists:\n%s\nwant only %s", r.stdout, snaps[1])
	}
	r = ok(t, "prune", "-r", repo, "--dry-run")
	if want := "unnamed     4 chunks"; !strings.Contains(r.stdout, want) {
		t.Errorf("prune --dry-run says:\n%s\nwant %q: the forgotten snapshot's chunks", r.stdout, want)
	}
	r = ok(t, "check", "-r", repo)
	if want := "1 snapshot checked: 4 chunks named (8 chunks stored, 4 chunks named by none)\nOK"; !strings.Contains(r.stdout, want) {
		t.Errorf("check says:\n%s\nwant %q", r.stdout, want)
	}
	// Reading the data back needs the private key: this process has it
	// (the password), so its in-process coordinator reads the chunks.
	r = ok(t, "check", "-r", repo, "--read-data")
	if want := "; 4 chunks read back"; !strings.Contains(r.stdout, want) {
		t.Errorf("check --read-data says:\n%s\nwant %q", r.stdout, want)
	}
	ok(t, "verify", snaps[1], "-r", repo)

	// A byte changed in a stored chunk: check --read-data names it.
	chunks, err := filepath.Glob(filepath.Join(repo, "chunks", "*", "*"))
	if err != nil || len(chunks) == 0 {
		t.Fatalf("no chunk objects in %s (%v)", repo, err)
	}
	for _, c := range chunks {
		data := mustRead(t, c)
		data[len(data)-1] ^= 0x40
		if err := os.WriteFile(c, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r = fails(t, exitError, []string{"damaged"}, "check", "-r", repo, "--read-data")
	if !strings.Contains(r.stdout, "DAMAGED") {
		t.Errorf("check --read-data of damaged chunks says:\n%s\nwant them named DAMAGED", r.stdout)
	}
}

// TestEncryptedTreeLifecycle: tree snapshots of an encrypted repository,
// stored as directory objects sealed with the metadata key, through their
// life: an unchanged re-backup stores no object but its manifest, a
// changed file stores the objects on its path, forget and prune delete
// the forgotten snapshot's own objects, check reads every object back,
// and the newest snapshot restores whole.
func TestEncryptedTreeLifecycle(t *testing.T) {
	dir := t.TempDir()
	repo := passwordRepo(t, dir)
	src := filepath.Join(dir, "src")
	writeTree(t, src, 120)
	objects := func() int {
		files, err := filepath.Glob(filepath.Join(repo, "chunks", "*", "*"))
		if err != nil {
			t.Fatal(err)
		}
		return len(files)
	}
	first := backup(t, src, repo, "--mode", "files", "--chunk-size", "64KiB")
	n1 := objects()
	again := backup(t, src, repo, "--mode", "files", "--chunk-size", "64KiB")
	if again.UnchangedFiles != 121 || again.NewChunks != 0 || objects() != n1 {
		t.Errorf("unchanged re-backup: %d unchanged files, %d new chunks, %d objects (was %d); want 121, 0, the same",
			again.UnchangedFiles, again.NewChunks, objects(), n1)
	}
	if err := os.WriteFile(filepath.Join(src, "docs/old/notes.txt"), []byte("notes, edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed := backup(t, src, repo, "--mode", "files", "--chunk-size", "64KiB")
	// The new content's chunk, and the root's object, which lists the
	// small docs and docs/old inside it; many/ (120 files) has an object
	// of its own, unchanged.
	if got := objects() - n1; got != 2 {
		t.Errorf("a changed file added %d objects, want 2 (its chunk and the root's listing)", got)
	}

	ok(t, "forget", first.SnapshotID, again.SnapshotID, "-r", repo)
	r := ok(t, "prune", "-r", repo)
	// Deleted: the forgotten snapshots' root listing. Their content chunk
	// stays: it packs the other files too.
	if got := objects(); got != n1+1 || !strings.Contains(r.stdout, "deleted     1 chunk") {
		t.Errorf("after the prune %d objects are left, want %d (1 directory object deleted):\n%s", got, n1+1, r.stdout)
	}
	r = ok(t, "check", "-r", repo, "--read-data")
	if !strings.Contains(r.stdout, "1 snapshot checked") || !strings.Contains(r.stdout, "OK") {
		t.Errorf("check --read-data says:\n%s", r.stdout)
	}
	out := filepath.Join(dir, "out")
	ok(t, "restore", changed.SnapshotID, out, "-r", repo)
	sameTree(t, src, out)
}
