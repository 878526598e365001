package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
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

// TestMaintenanceRefusesEncrypted: prune and check say plainly that they
// do not support an encrypted repository yet and leave it as it was;
// forget works on it.
func TestMaintenanceRefusesEncrypted(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	t.Setenv("BULK_PASSWORD", "")
	t.Setenv("BULK_IDENTITY_FILE", "")
	t.Setenv("BULK_WRITE_KEY_FILE", "")
	t.Setenv("BULK_PASSWORD_FILE", writeSecret(t, dir, "password", "correct horse battery staple\n"))
	ok(t, "init", "-r", repo, "--work-factor", "10")
	vol := writeVolume(t, filepath.Join(dir, "v.img"), 1<<20, 3)
	first := backup(t, vol, repo, "--chunk-size", "256KiB")
	second := backup(t, vol, repo, "--chunk-size", "256KiB")

	fails(t, exitError, []string{"is encrypted", "prune does not support encrypted repositories"}, "prune", "-r", repo)
	fails(t, exitError, []string{"is encrypted", "check does not support encrypted repositories"}, "check", "-r", repo, "--read-data")
	for _, id := range []string{first.SnapshotID, second.SnapshotID} {
		ok(t, "verify", id, "-r", repo)
	}

	ok(t, "forget", "-r", repo, "--keep-last", "1")
	r := ok(t, "snapshots", "-r", repo, "--json")
	if strings.Contains(r.stdout, first.SnapshotID) || !strings.Contains(r.stdout, second.SnapshotID) {
		t.Errorf("after forget --keep-last 1, snapshots lists:\n%s\nwant only %s", r.stdout, second.SnapshotID)
	}
	ok(t, "verify", second.SnapshotID, "-r", repo)
}
