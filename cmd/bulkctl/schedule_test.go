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

// TestProcessSchedules manages schedules with bulkctl against a coordinator
// process. Firing them on a clock is tested in pkg/coordinator.
func TestProcessSchedules(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	testenv.Binaries(t)
	dir := t.TempDir()
	coord, url := startCoordinator(t, filepath.Join(dir, "jetstream"))
	repo := plainRepo(t, filepath.Join(dir, "repo"))

	// The coordinator serves its API shortly after it listens.
	deadline := time.Now().Add(30 * time.Second)
	for bulkctlProc(t, "schedule", "list", "--nats", url).code != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the coordinator's schedule API did not answer within 30s")
		}
		time.Sleep(100 * time.Millisecond) // polling the coordinator
	}

	r := bulkctlProcOK(t, "schedule", "add", "nightly", "--source", "db1:/dev/sdb", "-r", repo, "--cron", "0 2 * * *",
		"--timezone", "Europe/Berlin", "--keep-last", "7", "--keep-within", "1m", "--nats", url, "--json")
	var s queue.Schedule
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("schedule add --json output %q: %v", r.stdout, err)
	}
	if s.Name != "nightly" || s.Source.String() != "db1:/dev/sdb" || s.Repo != repo || s.Timezone != "Europe/Berlin" ||
		s.KeepLast != 7 || s.KeepWithin != "1m" || s.Paused || s.Next.IsZero() {
		t.Errorf("added schedule %+v", s)
	}
	if berlin, err := time.LoadLocation("Europe/Berlin"); err == nil {
		if n := s.Next.In(berlin); n.Hour() != 2 || n.Minute() != 0 || time.Until(n) > 25*time.Hour {
			t.Errorf("next run %s, want the coming 02:00 in Berlin", n)
		}
	}

	bad := []struct {
		name, schedule string
		args           []string
		code           int
		want           string
	}{
		{"bad cron", "other", []string{"--cron", "0 2 * *"}, exitError, "expected exactly 5 fields"},
		{"unknown zone", "other", []string{"--cron", "0 2 * * *", "--timezone", "Mars/Olympus"}, exitError, "Mars/Olympus"},
		{"no cron", "other", nil, exitUsage, "--cron"},
		{"name taken", "nightly", []string{"--cron", "0 3 * * *"}, exitError, "already exists"},
		{"bad keep count", "other", []string{"--cron", "0 3 * * *", "--keep-daily", "-3"}, exitUsage, "keep-daily"},
		{"prune with a source", "other", []string{"--cron", "0 3 * * *", "--prune"}, exitUsage, "--source does not go with --prune"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r := bulkctlProc(t, append([]string{"schedule", "add", tt.schedule, "--source", "db1:/dev/sdb", "-r", repo, "--nats", url}, tt.args...)...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, want %d and a message mentioning %q; stderr:\n%s", r.code, tt.code, tt.want, r.stderr)
			}
		})
	}

	r = bulkctlProcOK(t, "schedule", "show", "nightly", "--nats", url)
	for _, want := range []string{"nightly (active)", "0 2 * * * (Europe/Berlin)", "retention   keep 7 latest snapshots, all snapshots within 1m of the newest of the source"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("schedule show does not say %q:\n%s", want, r.stdout)
		}
	}
	// A prune schedule takes a repository only; a level or host in the
	// environment (BULK_HOST is the readers' variable) is not given to it.
	r = runExeEnv(t, filepath.Join(testenv.Binaries(t), "bulkctl"), []string{"BULK_HOST=db1", "BULK_LEVEL=best"},
		"schedule", "add", "weekly-prune", "--prune", "-r", repo, "--cron", "0 4 * * 0", "--nats", url)
	if r.code != 0 {
		t.Fatalf("schedule add --prune with BULK_HOST and BULK_LEVEL set: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "schedule weekly-prune added: prune "+repo) {
		t.Errorf("schedule add --prune:\n%s", r.stdout)
	}
	r = bulkctlProcOK(t, "schedule", "show", "weekly-prune", "--nats", url)
	if !strings.Contains(r.stdout, "prunes      "+repo) || strings.Contains(r.stdout, "retention") {
		t.Errorf("schedule show of a prune schedule:\n%s", r.stdout)
	}
	bulkctlProcOK(t, "schedule", "rm", "weekly-prune", "--nats", url)

	r = bulkctlProcOK(t, "schedule", "pause", "nightly", "--nats", url, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || !s.Paused {
		t.Errorf("pause --json: %q (%v)", r.stdout, err)
	}
	r = bulkctlProcOK(t, "schedule", "list", "--nats", url)
	if !strings.Contains(r.stdout, "nightly") || !strings.Contains(r.stdout, "paused") {
		t.Errorf("schedule list:\n%s", r.stdout)
	}
	bulkctlProcOK(t, "schedule", "resume", "nightly", "--nats", url)
	var list []queue.Schedule
	r = bulkctlProcOK(t, "schedule", "list", "--nats", url, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].Paused {
		t.Errorf("schedule list --json: %q (%v), want nightly, active", r.stdout, err)
	}

	bulkctlProcOK(t, "schedule", "rm", "nightly", "--nats", url)
	if r = bulkctlProc(t, "schedule", "show", "nightly", "--nats", url); r.code != exitError || !strings.Contains(r.stderr, "nightly") {
		t.Errorf("show after rm: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if r = bulkctlProc(t, "schedule", "list"); r.code != exitUsage || !strings.Contains(r.stderr, "--nats") {
		t.Errorf("schedule list without --nats: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	stop(t, coord)
}
