package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// TestProcessScheduleSet edits a schedule with bulkctl against a
// coordinator process: only the values given change, a BULK_REPO in the
// environment does not move it.
func TestProcessScheduleSet(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	testenv.Binaries(t)
	dir := t.TempDir()
	_, url := startCoordinator(t, filepath.Join(dir, "jetstream"))
	repo := filepath.Join(dir, "repo")
	deadline := time.Now().Add(30 * time.Second)
	for bulkctlProc(t, "schedule", "list", "--nats", url).code != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the coordinator's schedule API did not answer within 30s")
		}
		time.Sleep(100 * time.Millisecond) // polling the coordinator
	}
	bulkctlProcOK(t, "schedule", "add", "nightly", "--source", "db1:/dev/sdb", "-r", repo, "--cron", "0 2 * * *", "--nats", url)

	r := runExeEnv(t, filepath.Join(testenv.Binaries(t), "bulkctl"), []string{"BULK_REPO=/elsewhere"},
		"schedule", "set", "nightly", "--cron", "30 3 * * 1-5", "--timezone", "Europe/Berlin", "--level", "better", "--nats", url, "--json")
	if r.code != 0 {
		t.Fatalf("schedule set: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var s queue.Schedule
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("schedule set --json output %q: %v", r.stdout, err)
	}
	if s.Cron != "30 3 * * 1-5" || s.Timezone != "Europe/Berlin" || s.Level != "better" || s.Repo != repo || s.Source.String() != "db1:/dev/sdb" {
		t.Errorf("changed schedule %+v", s)
	}
	r = bulkctlProcOK(t, "schedule", "set", "nightly", "-r", filepath.Join(dir, "repo2"), "--keep-last", "4", "--nats", url)
	if !strings.Contains(r.stdout, "schedule nightly changed") || !strings.Contains(r.stdout, "repo2") || !strings.Contains(r.stdout, "after each backup: keep") {
		t.Errorf("schedule set output %q", r.stdout)
	}
	r = bulkctlProcOK(t, "schedule", "set", "nightly", "--keep-daily", "7", "--keep-within", "1y6m", "--nats", url, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("schedule set --json output %q: %v", r.stdout, err)
	}
	if want := (queue.KeepPolicy{KeepLast: 4, KeepDaily: 7, KeepWithin: "1y6m"}); s.KeepPolicy != want {
		t.Errorf("keep policy after schedule set --keep-daily 7 --keep-within 1y6m: %+v, want %+v", s.KeepPolicy, want)
	}
	r = bulkctlProcOK(t, "schedule", "show", "nightly", "--nats", url)
	if !strings.Contains(r.stdout, "retimed     ") || !strings.Contains(r.stdout, "retention   keep") {
		t.Errorf("schedule show after a new --cron does not say when it was retimed, or its retention:\n%s", r.stdout)
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"nightly"}, exitUsage, "nothing to change"},
		{[]string{"nightly", "--level", "ultra"}, exitUsage, "--level"},
		{[]string{"nightly", "--keep-weekly", "many"}, exitUsage, "keep-weekly"},
		{[]string{"nightly", "--cron", "61 * * * *"}, exitError, "61"},
		{[]string{"weekly", "--cron", "0 2 * * *"}, exitError, "weekly"},
	} {
		r := bulkctlProc(t, append(append([]string{"schedule", "set"}, tt.args...), "--nats", url)...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("schedule set %v: exit %d, stderr %q; want %d mentioning %q", tt.args, r.code, r.stderr, tt.code, tt.want)
		}
	}
}
